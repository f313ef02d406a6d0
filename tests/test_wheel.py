"""The console scripts run from a wheel built from the checkout and installed in a fresh virtual environment.

The environment sees this one's packages (torch, gradio, ...; :func:`helpers.venv_seeing_this_environment`), the
wheel goes in with ``--no-deps``, and every command runs from a folder outside the checkout with no ``PYTHONPATH``:
what runs is what the wheel installed (the library, its ``shapes`` models, ``app.py`` and the page's assets).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import EXAMPLES, ROOT, install_wheel_of_checkout

pytestmark = pytest.mark.slow  # a wheel build, a venv, three commands that import torch: about a minute
SCRIPTS = ("caption-segment", "caption-segment-app", "caption-segment-batch")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """Build the wheel, install it in a new venv; the venv's bin folder and a scratch folder outside the checkout."""
    root = tmp_path_factory.mktemp("wheel")
    python = install_wheel_of_checkout(root) / "python"
    work = root / "work"
    work.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("APP_", "GRADIO_", "PYTHON"))}
    env.update(HF_HUB_OFFLINE="1", MPLBACKEND="Agg", PATH=f"{python.parent}{os.pathsep}{env.get('PATH', '')}")
    return {"bin": python.parent, "work": work, "env": env}


def run(installed: dict, *argv: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(installed["bin"] / argv[0]), *argv[1:]],
        cwd=installed["work"], env=installed["env"], capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_wheel_installs_the_library_and_the_app_outside_the_checkout(installed):
    printed = run(installed, "python", "-c", "import app, pipeline; print(app.__file__); print(pipeline.__file__)")
    for line in printed.split():
        assert ROOT not in Path(line).parents and "site-packages" in line
    assert all((installed["bin"] / name).is_file() for name in SCRIPTS)


def test_caption_segment_describes_a_picture(installed):
    shapes = str(EXAMPLES / "shapes.png")
    printed = run(
        installed, "caption-segment", shapes, "--captioner", "shapes", "--segmenter", "shapes", "--json", "o.json"
    )
    result = json.loads((installed["work"] / "o.json").read_text())
    (first,) = result if isinstance(result, list) else [result]
    assert first["caption"] and first["caption"] in printed
    assert first["instances"], "the shapes segmenter finds the shapes of its own example"
    assert "usage: " in run(installed, "caption-segment", "--help")


def test_caption_segment_batch_runs_a_folder(installed):
    images = installed["work"] / "images"
    images.mkdir()
    for name in ("shapes.png", "cat.jpg"):
        shutil.copy2(EXAMPLES / name, images / name)
    run(
        installed,
        "caption-segment-batch",
        str(images),
        "--output",
        "out",
        "--captioner",
        "shapes",
        "--segmenter",
        "shapes",
    )
    captions = (installed["work"] / "out" / "captions.jsonl").read_text().splitlines()
    assert sorted(Path(json.loads(line)["file"]).name for line in captions) == ["cat.jpg", "shapes.png"]
    assert all(json.loads(line)["caption"] for line in captions)


def test_caption_segment_app_serves_the_page_with_its_assets(installed):
    assert "--captioner" in run(installed, "caption-segment-app", "--help")
    port = free_port()
    server = subprocess.Popen(
        [str(installed["bin"] / "caption-segment-app"), "--captioner", "shapes", "--segmenter", "shapes",
         "--host", "127.0.0.1", "--port", str(port), "--no-preload"],
        cwd=installed["work"], env=installed["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/"
        page = wait_for(url, server)
        assert "Describe and outline" in page
        config = json.loads(urllib.request.urlopen(url + "config", timeout=30).read())
        css = (ROOT / "pipeline" / "serve" / "page" / "page.css").read_text()
        assert css.strip()[:200] in (config.get("css") or ""), "the page's stylesheet did not come with the wheel"
        assert "shapes" in json.dumps(config)
    finally:
        server.terminate()
        server.wait(timeout=60)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, server: subprocess.Popen, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the app stopped ({server.returncode}):\n{server.stdout.read()}")
        try:
            return urllib.request.urlopen(url, timeout=10).read().decode()
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout} s")
