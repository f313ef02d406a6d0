"""What the served app does with a photo or a webcam frame, with no gradio: every endpoint's work, unit-tested alone.

A :class:`Service` is the app's one worker, in parts by what each serves:

- ``models`` (:class:`~pipeline.serve.models.ModelRunner`): the menus, the model cache and the threads models run in;
- ``endpoints`` (:class:`~pipeline.serve.endpoints.Endpoints`): ``/caption``, ``/segment``, ``/analyze``,
  ``/describe``, ``/compare``;
- ``photos`` (:class:`~pipeline.serve.photo.PhotoPage`): the photo tab's kept analysis, its reuse rules and what the
  page shows;
- ``live`` (:class:`~pipeline.serve.live.LiveSessions`): the live tab's and ``/live_frame``'s sessions.

Each checks a client's request (the menus of :mod:`pipeline.serve.menus`, the option bounds of
:mod:`pipeline.serve.options`, the image limits of :mod:`pipeline.serve.intake`) and raises
:class:`~pipeline.serve.intake.RequestError` for a client's mistake, which the app (``app.py``) turns into the page's
messages. :func:`pipeline.serve.config.build_service` builds one from the server's flags.
"""

from __future__ import annotations

from typing import Any

from ..combined import Halves
from .cache import ModelCache
from .endpoints import Endpoints
from .files import OutputFiles, memory_folder
from .live import LiveSessions
from .menus import ModelMenus
from .models import ModelRunner
from .photo import PhotoPage


class Service:
    """The served app's work, in parts (see the module docstring).

    Args:
        cache (ModelCache): where models are loaded and kept.
        menus (ModelMenus): what clients may choose.
        **options: the :class:`~pipeline.serve.models.ModelRunner`'s (``live_sessions``, ``runner``,
            ``max_pixels``).
    """

    def __init__(self, cache: ModelCache, menus: ModelMenus, **options: Any):
        self.models = ModelRunner(cache, menus, **options)
        self.files = OutputFiles()
        self.endpoints = Endpoints(self.models, self.files)
        self.photos = PhotoPage(self.models, self.files)
        # Annotated live frames: a ring of their own, in memory where the machine has room (nothing per frame on disk);
        # the app serves them from there (Gradio static paths) instead of copying each into its cache.
        self.live = LiveSessions(self.models, OutputFiles(keep=256, folder=memory_folder("caption-app-live-")))

    def run_models(self, *args: Any, **kwargs: Any) -> Halves:
        """:meth:`ModelRunner.run_models`: what a ZeroGPU worker runs inside ``spaces.GPU``."""
        return self.models.run_models(*args, **kwargs)

    def close(self) -> None:
        self.live.close()
        self.live.files.close()
        self.models.close()
