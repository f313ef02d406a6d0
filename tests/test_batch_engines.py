"""pipeline.batch's engines give the same records: accelerate with 2 CPU processes, Ray Data on a local Ray instance
(one per module: ``ray.init(num_cpus=2)``), and README's Bulk commands run as written (shapes models, small counts).

Every run here uses one intra-op thread per process: the records are then the same bit for bit whatever the engine
(with different thread counts, boxes and scores differ in the last float bits).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT, batch_outputs

from pipeline.batch.__main__ import main
from train import shapes

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")
SHAPES = ["--captioner", "shapes", "--segmenter", "shapes", "--device", "cpu", "--quiet"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return shapes.write_split(tmp_path_factory.mktemp("engine-shapes"), "test", 12, seed=1)


@pytest.fixture(scope="module")
def one_process_run(split, tmp_path_factory) -> Path:
    """The reference: the local engine in one process, one thread."""
    out = tmp_path_factory.mktemp("one-process") / "out"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.batch", str(split / "images"), "--output", str(out), *SHAPES],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()


def readme_commands(section: str = "## Bulk: many images") -> list[str]:
    """The shell commands of README's section, continuation lines joined, comments dropped."""
    text = (ROOT / "README.md").read_text()
    body = text.split(section, 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", body, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("  #", 1)[0].strip()
            if command and not command.startswith("#"):
                commands.append(" ".join(command.split()))
    return commands


def _readme_argv(command: str, root: Path) -> list[str]:
    """A README command with its data and output folders moved under ``root``."""
    return [arg.replace("data/", f"{root}/data/").replace("runs/", f"{root}/runs/") for arg in shlex.split(command)]


def test_accelerate_two_processes_give_the_one_process_records(split, one_process_run, tmp_path):
    out = tmp_path / "out"
    command = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "-m", "pipeline.batch"]
    command += [str(split / "images"), "--output", str(out), *SHAPES, "--batch-size", "4"]
    done = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ranks = {part.name.split("-")[2] for part in (out / "parts").glob("*.jsonl")}
    assert ranks == {"r000", "r001"}  # each process wrote its own share
    assert json.loads((out / "summary.json").read_text())["processes"] == 2
    assert batch_outputs(out) == batch_outputs(one_process_run)


def test_ray_engine_gives_the_local_records(split, one_process_run, local_ray, tmp_path):
    out = tmp_path / "out"
    threads = torch.get_num_threads()
    try:
        code = main([str(split / "images"), "--output", str(out), *SHAPES, "--engine", "ray", "--batch-size", "5"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    assert json.loads((out / "summary.json").read_text())["engine"] == "ray"
    assert batch_outputs(out) == batch_outputs(one_process_run)


def test_readme_pins_of_the_batch_extra_are_installed():
    # README: pip install -r requirements.txt ".[batch]"; the extra's pins are CI's (requirements-test.txt).
    from importlib.metadata import version

    import tomllib

    assert 'pip install -r requirements.txt ".[batch]"' in (ROOT / "README.md").read_text()
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["batch"]
    pins = dict(line.split("==") for line in (ROOT / "requirements-test.txt").read_text().splitlines() if "==" in line)
    for requirement in extra:
        name, pinned = requirement.split("==")
        assert pins[name] == pinned
        assert version(name.split("[")[0]) == pinned


@pytest.mark.slow  # every Bulk command of README: a data split, five runs (one under accelerate, two on Ray)
def test_readme_bulk_commands_run_as_written(tmp_path, local_ray):
    commands = readme_commands()
    runs = [command for command in commands if "pipeline.batch" in command or "train.shapes" in command]
    assert len(runs) >= 5, commands
    for command in runs:
        argv = _readme_argv(command, tmp_path)
        if argv[:3] == ["python", "-m", "pipeline.batch"]:
            # In this process, so that --engine ray runs on the module's Ray instance; it stands for the cluster
            # of the --ray-address command too (a running Ray is used as it is).
            assert main(argv[3:]) == 0, command
            continue
        argv = [sys.executable if arg == "python" else arg for arg in argv]
        done = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=400)
        assert done.returncode == 0, (command, done.stderr[-3000:])
    outputs = sorted(path.name for path in (tmp_path / "runs").iterdir())
    assert all((tmp_path / "runs" / name / "summary.json").is_file() for name in outputs)
    metrics = json.loads((tmp_path / "runs" / "batch-eval" / "metrics.json").read_text())
    assert {"coco_instances", "flickr_captions"} <= set(metrics)
