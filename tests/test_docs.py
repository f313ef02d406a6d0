"""Every command and snippet in README.md and the pages it links to runs as written, with the stand-ins README names.

The documents are read as a user reads them: each fenced ``bash`` block is split into commands, each ``python``
block is one script, and inline commands in the prose count too. Every one of them must match a rule of
:data:`RULES`, which says how it runs here (as written, or with one of the documented stand-ins) or, for the few
that cannot run on a machine without a Hugging Face account, why not and which test covers their code instead. A
command no rule knows fails the quick test below; the slow tests run them all, in the documents' order, in one
scratch folder per document, so that a renamed flag or file breaks CI, not a user.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import (
    ROOT,
    install_hub_stand_in,
    install_torchvision_stand_in,
    install_wheel_of_checkout,
    save_tiny_blip,
    save_tiny_blip_vqa,
    save_tiny_git,
    save_tiny_vit_gpt2,
    venv_seeing_this_environment,
)

DOCUMENTS = (
    "README.md",
    "pipeline/README.md",
    "pipeline/serve/README.md",
    "pipeline/batch/README.md",
    "space/benchmark/README.md",
    "train/README.md",
    "space/README.md",
)
#: Sections whose inline code describes stand-ins or fragments, not commands to run.
DESCRIPTIVE_SECTIONS = ("Trying the commands offline",)
_FENCE = re.compile(r"^```(\w*)\s*$")
#: An inline command: a python module or script, pip install, accelerate launch of a module, or hf, after optional
#: environment variables (a bare name such as `accelerate launch` is not one).
_INLINE_COMMAND = re.compile(
    r"`((?:[A-Z_]+=\S+ )*(?:python (?:-m \S+|\S+\.py)|pip install|accelerate launch [^`]*-m \S+|hf \w+)[^`]*)`"
)


@dataclass
class Command:
    """One thing a document tells its reader to run."""

    document: str
    line: int
    kind: str  # "bash" or "python"
    text: str


def read_commands(document: str) -> list[Command]:
    """The document's commands in reading order: fenced bash lines (continuations joined), python blocks, and inline
    commands of the prose."""
    lines = (ROOT / document).read_text().splitlines()
    commands: list[Command] = []
    section, fence, block, start = "", None, [], 0
    for number, line in enumerate(lines, start=1):
        match = _FENCE.match(line)
        if match and fence is None:
            fence, block, start = match.group(1) or "text", [], number
            continue
        if match and fence is not None:
            if fence == "python":
                commands.append(Command(document, start, "python", "\n".join(block) + "\n"))
            elif fence in ("bash", "sh", "shell"):
                commands += _bash_commands(document, start, block)
            fence = None
            continue
        if fence is not None:
            block.append(line)
            continue
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        elif section not in DESCRIPTIVE_SECTIONS:
            commands += [Command(document, number, "bash", text) for text in _INLINE_COMMAND.findall(line)]
    return commands


def _bash_commands(document: str, start: int, block: list[str]) -> list[Command]:
    joined = "\n".join(block).replace("\\\n", " ")
    commands = []
    for offset, line in enumerate(joined.splitlines(), start=1):
        text = re.sub(r"\s+#.*$", "", line).strip()
        if text and not text.startswith("#"):
            for part in text.split(" && "):
                commands.append(Command(document, start + offset, "bash", " ".join(part.split())))
    return commands


# -- how each command runs here ------------------------------------------------------------------------------------


class Workspace:
    """The scratch folder one document's commands run in, with the stand-ins of what cannot be had offline."""

    def __init__(self, root: Path):
        self.root = root
        for name in ("app.py", "pipeline", "train", "space"):
            (root / name).symlink_to(ROOT / name)
        self.env = {
            **{key: value for key, value in os.environ.items() if not key.startswith(("APP_", "GRADIO_"))},
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_CACHE": str(root / "hf-cache"),
            "TORCH_HOME": str(root / "torch-home"),
            "MPLBACKEND": "Agg",
            "PYTHONPATH": str(ROOT),
        }
        stand_ins = {
            "Salesforce/blip-image-captioning-base": save_tiny_blip(root / "tiny-blip"),
            "Salesforce/blip-image-captioning-large": root / "tiny-blip",
            "microsoft/git-base-coco": save_tiny_git(root / "tiny-git"),
            "nlpconnect/vit-gpt2-image-captioning": save_tiny_vit_gpt2(root / "tiny-vit-gpt2"),
            "Salesforce/blip-vqa-base": save_tiny_blip_vqa(root / "tiny-blip-vqa"),
        }
        for repo_id, directory in stand_ins.items():
            install_hub_stand_in(root / "hf-cache", repo_id, directory)
        install_torchvision_stand_in(root / "torch-home", "maskrcnn_resnet50_fpn_v2")
        self._write_data_sets()

    def _write_data_sets(self) -> None:
        from train import shapes

        data = self.root / "data" / "shapes"
        shapes.main(["--output_dir", str(data), "--train", "16", "--val", "2", "--test", "0"])
        flickr = self.root / "flickr8k"
        flickr.mkdir()
        shutil.copytree(data / "train" / "images", flickr / "Images")
        shutil.copy(data / "train" / "captions.txt", flickr / "captions.txt")
        coco = self.root / "coco"
        (coco / "annotations").mkdir(parents=True)
        for split, name in (("train", "train2017"), ("val", "val2017")):
            shutil.copytree(data / split / "images", coco / name)
            shutil.copy(data / split / "instances.json", coco / "annotations" / f"instances_{name}.json")

    def run(self, argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 900) -> str:
        done = subprocess.run(
            argv, cwd=self.root, env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"{shlex.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr


def _split_env(text: str) -> tuple[dict[str, str], list[str]]:
    words = shlex.split(text)
    env = {}
    while words and re.match(r"^[A-Z_]+=", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if words and words[0] == "python":
        words[0] = sys.executable
    return env, words


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_as_written(space: Workspace, command: Command) -> None:
    env, argv = _split_env(command.text)
    space.run(argv, env=env)


def run_on_cpu(space: Workspace, command: Command) -> None:
    """accelerate's GPU launch flags become the CPU ones, and one optimizer step is a smoke run."""
    env, argv = _split_env(command.text)
    text = shlex.join(argv)
    text = text.replace("--multi_gpu ", "--cpu ")
    text = re.sub(r"--num_processes \d+", "--num_processes 1", text)
    text = re.sub(r"--mixed_precision (bf16|fp16)", "--mixed_precision no", text, count=1)
    space.run([*shlex.split(text), "--max_train_steps", "1"], env=env)


def with_flags(*flags: str) -> Callable[[Workspace, Command], None]:
    def run(space: Workspace, command: Command) -> None:
        env, argv = _split_env(command.text)
        space.run([*argv, *flags], env=env)

    return run


def with_replaced(old: str, new: str) -> Callable[[Workspace, Command], None]:
    def run(space: Workspace, command: Command) -> None:
        assert old in command.text, f"{old!r} is not in {command.text!r}"
        env, argv = _split_env(command.text.replace(old, new))
        space.run(argv, env=env)

    return run


def make_shapes_models_quick(space: Workspace, command: Command) -> None:
    with_flags("--quick", "--weights_dir", "quick-weights", "--work_dir", "quick-work")(space, command)
    assert (space.root / "quick-weights" / "shapes-segmenter" / "segmenter.json").is_file()


def serve_app(space: Workspace, command: Command, check: Callable[[str, str], None] | None = None) -> None:
    """Start the app as written (on a free port), fetch its page and config from 127.0.0.1, stop it."""
    env, argv = _split_env(command.text)
    port = free_port()
    server = subprocess.Popen(
        argv, cwd=space.root, env={**space.env, **env, "GRADIO_SERVER_PORT": str(port)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/"
        page = _wait_for(url, server)
        assert "Describe and outline" in page
        config = urllib.request.urlopen(url + "config", timeout=30).read().decode()
        if check is not None:
            check(page, config)
    finally:
        server.terminate()
        server.wait(timeout=60)


def _wait_for(url: str, server: subprocess.Popen, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the app stopped ({server.returncode}):\n{server.stdout.read()}")
        try:
            return urllib.request.urlopen(url, timeout=5).read().decode()
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the app did not answer at {url} within {timeout} s")


def serve_finetuned(space: Workspace, command: Command) -> None:
    def lists_finetuned(page: str, config: str) -> None:
        assert '"finetuned"' in config, "the fine-tuned models are not in the menus"

    serve_app(space, command, lists_finetuned)


def run_on_ray_head(space: Workspace, command: Command) -> None:
    """`--ray-address auto` joins a running Ray: a head started here on 127.0.0.1 (`ray start --head --block`), found
    through RAY_ADDRESS as on a cluster, and stopped by stopping that one process."""
    port = free_port()
    # Ray 2.60 turns token authentication on when it finds a token (~/.ray/auth_token): give the head and the job
    # one token of their own, as a cluster's nodes and drivers share one, whatever this machine has saved.
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    # Its session files (and the ray_current_cluster note that a bare ray.init() reads) go to a folder of its own,
    # short enough for Ray's socket paths, removed with it: a stopped head leaves nothing in /tmp/ray.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    head = subprocess.Popen(
        ["ray", "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
         "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp_dir],
        cwd=space.root, env={**space.env, **auth}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        env, argv = _split_env(command.text)
        space.run(argv, env={**env, **auth, "RAY_ADDRESS": f"127.0.0.1:{port}"})
    finally:
        head.terminate()
        head.wait(timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)


def run_python(space: Workspace, command: Command) -> None:
    script = space.root / f"snippet-{command.line}.py"
    script.write_text(command.text)
    space.run([sys.executable, str(script)])


@contextlib.contextmanager
def local_app(space: Workspace) -> Iterator[str]:
    """The app with the shapes models on a free port of 127.0.0.1, for the commands that talk to one; its URL."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "app.py", "--captioner", "shapes", "--segmenter", "shapes", "--port", str(port)],
        cwd=space.root, env=space.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        address = f"http://127.0.0.1:{port}/"
        _wait_for(address, server)
        yield address
    finally:
        server.terminate()
        server.wait(timeout=60)


def run_client_script(space: Workspace, command: Command) -> None:
    """A gradio_client script against the app started here (the URL or Space name of the document replaced by its
    address); the script's own requests choose the models."""
    with local_app(space) as address:
        text = command.text.replace("http://127.0.0.1:7860/", address).replace(
            'Client("USER/NAME")', f'Client("{address}")'
        )
        assert address in text, "the script names neither the local app nor the Space"
        script = space.root / f"snippet-{command.line}.py"
        script.write_text(text)
        assert space.run([sys.executable, str(script)]).strip(), "the script printed nothing"


def run_mcp_client_script(space: Workspace, command: Command) -> None:
    """An MCP client script against the app started here (its MCP server on by default), the document's local URL
    replaced by the app's; it must list the tools and print the tool's answer."""
    with local_app(space) as address:
        text = command.text.replace("http://127.0.0.1:7860/", address)
        assert address in text, "the script does not name the local app"
        script = space.root / f"snippet-{command.line}.py"
        script.write_text(text)
        printed = space.run([sys.executable, str(script)])
        assert "'describe'" in printed and "alt_text" in printed, printed


def load_test_local_app(space: Workspace, command: Command) -> None:
    """The load test as written, against the app started here (the document's address replaced), with its counts
    made small: a check that the command works, not a load."""
    with local_app(space) as address:
        _, argv = _split_env(command.text)
        argv = [address if arg.startswith("http") else arg for arg in argv]
        small = ["--clients", "2", "--requests", "2", "--live-loops", "1", "--idle-frames", "2"]
        small += ["--max-seconds", "120"]
        printed = space.run([*argv, *small, "--json", "load.json"])
        assert "live frame latency under load / idle" in printed, printed
        figures = json.loads((space.root / "load.json").read_text())
        assert figures["errors"] == [] and figures["under_load"]["/caption"]["n"] >= 1


def pip_install_editable(space: Workspace, command: Command) -> None:
    """`pip install -e .` in a fresh virtual environment that sees this one's packages (from a system Python or a
    venv alike), then an import from elsewhere finds the checkout."""
    python = venv_seeing_this_environment(space.root / "venv")
    install = [python, "-m", "pip", "install", "--no-deps", "-q", "-e", str(ROOT)]  # setuptools from PyPI
    done = subprocess.run(install, timeout=300, capture_output=True, text=True, cwd=space.root)
    assert done.returncode == 0, done.stdout + done.stderr
    probe = [python, "-c", "import pipeline, train, torch, gradio; print(pipeline.__file__)"]
    found = subprocess.run(probe, check=True, timeout=120, capture_output=True, text=True, cwd=space.root / "venv")
    assert found.stdout.strip() == str(ROOT / "pipeline" / "__init__.py")


def install_checkout_wheel(space: Workspace, command: Command) -> None:
    """`pip install .`: the wheel built from the checkout, installed (``--no-deps``) in a fresh virtual environment
    that sees this one's packages; the console scripts of the commands after it come from there."""
    space.scripts = install_wheel_of_checkout(space.root / "wheel")


def _installed(space: Workspace, command: Command) -> tuple[dict[str, str], list[str]]:
    """The command with its console script from the installed wheel, and no PYTHONPATH (the wheel's code runs)."""
    assert getattr(space, "scripts", None), f"{command.text!r} comes before the document's `pip install .`"
    env, argv = _split_env(command.text)
    return {**env, "PYTHONPATH": ""}, [str(space.scripts / argv[0]), *argv[1:]]


def run_console_script(space: Workspace, command: Command) -> None:
    env, argv = _installed(space, command)
    assert space.run(argv, env=env).strip(), "the command printed nothing"


def serve_console_script(space: Workspace, command: Command) -> None:
    """`caption-segment-app ...`: the app from the installed wheel, served and fetched as :func:`serve_app` does."""
    env, argv = _installed(space, command)
    text = shlex.join([f"{key}={value}" for key, value in env.items()] + argv)
    serve_app(space, Command(command.document, command.line, command.kind, text))


def push_stops_offline(space: Workspace, command: Command) -> None:
    """A training command with `--push_to_hub`, run offline as the tests are: it must stop at start, within
    seconds, before it trains or writes anything, and say what to do."""
    env, argv = _split_env(command.text)
    output = space.root / argv[argv.index("--output_dir") + 1]
    argv[0] = sys.executable if argv[0] == "python" else argv[0]
    done = subprocess.run(argv, cwd=space.root, env={**space.env, **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "HF_HUB_OFFLINE is set" in done.stderr, done.stdout + done.stderr
    assert not output.exists(), "the run wrote its output folder before it stopped"


def resnet50_stops_offline(space: Workspace, command: Command) -> None:
    """An attention-lstm run from ResNet-50's ImageNet weights, offline with an empty ``$TORCH_HOME``: it must stop
    within seconds, before training, naming the weights file and where to put it."""
    env, argv = _split_env(command.text)
    argv[0] = sys.executable
    done = subprocess.run(argv, cwd=space.root, env={**space.env, **env}, capture_output=True, text=True, timeout=120)
    message = done.stdout + done.stderr
    assert done.returncode != 0 and "resnet50-11ad3fa6.pth" in message and "torch-home" in message, message


def clip_and_gpt2_stop_offline(space: Workspace, command: Command) -> None:
    """A clip-prefix run from CLIP and GPT-2 on the hub, offline: it stops within seconds, naming CLIP's id."""
    env, argv = _split_env(command.text)
    argv[0] = sys.executable
    done = subprocess.run(argv, cwd=space.root, env={**space.env, **env}, capture_output=True, text=True, timeout=120)
    message = done.stdout + done.stderr
    assert done.returncode != 0 and "openai/clip-vit-base-patch32" in message and "HF_HUB_OFFLINE" in message, message


def run_in_checkout(space: Workspace, command: Command) -> None:
    env, argv = _split_env(command.text)
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def not_run(reason: str) -> Callable[[Workspace, Command], None]:
    def skip(space: Workspace, command: Command) -> None:
        assert reason  # the rule says why it is not run, and where its code is tested instead

    skip.reason = reason
    return skip


#: (pattern of a command, how it runs here). The first match wins; every documented command must match one.
RULES: list[tuple[str, Callable[[Workspace, Command], None]]] = [
    (r"^apt-get ", not_run("installs Debian's chromium: CI's first step")),
    (r"^pip install -r ", not_run("installs the pinned packages: CI's first step")),
    (r"^pip install -e \.$", pip_install_editable),
    (r"^pip install \.$", install_checkout_wheel),
    (r"^caption-segment-app( |$)", serve_console_script),
    (r"^(HF_HUB_OFFLINE=1 )?caption-segment(-batch)? ", run_console_script),
    (r"^ruff ", run_in_checkout),
    (r"^pytest", not_run("the test suite itself: CI runs exactly this")),
    (r"^python app\.py --help$", run_as_written),
    (r"^PIPELINE_FINETUNED_\S+ PIPELINE_FINETUNED_\S+ python app\.py$", serve_finetuned),
    (r"^python app\.py", serve_app),
    (r"^(HF_HUB_OFFLINE=1 )?python space/benchmark/bench\.py( --out \S+)?$", with_flags("--tiny", "--quick")),
    (r"^python space/benchmark/bench\.py --quality ", with_flags("--limit", "3")),
    (r"^(HF_HUB_OFFLINE=1 )?python space/benchmark/live\.py( --out \S+)?$", with_flags("--tiny", "--seconds", "1")),
    (r"^(HF_HUB_OFFLINE=1 )?python space/benchmark/bench\.py --bulk ", with_flags("--tiny", "--bulk", "2")),
    (r"^(HF_HUB_OFFLINE=1 )?python \S+/bench\.py --stuff-cost ", with_flags("--tiny", "--stuff-cost", "1")),
    (r"^(HF_HUB_OFFLINE=1 )?python -m pipeline ", run_as_written),
    (r"^python -m train\.shapes .*--test 300$", with_replaced("--test 300", "--test 3")),
    (r"^python -m train\.shapes .*--varied .*--train 8000 ", with_replaced("--train 8000", "--train 8")),
    (r"^python -m train\.shapes ", run_as_written),
    (r"^python -m train\.shapes_shifted .*--count 200$", with_replaced("--count 200", "--count 4")),
    (r"^python -m pipeline\.batch .*--ray-address auto", run_on_ray_head),
    (r"^python -m pipeline\.batch ", run_as_written),
    (r"^accelerate launch .*-m pipeline\.batch ", run_as_written),
    (r"^accelerate launch .*-m train\.", run_on_cpu),
    (r"^python -m train\.stuff ", with_flags("--max_train_steps", "4")),
    (r"^python -m train\.evaluate ", run_as_written),
    (r"^python -m train\.(caption|segment) .*--push_to_hub", push_stops_offline),
    (r"^python -m train\.caption --architecture attention-lstm --encoder resnet50 ", resnet50_stops_offline),
    (r"^python -m train\.caption --architecture clip-prefix --images_dir ", clip_and_gpt2_stop_offline),
    (r"^HF_HUB_OFFLINE=1 python -m train\.make_shapes_models$", make_shapes_models_quick),
    (
        r"^HF_HUB_OFFLINE=1 python -m train\.make_shapes_models "
        r"--only (answerer|attention-lstm|clip-prefix|git|vit-gpt2)$",
        with_flags("--quick", "--weights_dir", "quick-weights", "--work_dir", "quick-work"),
    ),
    (r"^python -m train\.answer ", with_flags("--max_train_steps", "1", "--max_val_questions", "8")),
    (r"^hf auth login$", not_run("needs a Hugging Face account")),
    (r"^python space/deploy\.py .*--dry-run ", run_as_written),
    (r"^python space/loadtest\.py ", load_test_local_app),
    (
        r"^python space/deploy\.py --repo-id ",
        not_run("uploads to a Hugging Face account; test_space.py runs the upload code against a recording hub"),
    ),
    (r"^from gradio_client import", run_client_script),
    (r"^from mcp\.client\.streamable_http import", run_mcp_client_script),
    (r"^(import|from) ", run_python),
]


def rule_for(command: Command) -> Callable[[Workspace, Command], None]:
    for pattern, run in RULES:
        if re.search(pattern, command.text, flags=re.MULTILINE if command.kind == "python" else 0):
            return run
    raise AssertionError(f"{command.document}:{command.line}: no rule says how to run {command.text[:100]!r}")


def test_ci_runs_the_test_line_of_readme():
    """README's second set-up command is one line, and `.ci/run` runs exactly that line."""
    line = next(text for text in (ROOT / "README.md").read_text().splitlines() if text.startswith("apt-get update"))
    assert line.endswith('pytest && pytest -m "slow or reliability"') and "pip install -r requirements" in line
    assert line in (ROOT / ".ci" / "run").read_text().splitlines()
    app_line = "pip install -r requirements.txt && python app.py"
    assert app_line in (ROOT / "README.md").read_text().splitlines()


def test_every_documented_command_has_a_rule():
    for document in DOCUMENTS:
        commands = read_commands(document)
        assert commands, f"{document}: the reader found no command; is the parser broken?"
        for command in commands:
            rule_for(command)
    kinds = {rule_for(c).__name__ for c in read_commands("README.md")}
    assert {"run_python", "run_client_script", "serve_app", "run_on_cpu"} <= kinds


@pytest.mark.slow
@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_documented_commands_run_in_order(document, tmp_path):
    space = Workspace(tmp_path)
    for command in read_commands(document):
        started = time.monotonic()
        rule_for(command)(space, command)
        print(f"{command.document}:{command.line} ({time.monotonic() - started:.0f} s): {command.text[:80]!r}")
