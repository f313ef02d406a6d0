"""Tests of pipeline.stream: latest frame wins, stale frames dropped, caption cadence, frames/s, flat memory."""

from __future__ import annotations

import threading
import time
import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.catalog import load_segmenter
from pipeline.kernels import limit_intraop_threads
from pipeline.speed import SpeedProfile, segmenter_view
from pipeline.stream import FpsMeter, LiveStream, scale_to_fit


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def frame(value: int, size=(64, 48)) -> Image.Image:
    return Image.new("RGB", size, (value, value, value))


class RecordingSegmenter:
    """Records the grey level of each frame it sees; optionally blocks until released."""

    def __init__(self, gate: threading.Event | None = None):
        self.seen: list[int] = []
        self.gate = gate
        self.started = threading.Event()

    def __call__(self, image: Image.Image, threshold: float = 0.5, **options) -> dict:
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        self.seen.append(image.getpixel((0, 0))[0])
        return {"instances": []}


def test_fps_meter_counts_the_last_seconds():
    meter = FpsMeter(window_s=1.0)
    assert meter.fps() == 0.0
    for now in (0.0, 0.1, 0.2, 0.3):  # a burst, then a steady 4 a second
        meter.tick(now)
    for now in (1.0, 1.25, 1.5, 1.75, 2.0):
        meter.tick(now)
    assert meter.fps() == pytest.approx(4.0)
    assert len(meter._times) == 5  # older times are let go
    with pytest.raises(ValueError, match="window_s must be a positive"):
        FpsMeter(window_s=0)


def test_latest_frame_wins_and_the_replaced_one_is_dropped():
    gate = threading.Event()
    segmenter = RecordingSegmenter(gate)
    stream = LiveStream(segmenter)
    answers: dict[int, object] = {}

    def send(value: int) -> None:
        answers[value] = stream.process(frame(value))

    first = threading.Thread(target=send, args=(10,))
    first.start()
    assert segmenter.started.wait(5)
    second = threading.Thread(target=send, args=(20,))
    second.start()
    time.sleep(0.2)  # the second frame is now waiting
    third = threading.Thread(target=send, args=(30,))
    third.start()
    second.join(5)
    assert not second.is_alive(), "a replaced frame must be answered at once, not queued"
    gate.set()
    first.join(5)
    third.join(5)
    assert segmenter.seen == [10]  # the first frame is the key frame; the third is answered with its masks
    assert answers[20].dropped and not answers[10].dropped and not answers[30].dropped
    assert stream.frames_processed == 2 and stream.frames_dropped == 1


def test_stale_frames_are_dropped_by_capture_time():
    clock = FakeClock()
    segmenter = RecordingSegmenter()
    stream = LiveStream(segmenter, max_age_s=1.0, clock=clock)
    clock.now = 10.0
    assert not stream.process(frame(1), captured_at=9.5).dropped
    answer = stream.process(frame(2), captured_at=8.0)
    assert answer.dropped and answer.image is not None  # the last processed frame comes back
    assert segmenter.seen == [1]


def test_caption_refreshes_on_cadence_and_on_scene_change():
    clock = FakeClock()
    calls: list[int] = []

    def captioner(image: Image.Image) -> dict:
        calls.append(image.getpixel((0, 0))[0])
        return {"caption": f"grey {image.getpixel((0, 0))[0]}"}

    stream = LiveStream(RecordingSegmenter(), captioner, caption_every_s=4.0, scene_change=0.1, clock=clock)
    for now in (0.0, 1.0, 2.0):
        clock.now = now
        stream.process(frame(100))
        stream.wait_for_caption()
    assert calls == [100]
    assert stream.process(frame(100)).caption == "grey 100"
    clock.now = 4.5  # cadence due, same scene
    stream.process(frame(100))
    stream.wait_for_caption()
    clock.now = 5.0  # the scene changes (mean difference 100/255 > 0.1)
    stream.process(frame(200))
    stream.wait_for_caption()
    assert calls == [100, 100, 200]
    assert stream.process(frame(200)).caption == "grey 200"
    stream.close()


def test_the_first_frame_comes_back_with_the_first_caption_and_a_frame_rate():
    def captioner(image: Image.Image) -> dict:
        time.sleep(0.3)  # slower than the frame's segmentation
        return {"caption": "the first caption"}

    stream = LiveStream(RecordingSegmenter(), captioner)
    first = stream.process(frame(100))
    assert first.caption == "the first caption" and first.caption_age_s is not None
    assert 0 < first.fps < 1 / 0.3  # one frame over its own time, the caption's wait included
    stream.close()
    patient = LiveStream(RecordingSegmenter(), captioner, first_caption_wait_s=0.0)
    assert patient.process(frame(100)).caption == ""  # no wait asked for: the caption follows with a later frame
    patient.close()


def test_caption_age_counts_from_when_the_frame_was_taken():
    clock = FakeClock()
    stream = LiveStream(RecordingSegmenter(), lambda image: {"caption": "a frame"}, max_age_s=10.0, clock=clock)
    clock.now = 10.0
    stream.process(frame(100), captured_at=9.0)  # taken a second before it reached the stream
    stream.wait_for_caption()
    clock.now = 10.5
    assert stream.process(frame(100), captured_at=10.4).caption_age_s == pytest.approx(1.5)
    stream.close()


def test_caption_thread_gets_its_own_intraop_thread_count():
    seen: list[int] = []

    def captioner(image: Image.Image) -> dict:
        seen.append(torch.get_num_threads())
        return {"caption": "a frame"}

    before = torch.get_num_threads()
    stream = LiveStream(RecordingSegmenter(), captioner, caption_threads=1)
    stream.process(frame(100))
    stream.wait_for_caption()
    stream.close()
    assert seen == [1]
    assert torch.get_num_threads() == before  # this thread keeps its count
    fresh: list[int] = []
    worker = threading.Thread(target=lambda: fresh.append(torch.get_num_threads()))
    worker.start()
    worker.join()
    assert fresh == [before]  # and so do threads started afterwards
    with pytest.raises(ValueError, match="at least 1"):
        limit_intraop_threads(0)


def test_frames_are_scaled_and_fps_is_reported():
    clock = FakeClock()
    stream = LiveStream(RecordingSegmenter(), max_side=32, clock=clock)
    answers = []
    for index in range(5):
        clock.now = index * 0.5
        answers.append(stream.process(frame(50, size=(640, 480))))
    assert answers[-1].image.size == (32, 24)
    assert answers[-1].fps == pytest.approx(2.0)
    assert answers[-1].summary()["frames_processed"] == 5
    assert scale_to_fit(frame(1, (10, 8)), 32).size == (10, 8)


def test_live_segmenter_view_shares_weights(tiny_segmenter_dir, shapes_image):
    segmenter = load_segmenter(tiny_segmenter_dir, device="cpu", model_kwargs={"min_size": 400, "max_size": 600})
    small = SpeedProfile("small", "test", segmenter={"min_size": 96, "max_size": 160})
    fast = segmenter_view(segmenter, small)
    assert fast is not segmenter
    assert fast.model.transform.min_size == (96,)
    assert segmenter.model.transform.min_size == (400,)
    for ours, theirs in zip(fast.model.parameters(), segmenter.model.parameters()):
        assert ours is theirs
    found = fast(shapes_image, threshold=0.0)["instances"]
    assert found and all(instance["mask"].size == shapes_image.size for instance in found)
    larger = segmenter_view(fast, SpeedProfile("larger", "test", segmenter={"min_size": 200}))
    assert larger.model.transform.min_size == (96,)  # a profile only caps, never enlarges


def test_memory_stays_flat_over_many_frames():
    rng = np.random.default_rng(0)

    def segmenter(image: Image.Image, threshold: float = 0.5, **options) -> dict:
        mask = Image.fromarray((rng.random((image.height, image.width)) > 0.5).astype(np.uint8) * 255, mode="L")
        return {"instances": [{"label": "x", "label_id": 1, "score": 0.9, "box": [0, 0, 1, 1], "mask": mask}]}

    clock = FakeClock()
    stream = LiveStream(segmenter, lambda image: {"caption": "a frame"}, caption_every_s=0.0, clock=clock)
    frames = [Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)) for _ in range(4)]
    for index in range(30):  # warm up caches and the caption thread
        clock.now = index * 0.1
        stream.process(frames[index % 4])
    stream.wait_for_caption()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for index in range(30, 330):
        clock.now = index * 0.1
        stream.process(frames[index % 4])
    stream.wait_for_caption()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    stream.close()
    assert stream.frames_processed == 330
    assert after - before < 512 * 1024, f"memory grew by {(after - before) / 1024:.0f} KiB over 300 frames"
