"""The live tab's and ``/live_frame``'s work, gradio-free: one :class:`~pipeline.stream.LiveStream` per client
session, kept in a bounded registry, its frames answered with their outlines (SVG for the page, an annotated picture
and COCO RLE masks for ``/live_frame``), the running caption and stats; nothing per frame is written to disk.

Sessions (one per browser tab or client) live in a :class:`SessionRegistry` with a size bound and an idle timeout,
so that memory stays flat however long the server runs.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from PIL import Image

from ..jsonform import encode_mask
from ..masks import MaskCrop, crop_of
from ..render import describe_objects, draw_instances
from ..speed import live_profile, segmenter_view
from ..stream import LIVE_MAX_SIDE, LiveStream, scale_to_fit
from .files import OutputFiles
from .intake import RequestError, checked_options, checked_question
from .models import ModelRunner, model_failures
from .overlay import outlines_svg
from .photo import answered

#: The live tab's figures (frames/s, counts, objects) are sent at most this often (s); the outlines every frame.
STATS_EVERY_S = 0.5
#: A session's caption is refreshed once its frame is this old (s), or at once on a scene change. Where a caption
#: takes longer (BLIP-base on 2 cores without native bfloat16: about 1.6 s) the next starts as the last ends; where
#: it is quicker, the caption thread rests between them.
CAPTION_EVERY_S = 1.5
#: ``/live_frame`` starts a session's next frame at least this long (s) after it processed the last: a call sooner
#: waits the rest first, doing nothing. A script calling in a tight loop on the server's own cores took the caption's
#: CPU (full-size models, 2 cores, native bfloat16: 13.6 calls/s with the caption 3.95 s old at p50; paced, 8.1 calls/s
#: and 2.74 s); the live tab is paced by the browser instead.
LIVE_FRAME_EVERY_S = 0.1


class LiveSessions:
    """Live streams by client session over one :class:`ModelRunner`.

    Args:
        models (ModelRunner): the menus, cache and threads (``live_threads`` segment, ``live_caption_thread``
            captions).
    """

    def __init__(self, models: ModelRunner, files: OutputFiles):
        self.models, self.files = models, files
        self.registry = SessionRegistry(self._stream, max_sessions=max(4, 2 * models.live_sessions))

    def _stream(self, settings: tuple[str, str]) -> LiveStream:
        stream = LiveStream(
            *self._models(settings),
            caption_every_s=CAPTION_EVERY_S,
            executor=self.models.live_caption_thread,
            workers=self.models.live_threads,
        )
        stream.settings = settings
        return stream

    def _models(self, settings: tuple[str, str]) -> tuple[Any, Any]:
        captioner, segmenter = settings
        model = self.models.model("segmenter", segmenter)
        live_segmenter = segmenter_view(model, live_profile(model.device))
        return live_segmenter, self.models.model("captioner", captioner)

    def _process(self, key: Any, frame: Any, captioner: Any, segmenter: Any, threshold: Any):
        """One frame through its session's stream -> (the session, its :class:`~pipeline.stream.LiveFrame`, the
        picture sent)."""
        menus = self.models.menus
        captioner, segmenter = menus.check("captioner", captioner), menus.check("segmenter", segmenter)
        threshold = checked_options({"threshold": threshold}, ("threshold",))["threshold"]
        picture = frame if isinstance(frame, Image.Image) else self.models.image(frame)
        session = self.registry.get(key, settings=(captioner, segmenter))
        if session.settings != (captioner, segmenter):  # other models: the stream goes on with them
            session.use(*self._models((captioner, segmenter)))
            session.settings = (captioner, segmenter)
        session.threshold = threshold  # the next frame uses it: the stream, its caption and frames/s go on
        with model_failures("frame"):
            return session, session.process(picture), picture

    def frame(
        self, key: Any, frame: Any, captioner: Any, segmenter: Any, threshold: Any
    ) -> tuple[str, str, dict[str, Any]]:
        """``/live_frame``: one frame of a session's stream -> (the annotated frame's path, the running caption,
        stats with the frame's ``instances`` at the size sent). The newest frame wins: one sent while another is
        processed replaces any waiting. Another threshold or other models apply to the next frame of the same
        stream; a session's next frame starts at least :data:`LIVE_FRAME_EVERY_S` after its last was processed. The
        annotated frame is a file of its own in the sessions' :class:`OutputFiles` ring (the service puts it in
        memory where it can, and the app serves it from there): Gradio's cache names a picture handed over as an
        image by its content and writes it again in place, so two clients sent the same frame would read it while
        it is rewritten."""
        known = self.registry.find(key)
        wait = getattr(known, "next_frame_at", 0.0) - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        session, shown, picture = self._process(key, frame, captioner, segmenter, threshold)
        session.next_frame_at = time.monotonic() + LIVE_FRAME_EVERY_S
        if shown.image is None:  # nothing processed yet in this session (this frame was replaced at once)
            return self.files.image(scale_to_fit(picture, LIVE_MAX_SIDE), "frame"), "", shown.summary()
        found = shown.result["instances"]
        annotated = draw_instances(shown.image, found, opacity=0.5)
        stats = {**shown.summary(), "objects": describe_objects(found)}
        stats["instances"] = sent_size(found, picture.size)
        return self.files.image(annotated, "frame"), shown.caption, stats

    def overlay(
        self, key: Any, frame: Any, captioner: Any, segmenter: Any, threshold: Any
    ) -> tuple[str, str | None, dict[str, Any] | None]:
        """The live tab: one frame -> (its outlines as SVG for the page to lay over the camera's own preview, the
        running caption, stats). No picture is made: the person already sees the camera. The caption is None when
        the page already shows it, the stats None when the page had them less than ``STATS_EVERY_S`` ago: the page
        redraws only the outlines then (its text boxes, their speech and live regions stay as they are)."""
        session, shown, picture = self._process(key, frame, captioner, segmenter, threshold)
        if shown.image is None:
            return outlines_svg([], scale_to_fit(picture, LIVE_MAX_SIDE).size), None, None
        found = shown.result["instances"]
        svg = outlines_svg(found, shown.image.size, frame=shown.frames_processed)
        caption = None if shown.caption == getattr(session, "page_caption", None) else shown.caption
        session.page_caption = shown.caption
        now = time.monotonic()
        stats = None
        if now - getattr(session, "page_stats_at", -STATS_EVERY_S) >= STATS_EVERY_S:
            session.page_stats_at = now
            stats = {**shown.summary(), "objects": describe_objects(found)}
        return svg, caption, stats

    def ask(
        self, key: Any, question: Any, answerer: Any, history: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """The live tab's questions: one about the last frame the session's stream processed (kept in memory only,
        :attr:`~pipeline.stream.LiveStream.latest`), answered from its objects or by the (checked) answerer on that
        frame, as the photo tab's are.

        Returns:
            tuple ``(html, history)``: the answer block (:func:`pipeline.serve.photo.answered`), the outlines of the
            objects it refers to (SVG in the frame's coordinates, for ``page/live_overlay.js`` to lay over the camera)
            in place of the photo tab's button, and the history of this session's answers, newest first.
        """
        question = checked_question(question)
        answerer = self.models.menus.check("answerer", answerer)
        session = self.registry.find(key)
        shown = session.latest if session is not None else None
        if shown is None or shown.image is None:
            raise RequestError("No camera frame yet: start the camera, then ask.", title="No frame")
        found = shown.result["instances"]
        labels = self.models.labels(session.settings[1]) if session.settings else None
        answer = self.models.answer(question, shown.image, found, labels, answerer)
        session.answers_given = getattr(session, "answers_given", 0) + 1  # tells one answer's outlines from the next
        referred = [found[index] for index in answer["instances"]]
        outlines = outlines_svg(referred, shown.image.size, frame=session.answers_given)
        return answered(answer, found, shown.image.size, history, "live", outlines=outlines)

    def close(self) -> None:
        self.registry.close()


def sent_size(instances: list[dict[str, Any]], size: tuple[int, int]) -> list[dict[str, Any]]:
    """A live frame's instances, found on the frame scaled to fit the live view's side, in the size the client sent
    (``(width, height)``): boxes scaled, masks resized (only over their own window) and as COCO RLE, areas counted
    again, as ``/segment`` gives them."""
    width, height = size
    scaled = []
    for instance in instances:
        crop = crop_of(instance["mask"])
        sx, sy = width / crop.width, height / crop.height
        if crop.array.size and (crop.width, crop.height) != (width, height):
            rows, cols = crop.array.shape
            left, top = math.floor(crop.left * sx), math.floor(crop.top * sy)
            right = min(width, max(left + 1, math.ceil((crop.left + cols) * sx)))
            bottom = min(height, max(top + 1, math.ceil((crop.top + rows) * sy)))
            window = cv2.resize(
                crop.array.astype(np.uint8), (right - left, bottom - top), interpolation=cv2.INTER_NEAREST
            )
            crop = MaskCrop(window > 0, left, top, height, width)
        elif not crop.array.size:
            crop = MaskCrop(crop.array, 0, 0, height, width)
        box = [round(float(v) * (sx if i % 2 == 0 else sy), 2) for i, v in enumerate(instance["box"])]
        scaled.append({**instance, "box": box, "mask": encode_mask(crop), "area": crop.area})
    return scaled


class SessionRegistry:
    """Live sessions by key (a browser session id), at most ``max_sessions``, forgotten after ``idle_s`` unused.

    Args:
        factory (Callable[[Any], LiveStream]): makes a new session's stream from its ``settings``.
        max_sessions (int, default 16): the least recently used session is closed beyond this.
        idle_s (float, default 120.0): a session unused this long is closed at the next lookup.
        clock (Callable[[], float], default time.monotonic): the time source.
    """

    def __init__(
        self,
        factory: Callable[[Any], LiveStream],
        *,
        max_sessions: int = 16,
        idle_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.factory = factory
        self.max_sessions = max_sessions
        self.idle_s = idle_s
        self.clock = clock
        self._sessions: OrderedDict[Any, LiveStream] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, *, settings: Any = None) -> LiveStream:
        """The session of ``key``; a new one, made by the factory from ``settings`` (e.g. model names), when there
        is none. A session keeps going when its settings change: the caller applies them to it.

        A new session is made outside the registry's lock (the factory may load models for seconds), so that other
        sessions' frames are not held up meanwhile.
        """
        now = self.clock()
        with self._lock:
            for stale in [k for k, s in self._sessions.items() if now - s.last_used > self.idle_s]:
                self._sessions.pop(stale).close()
            session = self._sessions.get(key)
            if session is not None:
                self._sessions.move_to_end(key)
                session.last_used = now
                return session
        made = self.factory(settings)
        with self._lock:
            session = self._sessions.get(key)
            if session is not None:  # another request of this session made one meanwhile: keep that one
                made.close()
            else:
                session = self._sessions[key] = made
                while len(self._sessions) > self.max_sessions:
                    _, oldest = self._sessions.popitem(last=False)
                    oldest.close()
            self._sessions.move_to_end(key)
            session.last_used = now
            return session

    def find(self, key: Any) -> LiveStream | None:
        """The session of ``key``, or None when there is none (none is made)."""
        with self._lock:
            return self._sessions.get(key)

    def __len__(self) -> int:
        return len(self._sessions)

    def close(self) -> None:
        """Close every session."""
        with self._lock:
            for session in self._sessions.values():
                session.close()
            self._sessions.clear()
