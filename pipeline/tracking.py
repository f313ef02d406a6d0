"""Key frames and carried masks: a live view segments some frames and moves their outlines to the frames between.

Mask R-CNN takes most of a second per frame on two CPU cores; a webcam sends ten or more frames a second. So
:class:`KeyFrames` segments a *key frame* in the background while the frames that arrive meanwhile are answered at
once with the last key frame's instances *carried* to them by dense optical flow (OpenCV's DIS, a few milliseconds
at the flow's size):

- each frame's flow back to the frame before it says, for every pixel, where that pixel was one frame earlier, and
  every mask is moved with it (:meth:`MaskCarrier.carry`, only over the mask's own window and a margin);
- a key frame's answer arrives late: the flows of the frames that came in while it was segmented are composed onto
  its masks in order, so that its outlines land where the objects are *now*, not where they were;
- a new key frame starts when the last one is done and ``every_s`` has passed, at once when the scene changed
  (grey thumbnails differ by ``scene_change``) or the settings did (a new threshold), and the first frame waits for
  its own.

>>> import numpy as np
>>> carrier = MaskCarrier(flow_side=64)
>>> before = np.zeros((48, 64), np.uint8); before[10:20, 10:20] = 200
>>> after = np.roll(before, 4, axis=1)  # everything moved 4 pixels to the right
>>> flow = carrier.flow(carrier.grey(before), carrier.grey(after), (64, 48))
>>> crop = MaskCrop(np.ones((10, 10), bool), left=10, top=10, height=48, width=64)
>>> moved = carrier.carry(crop, flow)
>>> moved.left, moved.top, moved.array.shape
(14, 10, (10, 10))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
from PIL import Image

from .masks import MaskCrop, crop_of

#: Flows are computed on frames scaled to this longer side (DIS's cost grows with the pixels; outlines need less).
FLOW_SIDE = 240
#: Keep at most this many frames' flows while a key frame is segmented; a slower key frame is given up.
MAX_PENDING_FLOWS = 120


class MaskCarrier:
    """Moves instance masks from one frame to the next with dense optical flow (DIS, OpenCV).

    Args:
        flow_side (int, default 240): the longer side of the grey frames the flow is computed on.
        preset (int, default ``cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST``): DIS's speed and quality preset.
    """

    def __init__(self, flow_side: int = FLOW_SIDE, preset: int = cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST):
        if flow_side < 16:
            raise ValueError(f"flow_side must be at least 16 pixels, got {flow_side!r}")
        self.flow_side = flow_side
        self._dis = cv2.DISOpticalFlow_create(preset)

    def grey(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """The frame as a uint8 grey array whose longer side is at most ``flow_side``."""
        pixels = np.asarray(image.convert("L") if isinstance(image, Image.Image) else image)
        if pixels.ndim == 3:
            pixels = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)
        height, width = pixels.shape
        scale = min(1.0, self.flow_side / max(height, width))
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(pixels, dtype=np.uint8)

    def flow(self, before: np.ndarray, after: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Where each pixel of ``after`` was in ``before``: float32[H, W, 2] (dx, dy) at ``size`` (width, height),
        the frames' full size, for the masks found there."""
        if before.shape != after.shape:  # the camera changed size: nothing carries over
            return np.zeros((size[1], size[0], 2), np.float32)
        back = self._dis.calc(after, before, None)
        height, width = after.shape
        if (width, height) != tuple(size):
            back = cv2.resize(back, tuple(size), interpolation=cv2.INTER_LINEAR)
            back[..., 0] *= size[0] / width
            back[..., 1] *= size[1] / height
        return back

    def carry(self, crop: MaskCrop, flow: np.ndarray) -> MaskCrop:
        """The mask moved by one frame's ``flow`` (from :meth:`flow`); an empty crop when it left the picture."""
        height, width = flow.shape[:2]
        if crop.array.size == 0 or (crop.height, crop.width) != (height, width):
            return MaskCrop(np.zeros((0, 0), bool), 0, 0, height, width)
        rows, cols = crop.window
        reach = float(np.abs(flow[rows, cols]).max()) + 2.0  # how far the mask's pixels moved, and a margin
        top, left = max(0, int(crop.top - reach)), max(0, int(crop.left - reach))
        bottom = min(height, int(crop.top + crop.array.shape[0] + reach) + 1)
        right = min(width, int(crop.left + crop.array.shape[1] + reach) + 1)
        ys, xs = np.mgrid[top:bottom, left:right].astype(np.float32)
        window = flow[top:bottom, left:right]
        map_x = xs + window[..., 0] - crop.left  # in the old crop's own coordinates
        map_y = ys + window[..., 1] - crop.top
        moved = cv2.remap(crop.array.astype(np.uint8) * 255, map_x, map_y, cv2.INTER_LINEAR, borderValue=0) > 127
        found = crop_of(moved)
        if found.array.size == 0:
            return MaskCrop(np.zeros((0, 0), bool), 0, 0, height, width)
        return MaskCrop(found.array, left + found.left, top + found.top, height, width)


def carry_instances(carrier: MaskCarrier, instances: list[dict[str, Any]], flow: np.ndarray) -> list[dict]:
    """Each instance moved by ``flow``: its mask carried, its box and area measured again; one that left the
    picture is dropped."""
    moved = []
    for instance in instances:
        crop = carrier.carry(crop_of(instance["mask"]), flow)
        if crop.area == 0:
            continue
        rows, cols = crop.array.shape
        box = [float(crop.left), float(crop.top), float(crop.left + cols), float(crop.top + rows)]
        moved.append({**instance, "mask": crop, "box": box, "area": crop.area})
    return moved


class KeyFrames:
    """One live session's instances on every frame: key frames segmented in the background, masks carried between.

    Args:
        segmenter (Callable[..., dict]): called as ``segmenter(image, threshold=..., subtask="instance")``.
        every_s (float, default 0.5): the least time between the starts of two key frames (a key frame also
            waits for the one before it).
        scene_change (float, default 0.12): start one at once when the frame's grey thumbnail differs this much
            (0 to 1) from the last key frame's.
        workers (Executor | None, default None): where key frames are segmented; None makes a one-thread pool.
        clock (Callable[[], float], default time.monotonic): the time source.
        carrier (MaskCarrier | None, default None): the flow; None makes one.
        carry (bool, default True): False segments every frame in the calling thread (no flow), for comparison.
    """

    def __init__(
        self,
        segmenter: Callable[..., dict[str, Any]],
        *,
        every_s: float = 0.5,
        scene_change: float = 0.12,
        workers: Executor | None = None,
        clock: Callable[[], float] = time.monotonic,
        carrier: MaskCarrier | None = None,
        carry: bool = True,
    ):
        self.segmenter, self.every_s, self.scene_change, self.clock = segmenter, every_s, scene_change, clock
        self.carrier = carrier or MaskCarrier()
        self.carry = carry
        self._workers, self._own_workers = workers, workers is None
        self._grey: np.ndarray | None = None
        self._shown: list[dict[str, Any]] | None = None  # the instances on the last frame
        self._job: Future | None = None
        self._pending: list[np.ndarray] = []  # flows of the frames since the running key frame's
        self._key_started: float | None = None
        self._key_thumb: np.ndarray | None = None
        self._key_threshold: float | None = None
        self.key_frames = 0
        self.key_ms = 0.0  # what the last key frame took to segment
        self.carried = 0  # frames since the instances shown were segmented

    def frame(self, image: Image.Image, threshold: float) -> list[dict[str, Any]]:
        """This frame's instances (masks as :class:`~pipeline.masks.MaskCrop` at the frame's size)."""
        if not self.carry:
            if self._workers is None:
                self._shown = self._timed(image, threshold)
            else:
                self._shown = self._workers.submit(self._timed, image, threshold).result()
            self.key_frames, self.carried = self.key_frames + 1, 0
            return self._shown
        grey = self.carrier.grey(image)
        if self._grey is not None and self._grey.shape != grey.shape:  # another camera: nothing carries over
            self._grey, self._shown, self._job, self._pending, self._key_started = None, None, None, [], None
        flow = None if self._grey is None else self.carrier.flow(self._grey, grey, image.size)
        self._grey = grey
        if flow is not None:
            if self._shown is not None:
                self._shown = carry_instances(self.carrier, self._shown, flow)
                self.carried += 1
            if self._job is not None:
                self._pending.append(flow)
        if self._job is not None and len(self._pending) > MAX_PENDING_FLOWS:
            self._job, self._pending = None, []  # too late to carry: the next key frame replaces it
        if self._job is not None and (self._job.done() or self._shown is None):
            self._arrive()
        if self._job is None and self._due(grey, threshold):
            self._start(image, grey, threshold)
            if self._shown is None:  # the first frame waits for its own instances
                self._arrive()
        shown = self._shown or []
        return [each for each in shown if each["score"] >= threshold]  # a higher threshold applies at once

    def use(self, segmenter: Callable[..., dict[str, Any]]) -> None:
        """Segment the next key frames with ``segmenter``; one starts at the next frame, and a key frame of the old
        one still running is not shown."""
        self.segmenter = segmenter
        self._job, self._pending, self._key_started = None, [], None

    def _due(self, grey: np.ndarray, threshold: float) -> bool:
        if self._key_started is None or threshold < self._key_threshold:  # a higher one filters at once
            return True
        thumb = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        changed = float(np.abs(thumb - self._key_thumb).mean()) >= self.scene_change
        return changed or self.clock() - self._key_started >= self.every_s

    def _start(self, image: Image.Image, grey: np.ndarray, threshold: float) -> None:
        if self._workers is None:
            self._workers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-key")
        self._key_started, self._key_threshold = self.clock(), threshold
        self._key_thumb = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        self._pending = []
        self._job = self._workers.submit(self._timed, image, threshold)

    def _timed(self, image: Image.Image, threshold: float) -> list[dict[str, Any]]:
        tick = time.perf_counter()
        found = self._segment(image, threshold)
        self.key_ms = (time.perf_counter() - tick) * 1000.0
        return found

    def _segment(self, image: Image.Image, threshold: float) -> list[dict[str, Any]]:
        instances = self.segmenter(image, threshold=threshold, subtask="instance")["instances"]
        return [{**each, "mask": crop_of(each["mask"], image.size)} for each in instances]

    def _arrive(self) -> None:
        """Take in the finished key frame, its masks carried through the frames that came since."""
        job, flows = self._job, self._pending
        self._job, self._pending = None, []
        found = job.result()  # a failed key frame raises here, in the frame's request, and the next one retries
        for flow in flows:
            found = carry_instances(self.carrier, found, flow)
        self._shown, self.carried = found, len(flows)
        self.key_frames += 1

    def close(self) -> None:
        """Stop this session's own key-frame thread, if it made one."""
        if self._own_workers and self._workers is not None:
            self._workers.shutdown(wait=False, cancel_futures=True)
            self._workers = None
