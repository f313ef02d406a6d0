"""Live benchmark: the live view as a user meets it, on both CPU paths (native bfloat16 and AVX2-only) in one run.

For each CPU path (a child process each; the AVX2 one runs with ``ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2 PIPELINE_BFLOAT16=0``) it builds full-size architectures with random weights and loads them
through the real loaders, as ``bench.py`` does (BLIP-base by ``load_captioner(dir)``, Mask R-CNN v2 by
``load_segmenter("maskrcnn-v2")``, ``--detections`` kept per frame, ``--tokens`` new tokens per caption), serves
them with the app's own :class:`pipeline.serve.service.Service`, and measures:

- **tab**: the live tab's per-frame work (``service.live.overlay``: key frames in the background, outlines carried
  by optical flow, SVG out) on a simulated 30 frames/s webcam of moving shapes (640x480), frames sent as the browser
  sends them (the next once the last is answered, at most every 0.04 s): updates/s, caption age p50/p95, key frames;
- **two sessions**: the same with two clients at once, each one's updates/s;
- **/live_frame**: one ``gradio_client`` script, in a process of its own as a user's script is, calling
  ``/live_frame`` in a loop on the app served on 127.0.0.1: calls/s and caption age (the annotated frame and the
  COCO RLE instances come back every call), with each frame uploaded (``handle_file``) and the annotated frame
  downloaded (the client's defaults), and *inline*, as README shows a fast loop: the frame inside the request as a
  ``data:`` URL, nothing downloaded (``Client(url, download_files=False, ssl_verify=ssl.create_default_context())``:
  ``gradio_client`` opens a new ``httpx`` client for each request, and each loads the CA bundle again unless given
  one SSL context, encode/httpx issue 2298; on these 2 cores that was four fifths of the script's CPU);
- **browser**: Chromium's fake camera on the live tab (Playwright): outline redraws/s the page showed;
- **IoU**: the outlines' mean IoU with the true masks of a moving-shapes video (``train.moving_shapes``), with the
  ``shapes`` segmenter made to take as long per key frame as the full-size one did here, shown at the tab's measured
  rate; beside it, the IoU of segmenting every frame.

Run it (about 6 minutes on 2 cores)::

    HF_HUB_OFFLINE=1 python space/benchmark/live.py --out bench-results

In seconds, on tiny random models (what the tests run)::

    python space/benchmark/live.py --tiny --seconds 2 --paths native --no-browser --out /tmp/live

It prints a Markdown table and writes ``live.json``.
"""

from __future__ import annotations

import argparse
import base64
import functools
import importlib.util
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:  # run as a script: the library is at the root
    sys.path.insert(0, str(ROOT))

#: The CPU paths: the environment each child runs with.
PATHS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "PIPELINE_BFLOAT16": "0"},
}
CAMERA_FPS = 30.0
STREAM_EVERY = 0.04  # app.LIVE_STREAM_EVERY: the browser's least time between two frames


@functools.cache
def load_script(name: str) -> Any:
    """A script beside this one (``bench``, ``browser``) imported as a module, once."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def percentiles(values: list[float]) -> dict[str, float]:
    """bench.py's p50 and p95, or only the count when there is nothing to count."""
    return load_script("bench").percentiles(values) if values else {"n": 0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python space/benchmark/live.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench-results", help="folder for live.json")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each measured stream (default 30)")
    parser.add_argument("--paths", default="native,avx2", help="CPU paths to measure, of native,avx2 (default both)")
    parser.add_argument("--tiny", action="store_true", help="tiny random models instead of full-size ones")
    parser.add_argument("--no-browser", action="store_true", help="leave out the browser measurement")
    parser.add_argument(
        "--detections",
        type=int,
        default=10,
        help="detections kept per frame (default 10, as bench.py: random "
        "weights find junk everywhere, a camera's scene has a few objects)",
    )
    parser.add_argument(
        "--tokens",
        type=int,
        default=20,
        help="new tokens every caption generates (default 20, as bench.py: random weights never end a caption, "
        "so it would run to the 30-token limit; BLIP-base's captions are sentences of about ten words)",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one path, in its own process
    parser.add_argument("--api-client", default=None, help=argparse.SUPPRESS)  # the /live_frame script
    args = parser.parse_args(argv)
    args.paths = [name.strip() for name in args.paths.split(",") if name.strip()]
    if not args.paths or set(args.paths) - set(PATHS):
        parser.error(f"--paths must be among {tuple(PATHS)}, got {args.paths}")
    if not 1 <= args.tokens <= 60:
        parser.error(f"--tokens must be between 1 and 60, got {args.tokens}")
    if not 1 <= args.detections <= 100:
        parser.error(f"--detections must be between 1 and 100, got {args.detections}")
    if not 0 < args.seconds <= 600:
        parser.error(f"--seconds must be between 0 and 600, got {args.seconds}")
    return args


def camera(seconds: float, size: tuple[int, int] = (640, 480)) -> Callable[[float], tuple[int, Any]]:
    """A simulated webcam: ``frame_at(elapsed)`` -> (index, the picture it shows then) of a moving-shapes video."""
    from train.moving_shapes import moving_sequence

    video = moving_sequence(np.random.default_rng(0), frames=int(CAMERA_FPS * 4), size=size)
    frames = video.frames + video.frames[::-1]  # played forth and back, so that it never jumps

    def frame_at(elapsed: float) -> tuple[int, Any]:
        index = int(elapsed * CAMERA_FPS)
        return index, frames[index % len(frames)]

    return frame_at


def browser_pace(loop: Callable[[Any], dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Send the camera's newest frame, wait for the answer, send the next no sooner than ``STREAM_EVERY`` after the
    last: the way Gradio's webcam streams. ``loop`` returns the frame's stats, or None when it sent none. Returns
    updates/s, caption ages (as the stats said them), the key frames and the median time of those the stats showed
    (each stats answer says how long the last key frame took: one key frame alone is too noisy for the IoU's pace)."""
    frame_at = camera(seconds)
    start, answers, ages, stats, key_times = time.perf_counter(), 0, [], {}, {}
    while (elapsed := time.perf_counter() - start) < seconds:
        sent = time.perf_counter()
        answer = loop(frame_at(elapsed)[1])
        answers += 1
        if answer is not None:  # the tab sends its figures twice a second, its outlines every frame
            stats = answer
            if stats.get("caption_age_s") is not None:
                ages.append(stats["caption_age_s"])
            if stats.get("key_frames"):
                key_times[stats["key_frames"]] = stats.get("segment_ms")
        time.sleep(max(0.0, STREAM_EVERY - (time.perf_counter() - sent)))
    took = time.perf_counter() - start
    return {
        "updates_per_s": answers / took,
        "caption_age_s": percentiles(ages[len(ages) // 10 :]),  # past the first caption's wait
        "key_frames": stats.get("key_frames"),
        "key_ms": round(float(np.median(list(key_times.values()))), 1) if key_times else None,
        "seconds": round(took, 1),
    }


def measure_tab(service, models: dict[str, str], seconds: float, key: str = "tab") -> dict[str, Any]:
    def overlay(picture):
        return service.live.overlay(key, picture, models["captioner"], models["segmenter"], 0.5)[2]

    return browser_pace(overlay, seconds)


def measure_two(service, models: dict[str, str], seconds: float) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = [{}, {}]

    def run(index: int) -> None:
        results[index] = measure_tab(service, models, seconds, key=f"two-{index}")

    threads = [threading.Thread(target=run, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def inline(path: Path) -> dict[str, Any]:
    """A frame for ``/live_frame`` sent inside the request (a ``data:`` URL) instead of uploaded first."""
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return {"url": f"data:image/jpeg;base64,{encoded}", "meta": {"_type": "gradio.FileData"}}


def measure_api(url: str, models: dict[str, str], seconds: float, folder: Path, *, quick: bool) -> dict[str, Any]:
    """:func:`api_loop` in a process of its own, as a user's script runs (in the server's process the script's Python
    took turns with the server's threads for one interpreter lock)."""
    job = {"url": url, "models": models, "seconds": seconds, "folder": str(folder), "quick": quick}
    return run_self(["--api-client", json.dumps(job)], timeout=seconds + 120)


def run_self(flags: list[str], **options: Any) -> dict[str, Any]:
    """This script run again in a process of its own with ``flags`` (``subprocess.run`` ``options``); its report, the
    JSON of the last line it printed."""
    command = [sys.executable, str(Path(__file__).resolve()), *flags]
    done = subprocess.run(command, stdout=subprocess.PIPE, check=True, **options)
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def api_loop(url: str, models: dict[str, str], seconds: float, folder: Path, *, quick: bool) -> dict[str, Any]:
    """One gradio_client script calling /live_frame in a loop on JPEG frames. ``quick``: each frame inline, the
    annotated frame not downloaded and one SSL context for all the requests (README's fast loop); otherwise
    ``handle_file`` and the client's defaults (an upload and a download per call, the CA bundle loaded for each)."""
    from gradio_client import Client, handle_file

    verify = ssl.create_default_context() if quick else True
    client = Client(url, verbose=False, download_files=not quick, ssl_verify=verify)
    frame_at = camera(seconds)
    files = []
    for index in range(0, 240, 6):
        path = folder / f"frame-{index:03d}.jpg"
        frame_at(index / CAMERA_FPS)[1].save(path, quality=85)
        files.append(inline(path) if quick else handle_file(str(path)))
    start, calls, ages, instances = time.perf_counter(), 0, [], 0
    while time.perf_counter() - start < seconds:
        frame = files[int((time.perf_counter() - start) * CAMERA_FPS / 6) % len(files)]
        _, _, stats = client.predict(frame, models["captioner"], models["segmenter"], 0.5, api_name="/live_frame")
        calls += 1
        instances += len(stats.get("instances", []))
        if stats.get("caption_age_s") is not None:
            ages.append(stats["caption_age_s"])
    took = time.perf_counter() - start
    return {"calls_per_s": calls / took, "caption_age_s": percentiles(ages), "instances_per_call": instances / calls}


class FixedLength:
    """A captioner whose every caption is ``tokens`` new tokens long (``min_new_tokens`` = ``max_new_tokens``), the
    live view's calls and any other alike; everything else is the wrapped pipeline's."""

    def __init__(self, captioner: Any, tokens: int):
        self.captioner, self.tokens = captioner, tokens

    def __call__(self, images: Any, **options: Any) -> Any:
        forced = {"max_new_tokens": self.tokens, "generate_kwargs": {"min_new_tokens": self.tokens}}
        return self.captioner(images, **{**forced, **options})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.captioner, name)


def measure_browser(url: str, seconds: float) -> dict[str, Any]:
    """The live tab in Chromium with its fake camera: outline redraws per second the page showed."""
    from playwright.sync_api import sync_playwright

    browser_flags = load_script("browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_flags.CHROMIUM, args=browser_flags.CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.get_by_role("tab", name="Live camera").click()
            page.locator("#live-in button", has_text="Click to Access Webcam").click()
            page.locator("#live-in button", has_text="Record").click()
            page.wait_for_function("() => window.liveOverlay && window.liveOverlay.updates >= 3", timeout=300_000)
            before = page.evaluate("() => window.liveOverlay.updates")
            time.sleep(seconds)
            after = page.evaluate("() => window.liveOverlay.updates")
            stats = page.inner_text("#live-stats")
            page.locator("#live-in button", has_text="Stop").click()
        finally:
            browser.close()
    return {"updates_per_s": (after - before) / seconds, "page_stats": stats}


class Delayed:
    """A segmenter that takes at least ``seconds`` per call (sleeping the rest), like a slower model would."""

    def __init__(self, segmenter: Any, seconds: float):
        self.segmenter, self.seconds = segmenter, seconds

    def __call__(self, image, **options):
        start = time.perf_counter()
        found = self.segmenter(image, **options)
        time.sleep(max(0.0, self.seconds - (time.perf_counter() - start)))
        return found


def measure_iou(key_seconds: float, rate: float) -> dict[str, Any]:
    """Mean IoU of the outlines shown at ``rate`` updates/s with key frames taking ``key_seconds``, and of
    segmenting every frame, on a moving-shapes video with the ``shapes`` segmenter."""
    from pipeline.catalog import load_segmenter
    from pipeline.stream import LiveStream
    from train.moving_shapes import frame_ious, mean_iou, moving_sequence

    segmenter = load_segmenter("shapes", device="cpu")
    video = moving_sequence(np.random.default_rng(1), frames=int(CAMERA_FPS * 6), size=(320, 240))
    live = LiveStream(Delayed(segmenter, key_seconds), threshold=0.5, max_age_s=3600.0)
    scores, start = [], time.perf_counter()
    while (index := int((time.perf_counter() - start) * CAMERA_FPS)) < len(video.frames):
        sent = time.perf_counter()
        shown = live.process(video.frames[index]).result["instances"]
        scores += frame_ious(video.masks[index], [each["mask"].full() for each in shown])
        time.sleep(max(0.0, 1.0 / rate - (time.perf_counter() - sent)))
    live.close()
    every = []
    for index in range(0, len(video.frames), 5):
        found = segmenter(video.frames[index], threshold=0.5, subtask="instance")["instances"]
        every += frame_ious(video.masks[index], [np.asarray(each["mask"]) > 0 for each in found])
    return {"live": mean_iou(scores), "every_frame": mean_iou(every), "scored": len(scores)}


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One CPU path, in this process: build, serve and measure."""
    import torch

    import app
    from pipeline.catalog import load_segmenter
    from pipeline.machine import machine_info
    from pipeline.serve.config import build_service
    from pipeline.serve.config import parse_args as app_args

    bench = load_script("bench")
    report: dict[str, Any] = {"path": args.child, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}
    with tempfile.TemporaryDirectory() as folder:
        built = bench.build_models(Path(folder), tiny=args.tiny)
        report["models"] = built["notes"]
        flags = ["--captioner", built["captioner"], "--segmenter", built["segmenter"], "--offline"]
        service, defaults = build_service(app_args(flags))
        kept = {"box_detections_per_img": args.detections}
        service.models.cache.loaders["segmenter"] = functools.partial(load_segmenter, model_kwargs=kept)
        load_captioner = service.models.cache.loaders["captioner"]
        service.models.cache.loaders["captioner"] = lambda *a, **k: FixedLength(load_captioner(*a, **k), args.tokens)
        models = {"captioner": defaults["captioner"], "segmenter": defaults["segmenter"]}
        service.models.cache.preload([("captioner", models["captioner"]), ("segmenter", models["segmenter"])])
        measure_tab(service, models, min(args.seconds, 5.0), key="warm-up")
        report["tab"] = measure_tab(service, models, args.seconds)
        report["two_sessions"] = measure_two(service, models, args.seconds)
        demo = app.build_demo(service, models)
        _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **app.launch_options())
        try:
            report["live_frame"] = measure_api(url, models, args.seconds, Path(folder), quick=False)
            report["live_frame_quick"] = measure_api(url, models, args.seconds, Path(folder), quick=True)
            if not args.no_browser:
                report["browser"] = measure_browser(url, args.seconds)
        finally:
            demo.close()
            service.close()
        key_seconds = (report["tab"]["key_ms"] or 0.0) / 1000.0
        report["iou"] = {**measure_iou(key_seconds, report["tab"]["updates_per_s"]), "key_seconds": key_seconds}
        report["machine"] = machine_info()
    return report


def table(reports: list[dict[str, Any]]) -> str:
    lines = [
        "| CPU path | tab updates/s | caption age p50 / p95 (s) | key frame (s) | two sessions (updates/s each) "
        "| /live_frame calls/s: uploaded / inline (age p50 s) | browser redraws/s | outline IoU live / every frame |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for report in reports:
        tab, api, quick, iou = report["tab"], report["live_frame"], report["live_frame_quick"], report["iou"]
        quick_age = quick["caption_age_s"]
        age = tab["caption_age_s"]
        two = " / ".join(f"{each['updates_per_s']:.1f}" for each in report["two_sessions"])
        browser = f"{report['browser']['updates_per_s']:.1f}" if "browser" in report else "not measured"
        lines.append(
            f"| {report['path']} ({report['torch_cpu_capability']}) | {tab['updates_per_s']:.1f} "
            f"| {age.get('p50', float('nan')):.2f} / {age.get('p95', float('nan')):.2f} "
            f"| {iou['key_seconds']:.2f} | {two} "
            f"| {api['calls_per_s']:.1f} / {quick['calls_per_s']:.1f} ({quick_age.get('p50', float('nan')):.2f}) "
            f"| {browser} "
            f"| {iou['live']:.3f} / {iou['every_frame']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.api_client:
        job = json.loads(args.api_client)
        job["folder"] = Path(job["folder"])
        print("\n" + json.dumps(api_loop(**job)), flush=True)  # the last line: run_self reads it
        return 0
    if args.child:
        print("\n" + json.dumps(child(args)), flush=True)  # the last line: run_self reads it
        return 0
    reports = []
    for path in args.paths:
        flags = ["--child", path, "--seconds", str(args.seconds)]
        flags += ["--tiny"] * args.tiny + ["--no-browser"] * args.no_browser + ["--detections", str(args.detections)]
        flags += ["--tokens", str(args.tokens)]
        print(f"measuring the {path} CPU path ...", file=sys.stderr, flush=True)
        reports.append(run_self(flags, env={**os.environ, **PATHS[path]}))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "live.json").write_text(json.dumps(reports, indent=2))
    print(table(reports))
    print(f"\nwrote {out / 'live.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
