"""The Hugging Face Space: ``space/deploy.py --dry-run`` assembles it, the folder is read back, then served for real.

The assembled folder is started as a fresh ``python app.py`` in its own working directory, with ``HF_HUB_OFFLINE=1``,
empty Hugging Face and torch caches and the Space's variables, and answers ``/analyze`` through ``gradio_client`` on
the ``shapes`` models. Until the ``shapes`` models are trained into ``pipeline/weights``, tiny random models are
shipped in their place (``--weights``). The Hub itself is never called: the upload is checked against a stand-in.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import metadata, packages_distributions
from pathlib import Path
from types import ModuleType

import gradio
import pytest
import torch
import yaml
from gradio_client import Client, handle_file
from helpers import TINY_CATEGORIES, save_tiny_segformer
from packaging.specifiers import SpecifierSet
from PIL import Image

from pipeline import list_models
from pipeline.builders import build_maskrcnn
from pipeline.checkpoints import save_segmenter

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "space" / "deploy.py"
REQUIRED_KEYS = (
    "title",
    "emoji",
    "colorFrom",
    "colorTo",
    "sdk",
    "sdk_version",
    "app_file",
    "python_version",
    "models",
    "preload_from_hub",
    "suggested_hardware",
    "license",
    "short_description",
)
CARD_COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")
#: Python versions ZeroGPU runs (https://huggingface.co/docs/hub/spaces-zerogpu, "Supported Versions").
ZEROGPU_PYTHONS = ("3.10.13", "3.12.12")
#: What the Space's root may hold, and nothing else.
SPACE_ENTRIES = {"README.md", "LICENSE", "app.py", "requirements.txt", "pipeline", "space"}
FORBIDDEN_PARTS = {"tests", "train", "data", "artifacts", "runs", "checkpoints", "__pycache__", ".git", ".benchmarks"}
#: ``spaces`` is preinstalled on Gradio Spaces and imported only when present (pipeline/serve/zerogpu.py).
PROVIDED_BY_SPACES = {"spaces"}
STARTUP_SECONDS = 180


def load_deploy() -> ModuleType:
    spec = importlib.util.spec_from_file_location("space_deploy", DEPLOY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


deploy = load_deploy()
REAL_SHAPES = all((ROOT / "pipeline" / "weights" / name).is_dir() for name in deploy.SHAPES_MODELS)


@pytest.fixture(scope="module")
def shapes_weights(request, tmp_path_factory) -> Path:
    """The folder of shapes models to ship: the trained ones, or tiny random stand-ins until they exist."""
    if REAL_SHAPES:
        return ROOT / "pipeline" / "weights"
    folder = tmp_path_factory.mktemp("stand-in-weights")
    shutil.copytree(request.getfixturevalue("tiny_blip_dir"), folder / "shapes-captioner")
    shutil.copytree(request.getfixturevalue("tiny_blip_vqa_dir"), folder / "shapes-answerer")
    # Small heads and ResNet stages 2-3 only, as the trained shapes segmenter has: a few MB, not conftest's 118.
    torch.manual_seed(0)
    settings = {"min_size": 128, "max_size": 160, "returned_layers": [2, 3], "fpn_channels": 32}
    settings |= {"box_representation": 64, "mask_layers": [32], "box_detections_per_img": 10}
    model = build_maskrcnn("maskrcnn_fpn", num_classes=len(TINY_CATEGORIES), backbone="resnet18", **settings)
    save_segmenter(
        model,
        folder / "shapes-segmenter",
        categories=TINY_CATEGORIES,
        architecture="maskrcnn_fpn",
        backbone="resnet18",
        model_kwargs=settings,
    )
    save_tiny_segformer(folder / "shapes-stuff", ["sky", "grass", "water", "sand", "wall", "shape", "plain"])
    return folder


@pytest.fixture(scope="module")
def assembled(shapes_weights, tmp_path_factory) -> Path:
    """``python space/deploy.py --repo-id ... --dry-run DIR`` run as a user runs it."""
    folder = tmp_path_factory.mktemp("dry-run") / "space"
    command = [sys.executable, str(DEPLOY), "--repo-id", "someone/describe-and-outline", "--dry-run", str(folder)]
    if not REAL_SHAPES:
        command += ["--weights", str(shapes_weights)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stderr
    assert "dry run: nothing uploaded" in done.stdout
    return folder


def front_matter(card: Path) -> dict:
    text = card.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text[4:].split("\n---\n", 1)[0])


# -- the folder read back ----------------------------------------------------------------------------------------


def test_card_front_matter(assembled):
    card = front_matter(assembled / "README.md")
    assert set(REQUIRED_KEYS) <= set(card), sorted(set(REQUIRED_KEYS) - set(card))
    assert card["sdk"] == "gradio"
    assert card["sdk_version"] == gradio.__version__ == deploy.read_pins()["gradio"]
    assert card["app_file"] == "app.py" and (assembled / card["app_file"]).is_file()
    assert card["colorFrom"] in CARD_COLORS and card["colorTo"] in CARD_COLORS
    assert card["suggested_hardware"] in deploy.HARDWARE
    assert card["license"] == "apache-2.0"
    assert isinstance(card["short_description"], str) and 0 < len(card["short_description"]) <= 60
    assert re.fullmatch(r"\d+[mh]", card["startup_duration_timeout"])


def test_card_python_version_runs_every_pin_and_zerogpu(assembled):
    version = front_matter(assembled / "README.md")["python_version"]
    assert version in ZEROGPU_PYTHONS
    for name in deploy.read_pins():
        try:
            requires = metadata(name).get("Requires-Python")
        except Exception:  # not installed here (e.g. a training-only pin): nothing to read
            continue
        assert not requires or version in SpecifierSet(requires), f"{name} requires Python {requires}"


def test_card_lists_and_preloads_every_hub_model(assembled):
    card = front_matter(assembled / "README.md")
    hub_models = {
        spec.source
        for spec in list_models("captioner") + list_models("segmenter")
        if re.fullmatch(r"[\w.-]+/[\w.-]+", spec.source) and not Path(spec.source).is_absolute()
    }
    assert hub_models == {
        "Salesforce/blip-image-captioning-base",
        "Salesforce/blip-image-captioning-large",
        "microsoft/git-base-coco",
        "nlpconnect/vit-gpt2-image-captioning",
    }
    assert set(card["models"]) == hub_models
    assert {entry.split()[0] for entry in card["preload_from_hub"]} == hub_models


def test_card_body_explains_the_api_and_has_measured_speed(assembled):
    body = (assembled / "README.md").read_text().split("\n---\n", 1)[1]
    assert "gradio_client" in body and 'api_name="/analyze"' in body
    assert "not measured yet" in body  # GPU figures are said to be missing, not invented
    assert not re.search(r"\b[A-Z]+_MS\b", body), "a speed figure is still a placeholder"


def test_every_import_resolves_inside_the_folder(assembled):
    requirements = (assembled / "requirements.txt").read_text()
    required = {deploy._canonical(name) for name in deploy.read_pins(assembled / "requirements.txt")}
    local_tops = {path.stem for path in ROOT.iterdir() if path.suffix == ".py" or (path / "__init__.py").exists()}
    local_tops |= {path.name for path in ROOT.iterdir() if path.is_dir() and any(path.glob("*.py"))}
    providers = packages_distributions()
    seen, queue, third_party = set(), [assembled / "app.py"], set()
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        package = path.parent.relative_to(assembled).parts  # the package a relative import starts from
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name.split(".") for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = list(package[: len(package) - node.level + 1]) if node.level else []
                module = base + (node.module.split(".") if node.module else [])
                targets = [module + [alias.name] for alias in node.names] + [module]
            else:
                continue
            # Importing a.b.c runs a/__init__.py and a/b/__init__.py first, as Python does.
            targets += [target[:depth] for target in list(targets) for depth in range(1, len(target))]
            for parts in targets:
                if not parts or parts[0] not in local_tops:
                    if parts and parts[0] not in sys.stdlib_module_names:
                        third_party.add(parts[0])
                    continue
                found = _module_file(assembled, parts)
                is_symbol = isinstance(node, ast.ImportFrom) and parts[-1] in {a.name for a in node.names}
                if found is None and not is_symbol:
                    raise AssertionError(f"{path.relative_to(assembled)} imports {'.'.join(parts)}: not in the Space")
                if found is not None:
                    queue.append(found)
    assert {p.name for p in seen if p.parent.name == "pipeline"} >= {"__init__.py", "catalog.py", "combined.py"}
    assert {p.name for p in seen if p.parent.name == "serve"} >= {"__init__.py", "service.py", "zerogpu.py"}
    for name in sorted(third_party - PROVIDED_BY_SPACES):
        distributions = {deploy._canonical(d) for d in providers.get(name, [])}
        assert distributions, f"{name} is imported but not installed here"
        assert distributions & required, f"{name} ({distributions}) is imported but not in requirements.txt"
    assert requirements.count("gradio==") == 1


def _module_file(root: Path, parts: list[str]) -> Path | None:
    candidate = root.joinpath(*parts)
    if (candidate / "__init__.py").is_file():
        return candidate / "__init__.py"
    if candidate.with_suffix(".py").is_file():
        return candidate.with_suffix(".py")
    return None


def test_folder_holds_what_the_space_runs_and_nothing_else(assembled):
    files = [path.relative_to(assembled) for path in assembled.rglob("*") if path.is_file()]
    assert {path.parts[0] for path in files} == SPACE_ENTRIES
    assert not [path for path in files if FORBIDDEN_PARTS & set(path.parts)]
    assert not [path for path in files if path.name in ("conftest.py", "deploy.py") or path.name.startswith("test_")]
    assert not [path for path in files if path.suffix in (".pyc", ".pyo")]
    shipped_code = {path.name for path in (assembled / "pipeline").glob("*.py")}
    assert shipped_code == {path.name for path in (ROOT / "pipeline").glob("*.py")}
    assert {path.parts[1] for path in files if path.parts[0] == "space"} == {"examples"}
    assert {path.name for path in (assembled / "space" / "examples").iterdir()} == {
        path.name for path in (ROOT / "space" / "examples").iterdir()
    }
    for name in deploy.SHAPES_MODELS:
        assert any((assembled / "pipeline" / "weights" / name).iterdir())
    size = sum((assembled / path).stat().st_size for path in files)
    print(f"assembled Space: {len(files)} files, {size / 2**20:.2f} MB (bound {deploy.MAX_BYTES / 2**20:.0f} MB)")
    assert size < deploy.MAX_BYTES


def test_requirements_per_hardware(assembled, shapes_weights, tmp_path):
    pins = deploy.read_pins()
    cpu = deploy.read_pins(assembled / "requirements.txt")
    imported = deploy.imported_distributions(assembled)
    dropped = {name for name in deploy.TRAINING_ONLY if name not in imported}
    assert cpu == {name: version for name, version in pins.items() if name not in dropped}
    assert f"--extra-index-url {deploy.CPU_TORCH_INDEX}" in (assembled / "requirements.txt").read_text()
    summary = deploy.assemble(tmp_path / "zero", hardware="zero-a10g", weights=shapes_weights)
    zero = deploy.read_pins(tmp_path / "zero" / "requirements.txt")
    assert zero["torch"] == "2.11.0" and zero["torchvision"] == "0.26.0"
    assert {k: v for k, v in zero.items() if k not in deploy.ZEROGPU_PINS} == {
        k: v for k, v in cpu.items() if k not in deploy.ZEROGPU_PINS
    }
    assert "download.pytorch.org" not in summary["requirements"]


def test_dry_run_refuses_a_non_empty_folder_and_missing_models(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file.txt").write_text("keep me")
    assert deploy.main(["--repo-id", "a/b", "--dry-run", str(tmp_path / "taken")]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert (tmp_path / "taken" / "file.txt").read_text() == "keep me"
    (tmp_path / "no-weights").mkdir()
    args = ["--repo-id", "a/b", "--dry-run", str(tmp_path / "out"), "--weights", str(tmp_path / "no-weights")]
    assert deploy.main(args) == 2
    assert "shapes models" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        deploy.parse_args(["--repo-id", "not-a-repo-id"])


class RecordingHub:
    """Stands in for ``huggingface_hub.HfApi`` (the Hub cannot be reached from tests): checks each call against the
    real method's signature and records it."""

    def __init__(self, hardware_now: str | None):
        self.calls: list[tuple[str, tuple, dict]] = []
        self.hardware_now = hardware_now
        self.uploaded: set[str] = set()

    def _record(self, name: str, *args, **kwargs):
        from huggingface_hub import HfApi

        inspect.signature(getattr(HfApi, name)).bind(self, *args, **kwargs)  # the call fits the real method
        self.calls.append((name, args, kwargs))

    def create_repo(self, *args, **kwargs):
        self._record("create_repo", *args, **kwargs)
        return f"https://huggingface.co/spaces/{args[0]}"

    def upload_folder(self, **kwargs):
        self._record("upload_folder", **kwargs)
        root = Path(kwargs["folder_path"])
        self.uploaded = {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}

    def add_space_variable(self, *args, **kwargs):
        self._record("add_space_variable", *args, **kwargs)

    def get_space_runtime(self, repo_id):
        self._record("get_space_runtime", repo_id)
        return type("Runtime", (), {"requested_hardware": self.hardware_now})()

    def request_space_hardware(self, *args, **kwargs):
        self._record("request_space_hardware", *args, **kwargs)


@pytest.mark.parametrize("hardware_now", ["cpu-basic", None])
def test_upload_creates_the_space_replaces_its_files_and_never_prints_the_token(
    shapes_weights, monkeypatch, capsys, hardware_now
):
    secret = "hf_thisIsNotARealTokenButMustNeverBePrinted"
    monkeypatch.setenv("HF_TOKEN", secret)
    hub = RecordingHub(hardware_now)
    argv = ["--repo-id", "someone/describe", "--hardware", "zero-a10g"]
    if not REAL_SHAPES:
        argv += ["--weights", str(shapes_weights)]
    assert deploy.main(argv, api=hub) == 0
    output = capsys.readouterr()
    assert secret not in output.out + output.err
    names = [name for name, _, _ in hub.calls]
    assert names[:2] == ["create_repo", "upload_folder"]
    _, args, kwargs = hub.calls[0]
    assert args == ("someone/describe",)
    assert kwargs["repo_type"] == "space" and kwargs["space_sdk"] == "gradio" and kwargs["exist_ok"] is True
    upload = hub.calls[1][2]
    assert upload["repo_type"] == "space" and upload["delete_patterns"] == "*"
    assert {"README.md", "app.py", "requirements.txt", "pipeline/serve/zerogpu.py"} <= hub.uploaded
    variables = {args[1]: args[2] for name, args, _ in hub.calls if name == "add_space_variable"}
    assert variables == deploy.SPACE_VARIABLES
    assert names.count("request_space_hardware") == 1  # the Space runs cpu-basic (or nothing yet): switch it
    assert not Path(upload["folder_path"]).exists()  # the temporary folder is cleaned up


# -- the folder served ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def space_server(assembled, tmp_path_factory):
    """``python app.py`` in the assembled folder, as the Space starts it; always stopped afterwards."""
    home = tmp_path_factory.mktemp("space-home")
    port = free_port()
    keep = {key: value for key, value in os.environ.items() if not key.startswith(("APP_", "GRADIO_", "PIPELINE_"))}
    keep.pop("PYTHONPATH", None)
    env = {
        **keep,
        **deploy.SPACE_VARIABLES,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(home / "hf"),
        "TORCH_HOME": str(home / "torch"),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(home / "gradio"),
    }
    log_path = home / "server.log"
    started = time.perf_counter()
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "app.py"],
            cwd=assembled,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            if server.poll() is not None:
                raise AssertionError(f"the Space exited with {server.returncode}:\n{log_path.read_text()[-4000:]}")
            if time.perf_counter() - started > STARTUP_SECONDS:
                raise AssertionError(f"the Space did not serve within {STARTUP_SECONDS} s:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    page = response.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        print(f"the assembled Space served its page {time.perf_counter() - started:.1f} s after start")
        yield {"url": url, "page": page, "log": log_path}
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=15)
        except ProcessLookupError:
            pass


def test_space_serves_the_page(space_server):
    assert "<html" in space_server["page"].lower()
    assert "Describe and outline" in space_server["page"]


def test_space_answers_analyze_on_the_shapes_models(space_server, assembled, tmp_path):
    client = Client(space_server["url"], verbose=False, download_files=str(tmp_path))
    example = assembled / "space" / "examples" / "shapes.png"
    tick = time.perf_counter()
    result, annotated = client.predict(
        image=handle_file(str(example)),
        captioner="shapes",
        segmenter="shapes",
        options={"threshold": 0.3},
        api_name="/analyze",
    )
    seconds = time.perf_counter() - tick
    print(f"/analyze on shapes through gradio_client: {seconds * 1000:.0f} ms, server timings {result['timings_ms']}")
    categories = json.loads((assembled / "pipeline" / "weights" / "shapes-segmenter" / "segmenter.json").read_text())
    assert result["models"] == {"captioner": "shapes", "segmenter": "shapes", "stuff": "shapes"}  # the default
    assert isinstance(result["caption"], str) and result["caption"].strip()
    assert {"caption", "segment", "total"} <= set(result["timings_ms"])
    for instance in result["instances"]:
        assert instance["label"] in categories["categories"][1:]
        assert instance["score"] >= 0.3
    with Image.open(annotated) as picture, Image.open(example) as original:
        assert picture.size == original.size
    if REAL_SHAPES:  # the trained models, unlike random stand-ins, must see the shapes
        assert result["instances"], "the shapes segmenter found nothing on the shapes example"
        assert re.search(r"circle|square|triangle", result["caption"]), result["caption"]
