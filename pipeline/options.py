"""What a request may ask for: every call option a client can set, with its type, default and bounds, in one table.

The served app checks every option it receives against :data:`OPTIONS` (sliders and menus are built from it too),
the command line parses its flags with :func:`argparse_type`, and README and ``view_api()`` show
:func:`describe_options`. The library itself stays permissive: a caller in its own process may ask for 20 beams.
A value outside the table is refused with an :class:`OptionError` that names the option, the value and what is
accepted, e.g. ``num_beams must be an integer from 1 to 8, got 1000``.

>>> OPTIONS["num_beams"].check(4)
4
>>> OPTIONS["threshold"].describe()
'a number from 0 to 1 (default 0.5)'
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .describe import DEFAULT_MAX_OBJECTS, DETAILS
from .images import DEFAULT_MAX_PIXELS
from .segmentation import SUBTASKS

#: The largest image file a client may send, in bytes, however it arrives (upload, path, ``data:`` URL).
MAX_IMAGE_BYTES = 25 * 1024 * 1024
#: The largest image in pixels (a server may lower it with ``PIPELINE_MAX_PIXELS``).
MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS


class OptionError(ValueError):
    """A request option of the wrong type or outside its bounds; the message names both."""


@dataclass(frozen=True)
class Option:
    """One option a client may set.

    Attributes:
        name (str): as the client spells it.
        kind (str): ``"int"``, ``"float"``, ``"choice"`` or ``"text"``.
        default: what the server uses when the client says nothing.
        low, high (float | None): the bounds of a number, both included.
        choices (tuple | None): the accepted values of a choice.
        max_length (int | None): the longest text, in characters.
        help (str): one line for people.
    """

    name: str
    kind: str
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    max_length: int | None = None
    help: str = ""

    def accepted(self) -> str:
        """What is accepted, in words: ``an integer from 1 to 8``."""
        if self.kind in ("int", "float"):
            noun = "an integer" if self.kind == "int" else "a number"
            return f"{noun} from {_number(self.low)} to {_number(self.high)}"
        if self.kind == "choice":
            return "one of " + ", ".join(repr(choice) for choice in self.choices)
        return f"a text of at most {self.max_length} characters"

    def describe(self) -> str:
        """:meth:`accepted` and the default: ``an integer from 1 to 8 (default 1)``."""
        return f"{self.accepted()} (default {self.default!r})"

    def check(self, value: Any) -> Any:
        """The value, as the type it should be (``30.0`` -> ``30`` for an integer), or an :class:`OptionError`."""
        if self.kind in ("int", "float"):
            number = _as_number(value, whole=self.kind == "int")
            if number is None or not self.low <= number <= self.high:
                raise OptionError(f"{self.name} must be {self.accepted()}, got {value!r}")
            return number
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise OptionError(f"{self.name} must be {self.accepted()}, got {value!r}")
            return value
        if not isinstance(value, str) or len(value) > self.max_length:
            shown = value if not isinstance(value, str) else f"a text of {len(value)} characters"
            raise OptionError(f"{self.name} must be {self.accepted()}, got {shown!r}")
        return value


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _as_number(value: Any, *, whole: bool) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if whole:
        return int(value) if float(value).is_integer() else None
    return float(value)


OPTIONS: dict[str, Option] = {
    option.name: option
    for option in (
        Option("threshold", "float", 0.5, 0.0, 1.0, help="objects scoring below this are left out"),
        Option("opacity", "float", 0.5, 0.0, 1.0, help="how strongly masks tint the photo"),
        Option("max_new_tokens", "int", 30, 1, 60, help="the longest caption, in tokens"),
        Option("num_beams", "int", 1, 1, 8, help="1 is greedy search (fastest); more is beam search"),
        Option("subtask", "choice", "all", choices=("all", *SUBTASKS), help="which segmentation views to return"),
        Option("prompt", "text", "", max_length=200, help="a text the caption continues (BLIP, GIT)"),
        Option("detail", "choice", "long", choices=DETAILS, help="long: what is where; short: the alt text"),
        Option("max_objects", "int", DEFAULT_MAX_OBJECTS, 0, 50, help="objects the description names"),
    )
}


def check_options(given: Any, accepted: Sequence[str]) -> dict[str, Any]:
    """A request's options, checked, with the defaults of those it left out.

    Args:
        given (Mapping | None): what the client sent (None for none).
        accepted (Sequence[str]): the names this request takes, a subset of :data:`OPTIONS`.

    Returns:
        dict: ``{name: value}`` for every accepted name.

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
    return {name: OPTIONS[name].check(given[name]) if name in given else OPTIONS[name].default for name in accepted}


def describe_options(names: Sequence[str]) -> str:
    """``name: what is accepted`` for each name, ``; ``-separated (for ``api_description`` and README)."""
    return "; ".join(f"{name}: {OPTIONS[name].describe()}" for name in names)


def argparse_type(name: str):
    """An ``argparse`` ``type=`` that checks a flag against the option's bounds (the CLI shares the table).

    >>> argparse_type("num_beams")("3")
    3
    """
    option = OPTIONS[name]

    def parse(text: str) -> Any:
        try:
            value = float(text) if option.kind in ("int", "float") else text
        except ValueError:
            value = text
        try:
            return option.check(value)
        except OptionError:
            raise argparse.ArgumentTypeError(f"must be {option.accepted()}, got {text!r}") from None

    parse.__name__ = option.kind  # argparse names the type in its own messages
    return parse
