"""The served app's models: chosen from the menus, loaded once by the cache, run in threads of their own.

:class:`ModelRunner` is what every part of the service (:mod:`pipeline.serve.endpoints`, :mod:`pipeline.serve.photo`,
:mod:`pipeline.serve.live`) runs its models through: the menus check a client's model names, the cache loads each
model once, and the runs happen in a few threads of their own (photo work at a lower priority than live frames), or
elsewhere through ``runner`` (ZeroGPU's ``spaces.GPU``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from PIL import Image

from ..answering import answer_question
from ..catalog import NO_STUFF
from ..combined import Halves, run_halves
from ..kernels import limit_intraop_threads
from .cache import ModelCache, public_message
from .intake import RequestError, image_from_payload
from .menus import NO_ANSWERER, ModelMenus
from .process import lower_thread_priority


@contextlib.contextmanager
def model_failures(what: str) -> Iterator[None]:
    """A model's failure inside the block as a :class:`RequestError` that says what failed, so the server keeps
    serving: an option a model refuses (``ValueError``/``TypeError``, e.g. a prompt it takes none of) in its own
    words, anything else the model raised (``RuntimeError``, e.g. out of memory) as "The model failed on this
    ``what``"."""
    try:
        yield
    except (ValueError, TypeError) as error:
        raise RequestError(str(error)) from None
    except RuntimeError as error:
        raise RequestError(f"The model failed on this {what}: {error}", title="Model failed") from None


class ModelRunner:
    """The menus, the model cache and the threads models run in.

    Args:
        cache (ModelCache): where models are loaded and kept.
        menus (ModelMenus): what clients may choose.
        live_sessions (int, default 2): webcam streams served at once (threads for their segmentation).
        runner (Callable | None, default None): runs a photo's models elsewhere (ZeroGPU: a ``spaces.GPU``
            function), called as ``runner(captioner, segmenter, images, caption_options, segment_options,
            stuff=stuff)`` (``stuff`` only when one is asked for) and returning :meth:`run_models`'
            :class:`~pipeline.combined.Halves`; None runs here, in the photo threads.
        answer_runner (Callable | None, default None): answers a question elsewhere (ZeroGPU), called with
            :meth:`answer_here`'s arguments and returning its answer; None answers in the photo threads.
        max_pixels (int | None, default None): the image pixel limit; None reads ``PIPELINE_MAX_PIXELS``.
    """

    def __init__(
        self,
        cache: ModelCache,
        menus: ModelMenus,
        *,
        live_sessions: int = 2,
        runner: Callable[..., Halves] | None = None,
        answer_runner: Callable[..., dict[str, Any]] | None = None,
        max_pixels: int | None = None,
    ):
        self.cache, self.menus, self.runner, self.max_pixels = cache, menus, runner, max_pixels
        self.answer_runner = answer_runner
        self.live_sessions = live_sessions
        # Model work runs in threads of its own, so that the threads that ever run PyTorch (each with its own team of
        # intra-op threads and their caches) are these few, not whichever of the web server's threads took a
        # request. Photo work runs at a lower priority, so that live frames get the cores first.
        self.photo_threads = ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="photo", initializer=lower_thread_priority
        )
        # Key frames run a little below the frames and the caption (nice 5): a frame's answer takes milliseconds and
        # must not wait behind a second of segmentation, and the caption's age is what a listener notices.
        self.live_threads = ThreadPoolExecutor(
            max_workers=live_sessions, thread_name_prefix="live", initializer=lower_thread_priority, initargs=(5,)
        )
        self.live_caption_thread = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="live-caption",
            initializer=limit_intraop_threads,
            initargs=(max(1, torch.get_num_threads() // 2),),
        )

    def model(self, kind: str, name: Any) -> Any:
        """The loaded model a client named, or a :class:`RequestError` that says why not (no server paths)."""
        checked = self.menus.check(kind, name)
        try:
            return self.cache.get(kind, checked)
        except Exception as error:  # a missing or broken model must not take the server down
            raise RequestError(public_message(error), title=f"The {kind} {checked!r} cannot be used") from error

    def labels(self, segmenter: str) -> list[str] | None:
        """The segmenter's category names (what its grounding looks for)."""
        return getattr(self.cache.get("segmenter", segmenter), "categories", None)

    def stuff_labels(self, stuff: str | None) -> list[str] | None:
        """The stuff model's class names (what the grounding looks for besides the objects); None for no model."""
        if not stuff or stuff == NO_STUFF:
            return None
        return getattr(self.cache.get("stuff", stuff), "categories", None)

    def image(self, payload: Any) -> Image.Image:
        """The client's image, within this server's limits (:func:`~pipeline.serve.intake.image_from_payload`)."""
        return image_from_payload(payload, max_pixels=self.max_pixels)

    def run_models(
        self,
        captioner: str | None,
        segmenter: str | None,
        images: list[Image.Image],
        caption_options: dict[str, Any] | None = None,
        segment_options: dict[str, Any] | None = None,
        *,
        concurrent: bool = True,
        stuff: str | None = None,
    ) -> Halves:
        """Run the named (already checked) models on decoded images, both at once unless ``concurrent`` is False
        (a ZeroGPU worker is a fork of the server, without its threads); a None model is skipped, and the stuff
        model (None or ``"none"``: none) runs with the segmenter."""
        captioning = self.cache.get("captioner", captioner) if captioner else None
        segmenting = self.cache.get("segmenter", segmenter) if segmenter else None
        regions = self.cache.get("stuff", stuff) if stuff and stuff != NO_STUFF and segmenter else None
        executor = self.photo_threads if concurrent else None
        return run_halves(
            images, captioning, segmenting, caption_options, segment_options, executor=executor, stuff=regions
        )

    def run(
        self,
        captioner: str | None,
        segmenter: str | None,
        image: Image.Image,
        caption_options: dict[str, Any] | None,
        segment_options: dict[str, Any] | None,
        stuff: str | None = None,
    ) -> Halves:
        """One photo's run, in the photo threads (or the ``runner``); a model or option failure is a
        :class:`RequestError` and the server keeps serving. ``stuff`` (a checked menu name; None or ``"none"``: no
        stuff model) fills the segmentation's views around the things."""
        stuff = stuff if stuff and stuff != NO_STUFF and segmenter else None
        for kind, name in (("captioner", captioner), ("segmenter", segmenter), ("stuff", stuff)):
            if name:
                self.model(kind, name)  # load (or fail with a message) before any GPU time is asked for
        extra = {"stuff": stuff} if stuff else {}  # a runner written before stuff existed still works without it
        with model_failures("image"):
            if self.runner is not None:
                return self.runner(captioner, segmenter, [image], caption_options, segment_options, **extra)
            if captioner and segmenter:
                return self.run_models(captioner, segmenter, [image], caption_options, segment_options, **extra)
            # One half: still in a photo thread, at the photo priority.
            return self.photo_threads.submit(
                self.run_models, captioner, segmenter, [image], caption_options, segment_options, **extra
            ).result()

    def answer(
        self,
        question: str,
        image: Image.Image,
        instances: list[dict[str, Any]],
        labels: list[str] | None,
        answerer: str,
        *,
        image_size: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        """Answer a (checked) question about a picture whose instances are known, from them or with the (checked)
        answerer (:func:`pipeline.answering.answer_question`; ``"none"``: the objects only), in a photo thread; a
        model failure is a :class:`RequestError` and the server keeps serving. ``image_size``: the size the boxes are
        in, when ``image`` is a display copy."""
        if answerer != NO_ANSWERER:
            self.model("answerer", answerer)  # load (or fail with a message) before any GPU time is asked for
        with model_failures("image"):
            if self.answer_runner is not None:
                return self.answer_runner(question, image, instances, labels, answerer, image_size)
            return self.photo_threads.submit(
                self.answer_here, question, image, instances, labels, answerer, image_size
            ).result()

    def answer_here(
        self,
        question: str,
        image: Image.Image,
        instances: list[dict[str, Any]],
        labels: list[str] | None,
        answerer: str,
        image_size: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        """:meth:`answer`'s work in this thread (a ZeroGPU worker's ``spaces.GPU`` function runs it there)."""
        model = None if answerer == NO_ANSWERER else self.cache.get("answerer", answerer)
        return answer_question(question, image, instances, labels=labels, answerer=model, image_size=image_size)

    def close(self) -> None:
        for pool in (self.photo_threads, self.live_threads, self.live_caption_thread):
            pool.shutdown(wait=False)
