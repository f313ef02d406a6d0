"""Live frames: the newest frame wins, outlines on every frame from key frames, the caption follows, frames/s.

A webcam sends frames faster than a CPU can segment them. :class:`LiveStream` keeps one session's state:

- **latest frame wins**: while a frame is being processed, at most one frame waits; a newer arrival replaces it and
  the replaced caller gets the last processed result back at once (``dropped=True``). A frame older than
  ``max_age_s`` (by its capture time) is dropped the same way. Nothing queues up, so the picture never lags.
- **outlines on every frame from key frames** (:class:`pipeline.tracking.KeyFrames`): a key frame is segmented in
  the background, scaled to ``max_side`` pixels, with the ``live`` speed profile
  (:func:`pipeline.speed.segmenter_view`, weights shared), while every frame is answered at once with the key
  frame's masks carried to it by optical flow; a new key frame follows every ``key_every_s``, at once on a scene
  change or a new threshold. ``carry=False`` segments every frame instead (slower, for comparison).
- **caption on a cadence**: it is refreshed in a background thread when ``caption_every_s`` has passed or the scene
  changed (mean absolute difference of 32x32 grey thumbnails above ``scene_change``), never blocking frames.
- **frames/s** of processed frames over a sliding window (:class:`FpsMeter`).

A served app keeps one per browser tab or client (:class:`pipeline.serve.live.SessionRegistry`).

>>> meter = FpsMeter(window_s=1.5)
>>> for t in (0.0, 0.5, 1.0, 1.5, 2.0, 2.25, 2.5, 2.75, 3.0, 3.25, 3.5):
...     meter.tick(t)
>>> meter.fps()  # over the last 1.5 s: 4 frames a second
4.0
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from .images import ImageInput, load_image
from .kernels import limit_intraop_threads
from .tracking import KeyFrames

#: Live frames are scaled so that their longer side is at most this many pixels before anything else.
LIVE_MAX_SIDE = 480


class FpsMeter:
    """Frames per second over the last ``window_s`` seconds.

    A window of time, not of frames: frame times vary (a key frame's masks carried through the frames that came
    meanwhile, a busy CPU), and a figure over the last ten frames jumped with them, far from what the browser showed
    over a few seconds.

    Args:
        window_s (float, default 3.0): how many seconds of frame times to count.
    """

    def __init__(self, window_s: float = 3.0):
        if not window_s > 0:
            raise ValueError(f"window_s must be a positive number of seconds, got {window_s!r}")
        self.window_s = window_s
        self._times: deque[float] = deque()

    def tick(self, now: float) -> None:
        """Record one processed frame at time ``now`` (seconds, monotonic)."""
        self._times.append(now)
        while now - self._times[0] > self.window_s:
            self._times.popleft()

    def fps(self) -> float:
        """Frames per second over the window; 0.0 until two frames were seen."""
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


def thumbnail(image: Image.Image, side: int = 32) -> np.ndarray:
    """A ``side x side`` grey float thumbnail in [0, 1], for cheap scene comparison."""
    return np.asarray(image.convert("L").resize((side, side), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0


def scene_difference(before: np.ndarray | None, after: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails, 0 (same) to 1; 1.0 when there is no ``before``."""
    if before is None:
        return 1.0
    return float(np.abs(before - after).mean())


def scale_to_fit(image: Image.Image, max_side: int) -> Image.Image:
    """The image scaled down (never up) so that its longer side is at most ``max_side``."""
    if max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


@dataclass
class LiveFrame:
    """What one call of :meth:`LiveStream.process` returns.

    Attributes:
        image: the frame as processed (scaled to fit ``max_side``); for a dropped frame, the last processed one.
        result: ``{"instances": [...]}`` on that frame (a key frame's, or carried to it), or None.
        caption: the running caption ("" until the first one is ready).
        fps: processed frames per second.
        dropped: True when this frame was not processed (a newer one replaced it, or it was too old).
        frames_processed, frames_dropped: counts since the session started.
        caption_age_s: seconds since the caption's frame was taken (None before the first caption).
        segment_ms: milliseconds the last key frame took to segment.
        key_frames: key frames segmented so far; carried: frames since the outlines shown were segmented (0 on
            the key frame itself).
    """

    image: Image.Image | None
    result: dict[str, Any] | None
    caption: str
    fps: float
    dropped: bool
    frames_processed: int
    frames_dropped: int
    caption_age_s: float | None
    segment_ms: float = 0.0
    key_frames: int = 0
    carried: int = 0

    def summary(self) -> dict[str, Any]:
        """Plain numbers for an API answer or a status line."""
        return {
            "fps": round(self.fps, 2),
            "dropped": self.dropped,
            "frames_processed": self.frames_processed,
            "frames_dropped": self.frames_dropped,
            "caption_age_s": None if self.caption_age_s is None else round(self.caption_age_s, 2),
            "segment_ms": round(self.segment_ms, 1),
            "key_frames": self.key_frames,
            "carried": self.carried,
        }


class LiveStream:
    """One live session: drops stale frames, outlines the rest, keeps a caption running, measures frames/s.

    Args:
        segmenter (Callable[[PIL.Image.Image], dict]): called as ``segmenter(image, threshold=..., subtask=
            "instance")``; usually a :class:`SegmentationPipeline`; for speed give it
            ``pipeline.speed.segmenter_view(segmenter, live_profile())``.
        captioner (Callable[[PIL.Image.Image], dict] | None, default None): returns ``{"caption": str}``; None for
            no caption.
        threshold (float, default 0.5): segmenter score threshold.
        max_side (int, default 480): frames are scaled to this longer side first.
        caption_every_s (float, default 2.0): refresh the caption at least this often while frames come
            (space/benchmark/README.md has the caption ages measured at this cadence).
        scene_change (float, default 0.12): refresh it at once when the scene differs this much (0 to 1).
        max_age_s (float, default 2.0): drop frames captured longer ago than this.
        clock (Callable[[], float], default time.monotonic): the time source (tests pass a fake one).
        executor (ThreadPoolExecutor | None, default None): where captions run; None makes a one-thread pool.
        caption_threads (int | None, default None): intra-op threads of that pool's thread (None: half of PyTorch's,
            at least 1), so the caption takes part of the cores and frames keep the rest (see
            :func:`pipeline.kernels.limit_intraop_threads`).
        first_caption_wait_s (float, default 15.0): the session's first frame waits up to this long for the first
            caption, so that a client's first answer has both (later frames never wait for a caption).
        workers (Executor | None, default None): where key frames are segmented (a server's few model threads);
            None makes a one-thread pool. Waiting, dropping and carrying stay in the calling thread.
        key_every_s (float, default 0.5): the least time between two key frames' starts (see
            :class:`~pipeline.tracking.KeyFrames`).
        carry (bool, default True): carry masks between key frames; False segments every frame, in ``workers``.

    The caption's age counts from when its frame was taken (``captured_at``), not from when it was captioned.
    """

    def __init__(
        self,
        segmenter: Callable[..., dict[str, Any]],
        captioner: Callable[..., dict[str, Any]] | None = None,
        *,
        threshold: float = 0.5,
        max_side: int = LIVE_MAX_SIDE,
        caption_every_s: float = 2.0,
        scene_change: float = 0.12,
        max_age_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        executor: ThreadPoolExecutor | None = None,
        caption_threads: int | None = None,
        first_caption_wait_s: float = 15.0,
        workers: Executor | None = None,
        key_every_s: float = 0.5,
        carry: bool = True,
    ):
        self.segmenter = segmenter
        self.captioner = captioner
        self.threshold = threshold
        self.max_side = max_side
        self.caption_every_s = caption_every_s
        self.scene_change = scene_change
        self.max_age_s = max_age_s
        self.clock = clock
        self._executor = executor
        self._own_executor = executor is None
        self.caption_threads = caption_threads or max(1, torch.get_num_threads() // 2)
        self.first_caption_wait_s = first_caption_wait_s
        self.keys = KeyFrames(
            segmenter, every_s=key_every_s, scene_change=scene_change, workers=workers, clock=clock, carry=carry
        )
        self._meter = FpsMeter()
        self._lock = threading.Lock()  # guards the fields below
        self._busy = False
        self._pending: int | None = None  # ticket of the one frame waiting while another is processed
        self._ticket = 0
        self._wake = threading.Condition(self._lock)
        self._last: LiveFrame | None = None
        self._caption = ""
        self._caption_taken_at: float | None = None
        self._caption_thumb: np.ndarray | None = None
        self._caption_job: Future | None = None
        self.frames_processed = 0
        self.frames_dropped = 0
        self.last_used = clock()
        self.settings: Any = None  # what a server made it with (model names), to tell when they change

    def process(self, frame: ImageInput, *, captured_at: float | None = None) -> LiveFrame:
        """Process one frame, or drop it if it is stale; see the module docstring.

        Args:
            frame (ImageInput): the webcam frame (PIL image, array, bytes or path).
            captured_at (float | None, default None): when it was taken, on ``clock``'s scale; None is now.

        Returns:
            LiveFrame
        """
        now = self.clock()
        self.last_used = now
        if captured_at is not None and now - captured_at > self.max_age_s:
            return self._dropped()
        with self._lock:
            self._ticket += 1
            ticket = self._ticket
            if self._busy or self._pending is not None:
                self._pending = ticket  # replaces (and so drops) any frame already waiting
                self._wake.notify_all()
                while self._busy and self._pending == ticket:
                    self._wake.wait()
                if self._pending != ticket:
                    self.frames_dropped += 1
                    return self._snapshot(dropped=True)
                self._pending = None
            self._busy = True
        try:
            return self._run(frame, now if captured_at is None else captured_at)
        finally:
            with self._lock:
                self._busy = False
                self._wake.notify_all()

    @property
    def latest(self) -> LiveFrame | None:
        """The last frame processed (its picture, as processed, and its objects), kept in memory only, so that a
        question about what the camera shows is answered about it; None before the first."""
        with self._lock:
            return self._last

    def use(self, segmenter: Callable[..., dict[str, Any]], captioner: Callable[..., dict[str, Any]] | None) -> None:
        """Go on with other models: the next frame starts a key frame with ``segmenter`` (the outlines shown are
        carried until it is done), and a caption with ``captioner``; frames/s and the counts go on."""
        with self._lock:
            if segmenter is not self.segmenter:
                self.segmenter = segmenter
                self.keys.use(segmenter)
            if captioner is not self.captioner:
                self.captioner = captioner
                self._caption_thumb = None  # a new caption at the next frame, as on a scene change

    def _run(self, frame: ImageInput, taken_at: float) -> LiveFrame:
        start = self.clock()
        image = scale_to_fit(load_image(frame), self.max_side)
        self._maybe_caption(image, taken_at)  # first, so that a refresh overlaps this frame's segmentation
        result = {"instances": self.keys.frame(image, self.threshold)}
        if self._caption_taken_at is None and self._caption_job is not None:
            self._wait_for_first_caption()
        self._collect_if_done()
        now = self.clock()
        with self._lock:
            if self.frames_processed == 0 and now > start:
                self._meter.tick(start)  # the first frame's own time gives the first frames/s
            self._meter.tick(now)
            self.frames_processed += 1
            self._last = LiveFrame(
                image=image,
                result=result,
                caption=self._caption,
                fps=self._meter.fps(),
                dropped=False,
                frames_processed=self.frames_processed,
                frames_dropped=self.frames_dropped,
                caption_age_s=self._caption_age(now),
                segment_ms=self.keys.key_ms,
                key_frames=self.keys.key_frames,
                carried=self.keys.carried,
            )
            return self._last

    def _maybe_caption(self, image: Image.Image, taken_at: float) -> None:
        if self.captioner is None or self._collect_if_done():
            return  # one caption at a time; frames do not wait for it
        thumb = thumbnail(image)
        now = self.clock()
        due = self._caption_taken_at is None or now - self._caption_taken_at >= self.caption_every_s
        changed = scene_difference(self._caption_thumb, thumb) >= self.scene_change
        if not (due or changed):
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix="live-caption",
                initializer=limit_intraop_threads,
                initargs=(self.caption_threads,),
            )
        self._caption_thumb = thumb
        self._caption_job = self._executor.submit(self._caption_one, image, taken_at)

    def _caption_one(self, image: Image.Image, taken_at: float) -> tuple[str, float]:
        return self.captioner(image)["caption"], taken_at

    def _collect_if_done(self) -> bool:
        """Take in a finished caption; True while one is still being computed."""
        job = self._caption_job
        if job is None:
            return False
        if not job.done():
            return True
        self._collect(job)
        return False

    def _caption_age(self, now: float) -> float | None:
        return None if self._caption_taken_at is None else now - self._caption_taken_at

    def _collect(self, job: Future) -> None:
        self._caption_job = None
        try:
            caption, taken_at = job.result()
        except Exception as error:  # a failed caption must not stop the picture; say so in its place
            caption, taken_at = f"(caption failed: {error})", self.clock()
        with self._lock:
            self._caption, self._caption_taken_at = caption, taken_at

    def _wait_for_first_caption(self) -> None:
        job = self._caption_job
        try:
            job.result(timeout=self.first_caption_wait_s)
        except Exception:  # a timeout, or a failed caption that _collect reports in the caption's place
            pass
        if job.done():
            self._collect(job)

    def wait_for_caption(self, timeout: float = 30.0) -> str:
        """Block until the caption being computed (if any) is ready, then return the running caption."""
        job = self._caption_job
        if job is not None:
            job.result(timeout=timeout)
            self._collect(job)
        return self._caption

    def _dropped(self) -> LiveFrame:
        with self._lock:
            self.frames_dropped += 1
            return self._snapshot(dropped=True)

    def _snapshot(self, *, dropped: bool) -> LiveFrame:
        last = self._last
        now = self.clock()
        return LiveFrame(
            image=last.image if last else None,
            result=last.result if last else None,
            caption=self._caption,
            fps=self._meter.fps(),
            dropped=dropped,
            frames_processed=self.frames_processed,
            frames_dropped=self.frames_dropped,
            caption_age_s=self._caption_age(now),
            segment_ms=self.keys.key_ms,
            key_frames=self.keys.key_frames,
            carried=last.carried if last else 0,
        )

    def close(self) -> None:
        """Stop the caption and key-frame threads if this session made them."""
        self.keys.close()
        if self._own_executor and self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
