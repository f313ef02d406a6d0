"""A bounded load test of a running app: photo clients and live loops at once, latencies, errors, live frames' share.

    python space/loadtest.py http://127.0.0.1:7860/                      # a local app (python app.py)
    python space/loadtest.py https://USER-NAME.hf.space/ --clients 4 --requests 10
    python space/loadtest.py URL --captioner blip-base --segmenter maskrcnn-v2 --json load.json

It first times ``/live_frame`` alone (the idle figure), then runs ``--clients`` photo clients, each sending
``--requests`` mixed requests (``/caption``, ``/segment``, ``/analyze``, ``/describe`` in turn, on the example
photos), while ``--live-loops`` clients call ``/live_frame`` in a loop, and prints each endpoint's latency p50/p95,
the errors, and live frame latency under load against idle. Every count and the total time are bounded
(``--max-seconds``). Run it against your own deployment only: it is a load test. The project's tests run it against
127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import functools
import json
import ssl
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent / "examples"
PHOTO_ENDPOINTS = ("/caption", "/segment", "/analyze", "/describe")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python space/loadtest.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the app's address, e.g. http://127.0.0.1:7860/ or https://USER-NAME.hf.space/")
    parser.add_argument("--clients", type=int, default=8, help="photo clients at once (default 8)")
    parser.add_argument("--requests", type=int, default=25, help="requests each photo client sends (default 25)")
    parser.add_argument("--live-loops", type=int, default=2, help="clients calling /live_frame in a loop (default 2)")
    parser.add_argument("--idle-frames", type=int, default=8, help="/live_frame calls timed alone first (default 8)")
    parser.add_argument("--captioner", default="shapes", help="captioner every request names (default shapes)")
    parser.add_argument("--segmenter", default="shapes", help="segmenter every request names (default shapes)")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop after this long (default 600)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    for name in ("clients", "requests", "idle_frames"):
        if not 1 <= getattr(args, name) <= 1000:
            parser.error(f"--{name.replace('_', '-')} must be between 1 and 1000, got {getattr(args, name)}")
    if not 0 <= args.live_loops <= 32:
        parser.error(f"--live-loops must be between 0 and 32, got {args.live_loops}")
    return args


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "max": ordered[-1],
    }


class Recorder:
    """Latencies (seconds) and errors by endpoint, from many threads."""

    def __init__(self):
        self.latencies: dict[str, list[float]] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def timed(self, endpoint: str, call) -> Any:
        start = time.perf_counter()
        try:
            answer = call()
        except Exception as error:  # every failure is a finding of the test
            with self._lock:
                self.errors.append(f"{endpoint}: {type(error).__name__}: {str(error)[:200]}")
            return None
        with self._lock:
            self.latencies.setdefault(endpoint, []).append(time.perf_counter() - start)
        return answer


def photo_request(client: Any, endpoint: str, photo: Any, args: argparse.Namespace) -> Any:
    """One request of a photo client (``gradio_client``), checked for the answer's shape."""
    if endpoint == "/caption":
        caption = client.predict(photo, args.captioner, api_name=endpoint)
        assert isinstance(caption, str) and caption, caption
    elif endpoint == "/segment":
        segments = client.predict(photo, args.segmenter, 0.5, "all", api_name=endpoint)
        assert "instances" in segments and "panoptic" in segments
    elif endpoint == "/analyze":
        result, picture = client.predict(photo, args.captioner, args.segmenter, {"max_new_tokens": 20},
                                         api_name=endpoint)  # fmt: skip
        assert result["caption"] and Path(picture).stat().st_size > 0
    else:
        described = client.predict(photo, args.captioner, args.segmenter, {"detail": "short"}, api_name=endpoint)
        assert described["alt_text"]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The load test; returns the figures (also what ``--json`` writes)."""
    from gradio_client import Client, handle_file

    photos = [handle_file(str(path)) for path in sorted(EXAMPLES.glob("*.jpg")) + sorted(EXAMPLES.glob("*.png"))]
    deadline = time.monotonic() + args.max_seconds
    idle, loaded = Recorder(), Recorder()
    # One SSL context for every request: gradio_client opens an httpx client per request, and each would load the CA
    # bundle again (encode/httpx issue 2298), CPU that a load test on the server's machine takes from the server.
    verify = ssl.create_default_context()
    live_client = Client(args.url, verbose=False, ssl_verify=verify)
    for index in range(args.idle_frames):  # the live view alone: the reference figure
        idle.timed("/live_frame", lambda index=index: live_client.predict(
            photos[index % len(photos)], args.captioner, args.segmenter, 0.5, api_name="/live_frame"))  # fmt: skip
    stop = threading.Event()

    def live_loop(number: int) -> None:
        client, index = Client(args.url, verbose=False, ssl_verify=verify), 0
        while not stop.is_set() and time.monotonic() < deadline:
            photo = photos[index % len(photos)]
            loaded.timed("/live_frame", lambda photo=photo: client.predict(
                photo, args.captioner, args.segmenter, 0.5, api_name="/live_frame"))  # fmt: skip
            index += 1

    def photo_client(number: int) -> None:
        client = Client(args.url, verbose=False, ssl_verify=verify)
        for index in range(args.requests):
            if time.monotonic() > deadline:
                return
            endpoint = PHOTO_ENDPOINTS[(number + index) % len(PHOTO_ENDPOINTS)]
            photo = photos[(number + index) % len(photos)]
            loaded.timed(endpoint, functools.partial(photo_request, client, endpoint, photo, args))

    start = time.perf_counter()
    loops = [threading.Thread(target=live_loop, args=(n,), daemon=True) for n in range(args.live_loops)]
    clients = [threading.Thread(target=photo_client, args=(n,), daemon=True) for n in range(args.clients)]
    for thread in loops + clients:
        thread.start()
    for thread in clients:
        thread.join(max(0.0, deadline - time.monotonic()))
    stop.set()
    for thread in loops:
        thread.join(60)
    figures = {
        "url": args.url,
        "clients": args.clients,
        "requests_per_client": args.requests,
        "live_loops": args.live_loops,
        "seconds": round(time.perf_counter() - start, 1),
        "errors": idle.errors + loaded.errors,
        "idle": {endpoint: percentiles(values) for endpoint, values in idle.latencies.items()},
        "under_load": {endpoint: percentiles(values) for endpoint, values in loaded.latencies.items()},
        "timed_out": time.monotonic() > deadline,
    }
    live_idle = figures["idle"].get("/live_frame", {}).get("p50")
    live_loaded = figures["under_load"].get("/live_frame", {}).get("p50")
    figures["live_slowdown_p50"] = live_loaded / live_idle if live_idle and live_loaded else None
    return figures


def report(figures: dict[str, Any]) -> str:
    lines = [
        f"{figures['url']}: {figures['clients']} photo clients x {figures['requests_per_client']} requests, "
        f"{figures['live_loops']} live loops, {figures['seconds']} s, {len(figures['errors'])} errors"
    ]
    for phase in ("idle", "under_load"):
        for endpoint, values in sorted(figures[phase].items()):
            if values.get("n"):
                lines.append(f"  {phase:<10} {endpoint:<12} n={values['n']:<4} p50 {values['p50']:.2f} s  "
                             f"p95 {values['p95']:.2f} s  max {values['max']:.2f} s")  # fmt: skip
    if figures["live_slowdown_p50"] is not None:
        lines.append(f"  live frame latency under load / idle, p50: {figures['live_slowdown_p50']:.2f}x")
    lines += [f"  error: {error}" for error in figures["errors"][:20]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    figures = run(args)
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 1 if figures["errors"] or figures["timed_out"] else 0


if __name__ == "__main__":
    sys.exit(main())
