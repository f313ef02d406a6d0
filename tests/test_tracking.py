"""pipeline.tracking: key frames segmented in the background, masks carried between them by optical flow; and the
moving-shapes video (train.moving_shapes) that measures it."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

from pipeline.catalog import load_segmenter
from pipeline.masks import MaskCrop, crop_of
from pipeline.stream import LiveStream
from pipeline.tracking import KeyFrames, MaskCarrier, carry_instances
from train.moving_shapes import frame_ious, mask_iou, mean_iou, moving_sequence

SIZE = (160, 120)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def square_at(x: int, y: int = 40, side: int = 30, grey: int = 90) -> Image.Image:
    """A flat background with a bright, speckled square at (x, y) (its speckles move with it)."""
    pixels = np.full((SIZE[1], SIZE[0], 3), grey, np.uint8)
    speckles = np.random.default_rng(7).integers(0, 50, (side, side), np.uint8)
    pixels[y : y + side, x : x + side] = np.stack([205 + speckles, 60 + speckles, 60 + speckles], axis=-1)
    return Image.fromarray(pixels)


def square_mask(x: int, y: int = 40, side: int = 30) -> np.ndarray:
    mask = np.zeros((SIZE[1], SIZE[0]), bool)
    mask[y : y + side, x : x + side] = True
    return mask


class SquareFinder:
    """A segmenter that finds the bright square exactly; it can be held until released, and counts its calls."""

    def __init__(self, gate: threading.Event | None = None):
        self.gate, self.calls, self.thresholds = gate, 0, []

    def __call__(self, image: Image.Image, threshold: float = 0.5, subtask: str | None = None) -> dict:
        assert subtask == "instance"  # the live view asks only for what it shows
        self.calls += 1
        self.thresholds.append(threshold)
        if self.gate is not None:
            assert self.gate.wait(10)
        red = np.asarray(image)[..., 0] > 200
        mask = Image.fromarray(red)
        found = [{"label": "square", "label_id": 1, "score": 0.9, "box": [0, 0, 1, 1], "mask": mask}]
        found.append({"label": "faint", "label_id": 2, "score": 0.4, "box": [0, 0, 1, 1], "mask": mask})
        return {"instances": [each for each in found if each["score"] >= threshold]}


def test_a_carried_mask_follows_the_motion():
    carrier = MaskCarrier(flow_side=160)
    before, after = square_at(40), square_at(46)
    flow = carrier.flow(carrier.grey(before), carrier.grey(after), SIZE)
    moved = carrier.carry(crop_of(square_mask(40)), flow)
    assert mask_iou(moved.full(), square_mask(46)) > 0.8
    # Gone out of the picture: an empty crop; carried instances that vanish are dropped.
    left = np.zeros((SIZE[1], SIZE[0], 2), np.float32)
    left[..., 0] = 500.0  # every pixel came from far outside
    assert carrier.carry(crop_of(square_mask(40)), left).area == 0
    instance = {"label": "square", "score": 0.9, "mask": square_mask(40), "box": [40, 40, 70, 70]}
    assert carry_instances(carrier, [instance], left) == []
    (kept,) = carry_instances(carrier, [instance], flow)
    assert isinstance(kept["mask"], MaskCrop) and kept["area"] == kept["mask"].area
    assert kept["box"][0] == pytest.approx(46, abs=2)
    with pytest.raises(ValueError, match="flow_side"):
        MaskCarrier(flow_side=4)


def test_key_frames_in_the_background_and_their_late_masks_land_where_the_object_is_now():
    clock, gate = FakeClock(), threading.Event()
    finder = SquareFinder(gate)
    keys = KeyFrames(finder, every_s=1.0, clock=clock)
    gate.set()
    first = keys.frame(square_at(20), 0.5)  # the first frame waits for its own key frame
    assert keys.key_frames == 1 and mask_iou(first[0]["mask"].full(), square_mask(20)) > 0.95
    clock.now = 0.5
    carried = keys.frame(square_at(24), 0.5)  # not due: carried, no new key frame
    assert finder.calls == 1 and keys.carried == 1
    assert mask_iou(carried[0]["mask"].full(), square_mask(24)) > 0.8
    gate.clear()
    clock.now = 1.2  # due: a key frame starts on this frame (x = 28) and is held while three more frames come
    keys.frame(square_at(28), 0.5)
    for _ in range(500):  # the key frame's thread picks it up
        if finder.calls == 2:
            break
        time.sleep(0.01)
    for x in (32, 36, 40):
        shown = keys.frame(square_at(x), 0.5)
        assert finder.calls == 2 and keys.key_frames == 1  # answered at once, with the old key frame's masks
    assert mask_iou(shown[0]["mask"].full(), square_mask(40)) > 0.7
    gate.set()
    for _ in range(200):  # the key frame finishes in its thread
        if keys._job.done():
            break
        time.sleep(0.01)
    arrived = keys.frame(square_at(44), 0.5)
    assert keys.key_frames == 2 and keys.carried == 4  # found on x = 28, carried through 32, 36, 40, 44
    assert mask_iou(arrived[0]["mask"].full(), square_mask(44)) > 0.8
    keys.close()


def test_a_scene_change_or_a_lower_threshold_starts_a_key_frame_at_once_and_a_higher_one_applies_at_once():
    clock, finder = FakeClock(), SquareFinder()
    keys = KeyFrames(finder, every_s=100.0, scene_change=0.12, clock=clock)
    assert [each["label"] for each in keys.frame(square_at(20), 0.3)] == ["square", "faint"]
    assert finder.calls == 1
    assert [each["label"] for each in keys.frame(square_at(22), 0.5)] == ["square"]  # filtered, no key frame
    assert finder.calls == 1
    keys.frame(square_at(24), 0.2)  # a lower threshold: a key frame finds the fainter ones
    keys._job.result(timeout=10)
    assert finder.calls == 2 and finder.thresholds[-1] == 0.2
    keys.frame(square_at(26), 0.2)
    assert keys._job is None  # nothing due
    keys.frame(square_at(28, grey=200), 0.2)  # the scene changes (the background turns much lighter)
    keys._job.result(timeout=10)
    assert finder.calls == 3
    keys.close()


def test_segmenting_every_frame_is_there_for_comparison():
    finder = SquareFinder()
    stream = LiveStream(finder, carry=False)
    for x in (10, 20, 30):
        shown = stream.process(square_at(x))
    assert finder.calls == 3 and shown.key_frames == 3 and shown.carried == 0
    assert mask_iou(shown.result["instances"][0]["mask"].full(), square_mask(30)) > 0.95
    stream.close()


def test_the_stream_takes_other_models_without_starting_again():
    first, second = SquareFinder(), SquareFinder()
    captions = []
    stream = LiveStream(first, lambda image: captions.append("a") or {"caption": "a"}, key_every_s=100.0)
    stream.process(square_at(10))
    stream.wait_for_caption()
    stream.use(second, lambda image: captions.append("b") or {"caption": "b"})
    stream.process(square_at(12))
    stream.keys._job.result(timeout=10)
    assert stream.wait_for_caption() == "b" and captions == ["a", "b"]
    shown = stream.process(square_at(14))
    assert second.calls == 1 and shown.key_frames == 2 and shown.frames_processed == 3
    stream.close()


def test_the_moving_shapes_video_has_true_masks_and_edges_left_unscored():
    video = moving_sequence(np.random.default_rng(3), frames=60, size=(160, 120), shapes=3)
    assert len(video.frames) == len(video.masks) == 60 and len(video.labels) == 3
    assert video.masks[0][0] is None  # the first shape is still coming in from the left
    assert any(frame[0] is not None for frame in video.masks)
    truth = [mask for mask in video.masks[30] if mask is not None]
    assert frame_ious(video.masks[30], truth) == [1.0] * len(truth)
    assert frame_ious(video.masks[30], []) == [0.0] * len(truth)
    assert mean_iou([]) == 0.0
    with pytest.raises(ValueError, match="shapes must be"):
        moving_sequence(np.random.default_rng(0), shapes=9)


def test_outlines_on_moving_shapes_keep_a_mean_iou_of_at_least_0_85_in_real_time():
    """The live view's outlines on a camera at 30 frames/s, shown as they come (the newest frame wins), scored
    against the true masks of the frame each was shown on; the shapes segmenter makes the key frames."""
    segmenter = load_segmenter("shapes", device="cpu")
    video = moving_sequence(np.random.default_rng(0), frames=120, size=(320, 240))
    live = LiveStream(segmenter, threshold=0.5, max_age_s=3600.0)
    scores, shown, start = [], 0, time.perf_counter()
    while (index := int((time.perf_counter() - start) * video.fps)) < len(video.frames):
        answer = live.process(video.frames[index])
        scores += frame_ious(video.masks[index], [each["mask"].full() for each in answer.result["instances"]])
        shown += 1
        time.sleep(0.02)  # a browser's pace, not a busy loop
    live.close()
    assert shown >= 30 and answer.key_frames >= 3
    assert mean_iou(scores) >= 0.85, f"mean IoU {mean_iou(scores):.3f} over {shown} frames"


def test_another_camera_size_starts_over_with_a_key_frame_of_its_own():
    finder = SquareFinder()
    keys = KeyFrames(finder, every_s=100.0)
    keys.frame(square_at(20), 0.5)
    wide = Image.new("RGB", (200, 120), (90, 90, 90))
    wide.paste(square_at(40), (0, 0))
    shown = keys.frame(wide, 0.5)  # the first frame of the new size waits for its own key frame
    assert finder.calls == 2 and shown and shown[0]["mask"].width == 200
    keys.close()
