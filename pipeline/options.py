"""Call options, declared once: name, type, default, bounds and help of every option a pipeline takes.

Each pipeline declares its options beside its code (:data:`pipeline.captioning.CAPTION_OPTIONS`,
:data:`pipeline.segmentation.SEGMENT_OPTIONS`, :data:`pipeline.describe.DESCRIBE_OPTIONS`,
:data:`pipeline.render.DRAW_OPTIONS`), and everything else is derived from those declarations:

- the library's checks: :meth:`Option.check` is the one check function, and :meth:`Pipeline._sanitize_parameters
  <pipeline.base.Pipeline._sanitize_parameters>` splits a call's options into the hooks by :attr:`Option.hook`;
- the command line's flags (:func:`add_option_flags`, which checks each flag with the bounds below);
- the served app's option table, the page's sliders and the ``view_api()`` descriptions
  (:mod:`pipeline.serve.options`).

The library trusts its caller: ``captioner(image, num_beams=20)`` runs 20 beams. A command line or a served app
offers the *bounded* form (``bounded=True``): an option with ``public=False`` is not offered at all, a number stops at
:attr:`Option.limit` and a text at :attr:`Option.max_length`, so that one request's cost stays within documented
bounds. A value outside the bounds is an :class:`OptionError` (a ``ValueError``) that names the option, the value and
what is accepted, e.g. ``num_beams must be an integer from 1 to 8, got 1000``.

>>> beams = Option("num_beams", "int", 1, "beams of beam search", low=1, limit=8)
>>> beams.check(20), beams.check(4.0, bounded=True)
(20, 4)
>>> beams.describe(bounded=True)
'an integer from 1 to 8 (default 1)'
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

KINDS = ("int", "float", "bool", "choice", "text", "mapping")
HOOKS = ("preprocess", "forward", "postprocess")


class OptionError(ValueError):
    """An option of the wrong type or outside its bounds; the message names the option, the value and the bounds."""


@dataclass(frozen=True)
class Option:
    """One call option.

    Attributes:
        name (str): as the caller spells it (``num_beams``).
        kind (str): one of :data:`KINDS`.
        default (Any): what the pipeline uses when the caller says nothing.
        help (str): one line for people (flags, the page, API descriptions).
        hook (str, default "postprocess"): the pipeline hook that takes it, one of :data:`HOOKS`.
        low, high (float | None): the numbers the library accepts, both included; None is unbounded.
        limit (float | None): the highest number a command line or served app accepts (None: ``high``).
        choices (tuple): the accepted values of a ``"choice"``.
        max_length (int | None): the longest ``"text"`` a command line or served app accepts.
        none_means (str | None): None is accepted and means this (``"all"``, ``"no limit"``); a choice also accepts
            this word for None, so that a client can name it.
        public (bool, default True): a command line or served app offers it.
    """

    name: str
    kind: str
    default: Any
    help: str
    hook: str = "postprocess"
    low: float | None = None
    high: float | None = None
    limit: float | None = None
    choices: tuple = ()
    max_length: int | None = None
    none_means: str | None = None
    public: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS or self.hook not in HOOKS:
            raise ValueError(f"option {self.name!r}: kind must be one of {KINDS} and hook one of {HOOKS}")

    # -- what is accepted --------------------------------------------------------------------------------------------

    def bounds(self, *, bounded: bool = False) -> tuple[float | None, float | None]:
        """``(low, high)`` of a number: the library's, or with ``bounded`` the command line's and served app's."""
        high = self.limit if bounded and self.limit is not None else self.high
        return self.low, high

    @property
    def client_default(self) -> Any:
        """The default as a client names it: the word of :attr:`none_means` for None (``"all"``)."""
        return self.none_means if self.default is None and self.kind == "choice" else self.default

    def accepted(self, *, bounded: bool = False) -> str:
        """What is accepted, in words: ``an integer from 1 to 8``."""
        if self.kind in ("int", "float"):
            noun = "an integer" if self.kind == "int" else "a number"
            low, high = self.bounds(bounded=bounded)
            if high is None:
                return f"{noun} of at least {_number(low)}" if low is not None else noun
            return f"{noun} from {_number(low)} to {_number(high)}"
        if self.kind == "choice":
            words = ([self.none_means] if self.none_means else []) + list(self.choices)
            return "one of " + ", ".join(repr(word) for word in words)
        if self.kind == "text":
            return f"a text of at most {self.max_length} characters" if bounded and self.max_length else "a text"
        return "True or False" if self.kind == "bool" else "a mapping"

    def describe(self, *, bounded: bool = False) -> str:
        """:meth:`accepted` and the default: ``an integer from 1 to 8 (default 1)``."""
        if self.default is None and self.none_means and self.kind != "choice":
            return f"{self.accepted(bounded=bounded)} (default: {self.none_means})"
        return f"{self.accepted(bounded=bounded)} (default {self.client_default if bounded else self.default!r})"

    # -- the one check -----------------------------------------------------------------------------------------------

    def check(self, value: Any, *, bounded: bool = False) -> Any:
        """The value as the type it should be (``30.0`` -> ``30`` for an integer, ``"all"`` -> None), or an
        :class:`OptionError` that names the option, the value and what is accepted.

        Args:
            value (Any): what the caller gave.
            bounded (bool, default False): apply the command line's and served app's bounds (:attr:`limit`,
                :attr:`max_length`, no None unless it has a word) and refuse a non-public option.
        """
        if bounded and not self.public:
            raise OptionError(f"{self.name} cannot be set here")
        if value is None and self.none_means is not None and not (bounded and self.kind in ("int", "float")):
            return None  # a served app bounds numbers: "no limit" is not for its clients
        if self.kind == "choice" and self.none_means is not None and value == self.none_means:
            return None
        checked = _CHECKS[self.kind](self, value, bounded)
        if checked is _REFUSED:
            shown = value
            if self.kind == "text" and isinstance(value, str):
                shown = f"a text of {len(value)} characters"
            elif isinstance(value, int) and value.bit_length() > 64:  # its digits could be thousands long
                shown = f"an integer of {len(str(abs(value))) if value.bit_length() < 4000 else 'over 1000'} digits"
            raise OptionError(f"{self.name} must be {self.accepted(bounded=bounded)}, got {shown!r}")
        return checked


_REFUSED = object()


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _check_number(option: Option, value: Any, bounded: bool) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _REFUSED
    if isinstance(value, float):
        if not math.isfinite(value) or (option.kind == "int" and not value.is_integer()):
            return _REFUSED
        value = int(value) if option.kind == "int" else value
    elif option.kind == "float":  # an int of any size (a client's JSON may hold one): float() can overflow
        try:
            value = float(value)
        except OverflowError:
            return _REFUSED
    low, high = option.bounds(bounded=bounded)
    if (low is not None and value < low) or (high is not None and value > high):
        return _REFUSED
    return value


def _check_choice(option: Option, value: Any, bounded: bool) -> Any:
    return value if isinstance(value, str) and value in option.choices else _REFUSED


def _check_text(option: Option, value: Any, bounded: bool) -> Any:
    if not isinstance(value, str) or (bounded and option.max_length and len(value) > option.max_length):
        return _REFUSED
    return value


def _check_bool(option: Option, value: Any, bounded: bool) -> Any:
    return value if isinstance(value, bool) else _REFUSED


def _check_mapping(option: Option, value: Any, bounded: bool) -> Any:
    return dict(value) if isinstance(value, Mapping) else _REFUSED


_CHECKS = {
    "int": _check_number,
    "float": _check_number,
    "choice": _check_choice,
    "text": _check_text,
    "bool": _check_bool,
    "mapping": _check_mapping,
}


def by_name(options: Iterable[Option]) -> dict[str, Option]:
    """``{name: option}``, refusing one name declared twice.

    >>> sorted(by_name([Option("a", "int", 1, "")]))
    ['a']
    """
    table: dict[str, Option] = {}
    for option in options:
        if option.name in table:
            raise ValueError(f"option {option.name!r} is declared twice")
        table[option.name] = option
    return table


def split_by_hook(options: Mapping[str, Option], given: Mapping[str, Any], owner: str) -> tuple[dict, dict, dict]:
    """A call's options checked and split into the keyword arguments of the three hooks (``_sanitize_parameters``).

    Only what the caller gave is forwarded, so that the defaults stay in the hooks' signatures.

    Raises:
        TypeError: an option ``owner`` does not take (named, with the ones it takes).
        OptionError: a value outside its option's bounds.
    """
    unknown = sorted(set(given) - set(options))
    if unknown:
        raise TypeError(f"{owner} got unknown call options {unknown}; it takes {sorted(options)}")
    split: dict[str, dict[str, Any]] = {hook: {} for hook in HOOKS}
    for name, value in given.items():
        split[options[name].hook][name] = options[name].check(value)
    return split["preprocess"], split["forward"], split["postprocess"]


def add_option_flags(parser: argparse.ArgumentParser, options: Sequence[Option], *, prefix: str = "") -> None:
    """One ``--flag`` per option (``max_new_tokens`` -> ``--max-new-tokens``), checked with the bounded form.

    >>> parser = argparse.ArgumentParser()
    >>> add_option_flags(parser, [Option("num_beams", "int", 1, "beams", low=1, limit=8)])
    >>> parser.parse_args(["--num-beams", "3"]).num_beams
    3
    """
    for option in options:
        parser.add_argument(
            f"--{option.name.replace('_', '-')}",
            type=argparse_type(option),
            default=option.default,
            help=f"{prefix}{option.help}: {option.describe(bounded=True)}",
        )


def argparse_type(option: Option):
    """An ``argparse`` ``type=`` that checks a flag with the option's bounded form.

    >>> argparse_type(Option("num_beams", "int", 1, "beams", low=1, limit=8))("3")
    3
    """

    def parse(text: str) -> Any:
        value: Any = text
        if option.kind in ("int", "float"):
            try:
                value = float(text)
            except ValueError:
                pass
        try:
            return option.check(value, bounded=True)
        except OptionError:
            raise argparse.ArgumentTypeError(f"must be {option.accepted(bounded=True)}, got {text!r}") from None

    parse.__name__ = option.kind  # argparse names the type in its own messages
    return parse
