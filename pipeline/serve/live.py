"""The live tab's and ``/live_frame``'s work, gradio-free: one :class:`~pipeline.stream.LiveStream` per client
session, kept in a bounded registry, its frames answered with the annotated picture, the running caption and stats.

Sessions (one per browser tab or client) live in a :class:`SessionRegistry` with a size bound and an idle timeout,
so that memory stays flat however long the server runs.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from PIL import Image

from ..jsonform import encode_mask
from ..masks import crop_of
from ..render import describe_objects, draw_instances
from ..speed import segmenter_view
from ..stream import LIVE_MAX_SIDE, LiveStream, scale_to_fit
from .files import OutputFiles
from .intake import RequestError, checked_options
from .models import ModelRunner


class LiveSessions:
    """Live streams by client session over one :class:`ModelRunner`.

    Args:
        models (ModelRunner): the menus, cache and threads (``live_threads`` segment, ``live_caption_thread``
            captions).
        files (OutputFiles): where the annotated frames are written.
    """

    def __init__(self, models: ModelRunner, files: OutputFiles):
        self.models, self.files = models, files
        self.registry = SessionRegistry(self._stream, max_sessions=max(4, 2 * models.live_sessions))

    def _stream(self, settings: tuple[str, str]) -> LiveStream:
        captioner, segmenter = settings
        return LiveStream(
            segmenter_view(self.models.model("segmenter", segmenter), "live"),
            self.models.model("captioner", captioner),
            executor=self.models.live_caption_thread,
            workers=self.models.live_threads,
        )

    def frame(
        self, key: Any, frame: Any, captioner: Any, segmenter: Any, threshold: Any, *, instances: bool = True
    ) -> tuple[str, str, dict[str, Any]]:
        """``/live_frame`` and the live tab: one frame of a session's stream -> (annotated picture's path, the
        running caption, stats with the frame's ``instances``). The newest frame wins: one sent while another is
        processed replaces any waiting. Other models start a new stream; another threshold applies to the next
        frame of the same one. ``instances=False`` leaves the instances out of the stats (the live tab shows the
        picture, and their masks at the size sent are work on every frame)."""
        menus = self.models.menus
        captioner, segmenter = menus.check("captioner", captioner), menus.check("segmenter", segmenter)
        threshold = checked_options({"threshold": threshold}, ("threshold",))["threshold"]
        picture = frame if isinstance(frame, Image.Image) else self.models.image(frame)
        session = self.registry.get(key, settings=(captioner, segmenter))
        session.threshold = threshold  # the next frame segments with it: the caption and frames/s go on
        try:
            shown = session.process(picture)
        except RuntimeError as error:
            raise RequestError(f"The model failed on this frame: {error}", title="Model failed") from None
        if shown.image is None:  # nothing processed yet in this session (this frame was replaced at once)
            return self.files.image(scale_to_fit(picture, LIVE_MAX_SIDE), "frame"), "", shown.summary()
        found = shown.result["instances"]
        annotated = draw_instances(shown.image, found, opacity=0.5)
        stats = {**shown.summary(), "objects": describe_objects(found)}
        if instances:
            stats["instances"] = sent_size(found, picture.size)
        return self.files.image(annotated, "frame"), shown.caption, stats

    def close(self) -> None:
        self.registry.close()


def sent_size(instances: list[dict[str, Any]], size: tuple[int, int]) -> list[dict[str, Any]]:
    """A live frame's instances, found on the frame scaled to fit the live view's side, in the size the client sent
    (``(width, height)``): boxes scaled, masks resized and as COCO RLE, areas counted again, as ``/segment`` gives
    them."""
    scaled = []
    for instance in instances:
        mask = crop_of(instance["mask"]).to("pil")
        sx, sy = size[0] / mask.width, size[1] / mask.height
        mask = mask.resize(size, Image.Resampling.NEAREST) if mask.size != tuple(size) else mask
        box = [round(float(v) * (sx if i % 2 == 0 else sy), 2) for i, v in enumerate(instance["box"])]
        area = int(sum(mask.histogram()[1:]))
        scaled.append({**instance, "box": box, "mask": encode_mask(mask), "area": area})
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
        """The session of ``key``; a new one when there is none or its ``settings`` (e.g. model names) changed.

        A new session is made outside the registry's lock (the factory may load models for seconds), so that other
        sessions' frames are not held up meanwhile.
        """
        now = self.clock()
        with self._lock:
            for stale in [k for k, s in self._sessions.items() if now - s.last_used > self.idle_s]:
                self._sessions.pop(stale).close()
            session = self._sessions.get((key, settings))
            if session is not None:
                self._sessions.move_to_end((key, settings))
                session.last_used = now
                return session
        made = self.factory(settings)
        with self._lock:
            session = self._sessions.get((key, settings))
            if session is not None:  # another request of this session made one meanwhile: keep that one
                made.close()
            else:
                for other in [k for k in self._sessions if k[0] == key]:
                    self._sessions.pop(other).close()
                session = self._sessions[(key, settings)] = made
                while len(self._sessions) > self.max_sessions:
                    _, oldest = self._sessions.popitem(last=False)
                    oldest.close()
            self._sessions.move_to_end((key, settings))
            session.last_used = now
            return session

    def __len__(self) -> int:
        return len(self._sessions)

    def close(self) -> None:
        """Close every session."""
        with self._lock:
            for session in self._sessions.values():
                session.close()
            self._sessions.clear()
