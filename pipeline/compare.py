"""Several captioners on one image, side by side: what ``python -m pipeline IMAGE --captioner a,b,c`` prints and what
a compare view shows.

The image is decoded once; the captioners run one after the other (each one uses every core), each timed on its
own. A captioner that cannot be loaded or fails on the image gives its error in its row and the others still run.

>>> captioners = [load_captioner("blip-base"), load_captioner("git-base")]  # doctest: +SKIP
>>> rows = compare_captioners("street.jpg", captioners)  # doctest: +SKIP
>>> [(row["name"], row["caption"], round(row["milliseconds"])) for row in rows]  # doctest: +SKIP
[('blip-base', 'a man riding a bike down a street', 812), ('git-base', 'a man riding a bike on a street', 640)]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .base import Pipeline
from .images import ImageInput, load_image

#: What a row may fail with: a model that cannot be loaded (``ModelUnavailableError`` is a ``RuntimeError``), an
#: unknown name, an option the captioner refuses (a prompt for ViT-GPT2), a model error.
ROW_ERRORS = (ValueError, TypeError, RuntimeError, OSError)

CaptionerOrLoader = Any  # a CaptionPipeline, or a callable without arguments that returns one


def compare_captioners(
    image: ImageInput,
    captioners: Mapping[str, CaptionerOrLoader] | Sequence[Any],
    *,
    max_pixels: int | None = None,
    public: bool = False,
    **options: Any,
) -> list[dict[str, Any]]:
    """Caption one image with each captioner, in the order given.

    Args:
        image (ImageInput): a path, bytes, PIL image or array (see :func:`pipeline.images.load_image`).
        captioners (Mapping[str, CaptionPipeline | Callable[[], CaptionPipeline]] | Sequence[CaptionPipeline]):
            name -> a loaded captioner or a loader called when its turn comes (e.g. ``lambda:
            cache.get("captioner", name)``, so that a load failure lands in its row); or a list of loaded captioners,
            named by their ``name``.
        max_pixels (int | None, default None): image intake limit.
        public (bool, default False): rows carry the message meant for clients of a served app
            (``ModelUnavailableError.public``, no paths of this machine) instead of the operator's.
        **options: :class:`~pipeline.captioning.CaptionPipeline` call options for every captioner (``prompt``,
            ``max_new_tokens``, ``num_beams``, ...).

    Returns:
        list of dict, one per captioner, with
        - ``"name"``: the captioner's name;
        - ``"caption"``: str, or None when it failed;
        - ``"milliseconds"``: float, the caption's time (not the loading's);
        - ``"error"``: None, or the message saying why this captioner gave no caption.

    Raises:
        ValueError: the image cannot be read (it fails every row alike), no captioners, or a name given twice.
    """
    entries = list(captioners.items()) if isinstance(captioners, Mapping) else [(c.name, c) for c in captioners]
    if not entries:
        raise ValueError("compare_captioners needs at least one captioner, got none")
    names = [name for name, _ in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"captioner names must be different, got {names}")
    loaded = load_image(image, max_pixels=max_pixels)
    rows = []
    for name, captioner in entries:
        tick = time.perf_counter()
        try:
            pipeline = captioner if isinstance(captioner, Pipeline) else captioner()
            tick = time.perf_counter()
            caption, error = pipeline(loaded, **options)["caption"], None
        except ROW_ERRORS as failure:
            caption = None
            error = (getattr(failure, "public", None) if public else None) or str(failure)
        rows.append(
            {"name": name, "caption": caption, "milliseconds": (time.perf_counter() - tick) * 1000.0, "error": error}
        )
    return rows


def load_once(loader: Callable[[], Any]) -> Callable[[], Any]:
    """A loader that runs ``loader`` once: later calls return the same model, or raise the same error again.

    For a comparison over many images, so that a captioner that cannot be loaded is tried once, not per image.

    >>> calls = []
    >>> once = load_once(lambda: calls.append(1) or "model")
    >>> once(), once(), len(calls)
    ('model', 'model', 1)
    """
    lock = threading.Lock()
    outcome: dict[str, Any] = {}

    def load() -> Any:
        with lock:
            if not outcome:
                try:
                    outcome["model"] = loader()
                except ROW_ERRORS as error:
                    outcome["error"] = error
        if "error" in outcome:
            raise outcome["error"]
        return outcome["model"]

    return load


def format_comparison(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The rows as aligned lines, one per captioner: name, caption (or error), time.

    >>> format_comparison([{"name": "a", "caption": "a cat", "milliseconds": 12.0, "error": None},
    ...                    {"name": "bb", "caption": None, "milliseconds": 0.4, "error": "not here"}])
    ['a   a cat  (12 ms)', 'bb  error: not here']
    """
    width = max(len(row["name"]) for row in rows)
    return [
        f"{row['name']:<{width}}  {row['caption']}  ({row['milliseconds']:.0f} ms)"
        if row["error"] is None
        else f"{row['name']:<{width}}  error: {row['error']}"
        for row in rows
    ]
