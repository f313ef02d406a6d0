"""What a client may ask for: the served app's option table, derived from the pipelines' own declarations.

Every option here is declared once beside the code that takes it (:data:`pipeline.captioning.CAPTION_OPTIONS`,
:data:`pipeline.segmentation.SEGMENT_OPTIONS`, :data:`pipeline.describe.DESCRIBE_OPTIONS`,
:data:`pipeline.render.DRAW_OPTIONS`); the served app offers the public ones in their bounded form
(:mod:`pipeline.options`): the endpoints check requests with :func:`check_options`, the page builds its sliders from
:data:`OPTIONS`, and ``view_api()`` shows :func:`describe_options`. Adding an option to a pipeline is one declaration
there; a served endpoint then lists its name.

>>> OPTIONS["num_beams"].check(4, bounded=True)
4
>>> OPTIONS["threshold"].describe(bounded=True)
'a number from 0 to 1 (default 0.5)'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..captioning import CAPTION_OPTIONS
from ..describe import DESCRIBE_OPTIONS
from ..images import DEFAULT_MAX_PIXELS
from ..options import Option, OptionError, by_name
from ..render import DRAW_OPTIONS
from ..segmentation import SEGMENT_OPTIONS

#: Every option a client may set, by name: the public declarations of the pipelines.
OPTIONS: dict[str, Option] = by_name(
    option for option in (*CAPTION_OPTIONS, *SEGMENT_OPTIONS, *DESCRIBE_OPTIONS, *DRAW_OPTIONS) if option.public
)
#: The largest image file a client may send, in bytes, however it arrives (upload, path, ``data:`` URL).
MAX_IMAGE_BYTES = 25 * 1024 * 1024
#: The largest image in pixels (a server may lower it with ``PIPELINE_MAX_PIXELS``).
MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS


def check_options(given: Any, accepted: Sequence[str]) -> dict[str, Any]:
    """A request's options, checked in their bounded form, with the defaults of those it left out.

    Args:
        given (Mapping | None): what the client sent (None for none).
        accepted (Sequence[str]): the names this request takes, a subset of :data:`OPTIONS`.

    Returns:
        dict: ``{name: value}`` for every accepted name (``subtask`` "all" as None, as the pipeline takes it).

    Raises:
        OptionError: not a mapping, an unknown name, or a value out of its bounds.

    >>> check_options({"num_beams": 3.0}, ["num_beams", "threshold"])
    {'num_beams': 3, 'threshold': 0.5}
    """
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise OptionError(f"options must be a JSON object of {sorted(accepted)}, got {type(given).__name__}")
    unknown = sorted(str(key) for key in given if key not in accepted)
    if unknown:
        raise OptionError(f"unknown options {unknown}; accepted: {sorted(accepted)}")
    return {
        name: OPTIONS[name].check(given[name], bounded=True) if name in given else OPTIONS[name].default
        for name in accepted
    }


def describe_options(names: Sequence[str]) -> str:
    """``name: what is accepted`` for each name, ``; ``-separated (for ``api_description`` and README)."""
    return "; ".join(f"{name}: {OPTIONS[name].describe(bounded=True)}" for name in names)


def client_defaults(names: Sequence[str]) -> dict[str, Any]:
    """The defaults as a client names them (``subtask``: ``"all"``), for an endpoint's example options."""
    return {name: OPTIONS[name].client_default for name in names}
