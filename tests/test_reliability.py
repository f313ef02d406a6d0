"""The app as a public service: odd and hostile files, load, cancelled and killed clients, what clients may load,
memory by photo size. Real servers on 127.0.0.1 only, bounded in count and time (``pytest -m reliability``).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np
import psutil
import pytest
from gradio_client import Client, handle_file
from helpers import EXAMPLES, ROOT, TEST_CAPTIONER, install_torchvision_stand_in, serve
from PIL import Image

from pipeline import load_image
from pipeline.images import DEFAULT_MAX_PIXELS

pytestmark = pytest.mark.reliability
SEGMENTER = "test-circles"
#: Longest a request may take to be answered or refused.
ANSWER_WITHIN_S = 20.0


# -- the corpus ----------------------------------------------------------------------------------------------------


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth picture (gradients and discs) that compresses like a photo, at any size."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(seed)
    pixels = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=2)
    for _ in range(3):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.05, 0.2) * min(width, height)
        pixels[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.integers(0, 255, 3)
    return Image.fromarray(pixels.astype(np.uint8))


def _png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG header that declares width x height pixels, with a few bytes of (zero) data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * ((width + 7) // 8 + 1) * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def _gif_bomb() -> bytes:
    """A GIF whose logical screen is 65535 x 65535 pixels."""
    data = bytearray(_save(Image.new("P", (4, 4)), "GIF"))
    data[6:10] = struct.pack("<HH", 65535, 65535)
    return bytes(data)


def corpus() -> dict[str, tuple[bytes, str | None]]:
    """``{file name: (bytes, None for a valid picture or the pattern of its refusal)}``."""
    photo = _photo(320, 240)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: shown turned by 90 degrees
    animated = [Image.new("P", (40, 30), color) for color in (1, 50, 200)]
    sixteen = Image.fromarray((np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16))
    palette = Image.new("P", (40, 30), 3)
    palette.info["transparency"] = 3
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("photo.jpg", _save(photo, "JPEG"))
    valid = {
        "1x1.png": _save(Image.new("RGB", (1, 1), "red"), "PNG"),
        "2x2.png": _save(Image.new("RGB", (2, 2), "blue"), "PNG"),
        "thin-12x2000.png": _save(_photo(12, 2000), "PNG"),
        "thin-2000x12.png": _save(_photo(2000, 12), "PNG"),
        "16-bit.png": _save(sixteen, "PNG"),
        "cmyk.jpg": _save(photo.convert("CMYK"), "JPEG"),
        "palette-transparent.png": _save(palette, "PNG", transparency=3),
        "grey-alpha.png": _save(photo.convert("LA"), "PNG"),
        "animated.gif": _save(animated[0], "GIF", save_all=True, append_images=animated[1:], loop=0),
        "exif-rotated.jpg": _save(photo, "JPEG", exif=exif),
        "photo.webp": _save(photo, "WEBP"),
        "photo.bmp": _save(photo, "BMP"),
        "photo.tiff": _save(photo, "TIFF"),
        "large-24mp.jpg": _save(_photo(6000, 4000), "JPEG", quality=85),
    }
    bad = {
        "empty.jpg": (b"", r"(?i)empty"),
        "random.jpg": (np.random.default_rng(0).bytes(4096), r"(?i)not an image"),
        "truncated.jpg": (_save(photo, "JPEG")[:2000], r"(?i)(broken|truncated)"),
        "notes.png": (b"this is text, not a picture\n" * 20, r"(?i)not an image"),
        "drawing.svg": (
            b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="9" height="9"/></svg>',
            "(?i)not an image",
        ),
        "document.pdf": (b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", r"(?i)not an image"),
        "archive.zip": (archive.getvalue(), r"(?i)not an image"),
        "bomb.png": (_png_bomb(50_000, 50_000), r"(?i)too large"),
        "bomb.gif": (_gif_bomb(), r"(?i)too large"),
    }
    return {**{name: (data, None) for name, data in valid.items()}, **bad}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, tuple[Path, str | None]]:
    folder = tmp_path_factory.mktemp("corpus")
    written = {}
    for name, (data, refusal) in corpus().items():
        (folder / name).write_bytes(data)
        written[name] = (folder / name, refusal)
    return written


def test_the_library_answers_every_valid_picture_and_names_what_is_wrong_with_the_rest(files):
    from pipeline import load_pipeline

    pipe = load_pipeline("shapes", "shapes", device="cpu", profile="fast")
    for name, (path, refusal) in files.items():
        start = time.monotonic()
        if refusal is None:
            result = pipe(str(path))
            width, height = load_image(path).size
            assert result["caption"] and result["semantic"]["map"].shape == (height, width), name
        else:
            with pytest.raises(ValueError, match=refusal):
                pipe(str(path))
        assert time.monotonic() - start < ANSWER_WITHIN_S, name
    assert DEFAULT_MAX_PIXELS < 50_000 * 50_000


def test_the_command_line_writes_a_record_for_every_file(files, tmp_path):
    out = tmp_path / "records.json"
    command = [sys.executable, "-m", "pipeline", *(str(path) for path, _ in files.values()), "--captioner",
               "shapes", "--segmenter", "shapes", "--json", str(out)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and "Traceback" not in done.stderr  # some files are bad: exit code 1, no crash
    records = {Path(record["image"]).name: record for record in json.loads(out.read_text())}
    for name, (_, refusal) in files.items():
        if refusal is None:
            assert records[name]["caption"], name
        else:
            assert re.search(refusal, records[name]["error"]), (name, records[name]["error"])


# -- a real server -------------------------------------------------------------------------------------------------


ENDPOINT_CALLS = {
    "/caption": lambda c, f: c.predict(f, TEST_CAPTIONER, api_name="/caption"),
    "/segment": lambda c, f: c.predict(f, SEGMENTER, 0.5, "all", api_name="/segment"),
    "/analyze": lambda c, f: c.predict(f, TEST_CAPTIONER, SEGMENTER, {}, api_name="/analyze"),
    "/describe": lambda c, f: c.predict(f, TEST_CAPTIONER, SEGMENTER, {}, api_name="/describe"),
    "/compare": lambda c, f: c.predict(f, [TEST_CAPTIONER, "blip-base"], {}, api_name="/compare"),
    "/live_frame": lambda c, f: c.predict(f, TEST_CAPTIONER, SEGMENTER, 0.5, api_name="/live_frame"),
}


@pytest.mark.parametrize("endpoint", list(ENDPOINT_CALLS))
def test_every_endpoint_answers_or_names_the_problem_and_keeps_serving(client, files, endpoint):
    call = ENDPOINT_CALLS[endpoint]
    for name, (path, refusal) in files.items():
        start = time.monotonic()
        if refusal is None:
            assert call(client, handle_file(str(path))), (endpoint, name)
        else:
            with pytest.raises(Exception, match=refusal):
                call(client, handle_file(str(path)))
        assert time.monotonic() - start < ANSWER_WITHIN_S, (endpoint, name)
    assert call(client, handle_file(str(EXAMPLES / "cat.jpg")))  # and the next good request is answered


def _call_raw(url: str, endpoint: str, data: list) -> str:
    """Gradio's own HTTP API, as any client may call it: POST the data, then read the event stream's outcome."""
    request = urllib.request.Request(
        f"{url}gradio_api/call/{endpoint}", data=json.dumps({"data": data}).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    event = json.loads(urllib.request.urlopen(request, timeout=60).read())["event_id"]
    return urllib.request.urlopen(f"{url}gradio_api/call/{endpoint}/{event}", timeout=120).read().decode()


def test_a_data_url_is_held_to_the_upload_limit(server):
    small = "data:image/png;base64," + base64.b64encode(_save(_photo(64, 48), "PNG")).decode()
    answer = _call_raw(server, "caption", [{"url": small, "meta": {"_type": "gradio.FileData"}}, TEST_CAPTIONER])
    assert "event: complete" in answer
    huge = "data:image/png;base64," + "A" * (41 * 2**20 * 4 // 3)  # 41 MB, over the 25 MB upload limit
    answer = _call_raw(server, "caption", [{"url": huge, "meta": {"_type": "gradio.FileData"}}, TEST_CAPTIONER])
    assert "event: error" in answer and "up to 25 MB" in answer


@pytest.mark.parametrize(
    "name", ["/etc", "/tmp", "../../../etc", "someone/some-model", "shapes/", "./shapes", "/etc/segmenter.json"]
)
def test_clients_cannot_make_the_server_load_what_is_not_in_its_menus(client, app_models, name):
    photo = handle_file(str(EXAMPLES / "cat.jpg"))
    expected = r"unknown segmenter .*: choose one of \['test-circles', 'test-squares', 'maskrcnn-v2'\]$"
    with pytest.raises(Exception, match=expected) as caught:
        client.predict(photo, name, 0.5, "all", api_name="/segment")
    assert "missing" not in str(caught.value) and "exist" not in str(caught.value)
    directory = app_models["test-squares"]
    for spelling in (directory, f"{directory}/", f"{directory}//x/..", f"{directory}/."):
        with pytest.raises(Exception, match="unknown segmenter"):
            client.predict(photo, spelling, 0.5, "all", api_name="/segment")


def test_hub_ids_are_loaded_only_where_the_operator_allows_them(app_models, tmp_path, monkeypatch):
    demo, url = serve(allow_hub=True)
    try:
        opened = Client(url, verbose=False)
        photo = handle_file(str(EXAMPLES / "cat.jpg"))
        start = time.monotonic()
        with pytest.raises(Exception, match=r"captioner 'someone/some-model' is not installed on this server"):
            opened.predict(photo, "someone/some-model", api_name="/caption")  # offline here: it cannot download
        assert time.monotonic() - start < ANSWER_WITHIN_S
        with pytest.raises(Exception, match="unknown captioner"):
            opened.predict(photo, app_models["captioner"], api_name="/caption")  # a directory: never
    finally:
        demo.close()


def test_an_unavailable_model_tells_the_client_no_path(client):
    with pytest.raises(Exception) as caught:
        client.predict(handle_file(str(EXAMPLES / "cat.jpg")), "maskrcnn-v2", 0.5, "all", api_name="/segment")
    message = str(caught.value)
    assert "maskrcnn-v2" in message and "choose another model" in message
    assert "/root" not in message and ".pth" not in message and "checkpoints" not in message


def test_client_mistakes_get_messages_and_no_traceback_in_the_servers_log(client, capfd):
    photo = handle_file(str(EXAMPLES / "cat.jpg"))
    mistakes = [
        (lambda: client.predict(photo, TEST_CAPTIONER, SEGMENTER, {"opacity": "abc"}, api_name="/analyze"),
         "opacity must be a number from 0 to 1, got 'abc'"),
        (lambda: client.predict(photo, TEST_CAPTIONER, SEGMENTER, [1, 2], api_name="/analyze"),
         "options must be a JSON object"),
        (lambda: client.predict(photo, TEST_CAPTIONER, SEGMENTER, {"num_beams": 1000}, api_name="/analyze"),
         "num_beams must be an integer from 1 to 8, got 1000"),
        (lambda: client.predict(photo, TEST_CAPTIONER, SEGMENTER, 5, api_name="/live_frame"),
         "threshold must be a number from 0 to 1, got 5"),
        (lambda: client.predict(photo, TEST_CAPTIONER, SEGMENTER, "abc", api_name="/live_frame"),
         "threshold must be a number from 0 to 1, got 'abc'"),
        (lambda: client.predict(photo, SEGMENTER, "abc", "all", api_name="/segment"),
         "threshold must be a number from 0 to 1, got 'abc'"),
    ]  # fmt: skip
    capfd.readouterr()
    for call, message in mistakes:
        start = time.monotonic()
        with pytest.raises(Exception, match=re.escape(message)):
            call()
        assert time.monotonic() - start < 1.0 + 1.0  # answered at once (plus a round trip on busy cores)
    assert "Traceback" not in "".join(capfd.readouterr())


def test_cancelled_closed_and_killed_clients_leave_the_server_answering(server, tmp_path):
    photo = handle_file(str(EXAMPLES / "coffee.jpg"))
    client = Client(server, verbose=False)
    for _ in range(4):
        job = client.submit(photo, TEST_CAPTIONER, SEGMENTER, {}, api_name="/analyze")
        job.cancel()
    closing = Client(server, verbose=False)
    closing.submit(photo, TEST_CAPTIONER, SEGMENTER, {}, api_name="/analyze")
    closing.close()
    script = tmp_path / "client.py"
    script.write_text(
        "import sys\nfrom gradio_client import Client, handle_file\n"
        "Client(sys.argv[1], verbose=False).predict(handle_file(sys.argv[2]), 'test-tiny', 'test-circles', {},"
        " api_name='/analyze')\n"
    )
    for _ in range(2):  # killed mid-request, without a goodbye
        killed = subprocess.Popen([sys.executable, str(script), server, str(EXAMPLES / "cat.jpg")])
        time.sleep(2.0)
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
    result, _ = Client(server, verbose=False).predict(photo, TEST_CAPTIONER, SEGMENTER, {}, api_name="/analyze")
    assert result["caption"]


# -- load, and memory by photo size, on a server of its own ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class AppProcess:
    """``python app.py`` in a process of its own on 127.0.0.1, so that its memory is its own."""

    def __init__(self, *flags: str, env: dict[str, str] | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        command = [sys.executable, "app.py", "--port", str(self.port), "--offline", *flags]
        environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        self.process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)  # fmt: skip
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.stderr.read()
            try:
                urllib.request.urlopen(self.url, timeout=5)
                break
            except OSError:
                time.sleep(0.5)
        self.info = psutil.Process(self.process.pid)

    def rss(self) -> int:
        return self.info.memory_info().rss

    def close(self) -> str:
        self.process.terminate()
        _, errors = self.process.communicate(timeout=60)
        return errors


def test_a_bounded_load_with_live_loops_keeps_errors_at_zero_memory_flat_and_live_frames_first():
    sys.path.insert(0, str(ROOT / "space"))
    import loadtest

    server = AppProcess("--captioner", "shapes", "--segmenter", "shapes")
    try:
        # The warm-up has the load's shape (8 clients, every endpoint, the live loops), so that every thread that
        # will serve has served once: what grows after it is what the load leaks.
        warm = loadtest.run(loadtest.parse_args([server.url, "--clients", "8", "--requests", "4",
                                                 "--live-loops", "2", "--idle-frames", "3"]))  # fmt: skip
        assert warm["errors"] == []
        before = server.rss()
        figures = loadtest.run(loadtest.parse_args([server.url, "--clients", "8", "--requests", "25",
                                                    "--live-loops", "2", "--max-seconds", "900"]))  # fmt: skip
        after = server.rss()
    finally:
        log = server.close()
    print(loadtest.report(figures))
    print(f"server RSS after warm-up {before / 2**20:.0f} MiB, after the load {after / 2**20:.0f} MiB "
          f"({100 * (after - before) / before:+.1f}%)")  # fmt: skip
    assert figures["errors"] == [] and not figures["timed_out"]
    assert sum(values["n"] for name, values in figures["under_load"].items() if name != "/live_frame") == 200
    assert (after - before) / before < 0.05, "the server's memory grew by more than 5% under load"
    assert figures["live_slowdown_p50"] <= 2.0, "live frames slowed down more than 2x beside 8 photo clients"
    assert "Traceback" not in log


@pytest.mark.parametrize("megapixels", [40])
def test_a_40_megapixel_photo_costs_the_server_under_1_5_gib(tmp_path, megapixels):
    # The full-size Mask R-CNN v2 with random weights (a state dict under torchvision's file name, loaded through
    # the real loader), threshold 0 so that all of its 100 detections are kept.
    install_torchvision_stand_in(tmp_path / "torch-home", "maskrcnn_resnet50_fpn_v2")
    width = int((megapixels * 1e6 * 3 / 2) ** 0.5)
    photo = tmp_path / "large.jpg"
    _photo(width, width * 2 // 3, seed=4).save(photo, quality=80)
    assert photo.stat().st_size < 25 * 2**20
    server = AppProcess("--captioner", "shapes", "--segmenter", "maskrcnn-v2",
                        env={"TORCH_HOME": str(tmp_path / "torch-home")})  # fmt: skip
    try:
        client = Client(server.url, verbose=False)
        client.predict(handle_file(str(EXAMPLES / "cat.jpg")), "shapes", "maskrcnn-v2", {}, api_name="/analyze")
        baseline, peak = server.rss(), [server.rss()]
        done = threading.Event()

        def sample():
            while not done.wait(0.05):
                peak[0] = max(peak[0], server.rss())

        sampler = threading.Thread(target=sample)
        sampler.start()
        start = time.perf_counter()
        result, picture = client.predict(handle_file(str(photo)), "shapes", "maskrcnn-v2", {"threshold": 0.0},
                                         api_name="/analyze")  # fmt: skip
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    finally:
        server.close()
    added = (peak[0] - baseline) / 2**30
    print(f"{megapixels} MP ({width}x{width * 2 // 3}) through /analyze with maskrcnn-v2: {len(result['instances'])} "
          f"instances, {seconds:.1f} s, server RSS +{added:.2f} GiB at its peak")  # fmt: skip
    assert len(result["instances"]) >= 90 and Image.open(picture).size[0] <= 1280  # v2 keeps up to 100
    assert added < 1.5
