"""pipeline.batch's engines give the same records: accelerate with 2 CPU processes, Ray Data on a local Ray instance
(one per module: ``ray.init(num_cpus=2)``); README's Bulk commands are run by tests/test_docs.py.

Every run here uses one intra-op thread per process: the records are then the same bit for bit whatever the engine
(with different thread counts, boxes and scores differ in the last float bits).
"""

from __future__ import annotations

import json
import os
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
    import ray

    # address="local": always a new instance of this test's own, never a Ray some other command left running
    # (a bare ray.init() joins the one /tmp/ray/ray_current_cluster names, if it still answers)
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()


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
    # pipeline/batch/README.md installs the extra; its pins are CI's (requirements-test.txt).
    import tomllib
    from importlib.metadata import version

    assert 'pip install -r requirements.txt ".[batch]"' in (ROOT / "pipeline" / "batch" / "README.md").read_text()
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["batch"]
    pins = dict(line.split("==") for line in (ROOT / "requirements-test.txt").read_text().splitlines() if "==" in line)
    for requirement in extra:
        name, pinned = requirement.split("==")
        assert pins[name] == pinned
        assert version(name.split("[")[0]) == pinned
