"""Reading settings from environment variables, one way for every variable the project reads.

>>> import os
>>> os.environ["EXAMPLE_FLAG"] = "Yes"
>>> env_flag("EXAMPLE_FLAG")
True
>>> env_flag("EXAMPLE_FLAG_THAT_IS_NOT_SET", default=True)
True
"""

from __future__ import annotations

import os

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def parse_flag(value: str, *, name: str = "value") -> bool:
    """``1/true/yes/on`` -> True, ``0/false/no/off`` -> False (any case, surrounding spaces ignored).

    Raises:
        ValueError: any other word, naming ``name`` and the accepted words.

    >>> parse_flag(" ON "), parse_flag("0")
    (True, False)
    """
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{name} must be one of {TRUE_WORDS} or {FALSE_WORDS}, got {value!r}")


def env_flag(name: str, default: bool = False) -> bool:
    """A boolean environment variable: unset or empty gives ``default``; see :func:`parse_flag` for the words."""
    raw = os.environ.get(name, "")
    return default if not raw.strip() else parse_flag(raw, name=name)


def env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    """An environment variable that takes one of ``choices`` (lower case); the flag words count as ``"1"``/``"0"``.

    >>> env_choice("EXAMPLE_CHOICE_THAT_IS_NOT_SET", ("auto", "1", "0"), "auto")
    'auto'
    """
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in TRUE_WORDS and "1" in choices:
        return "1"
    if raw in FALSE_WORDS and "0" in choices:
        return "0"
    if raw not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {raw!r}")
    return raw


def env_int(name: str, default: int, *, minimum: int = 1) -> int:
    """An integer environment variable of at least ``minimum``; unset or empty gives ``default``.

    >>> env_int("EXAMPLE_INT_THAT_IS_NOT_SET", 4)
    4
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {raw!r}")
    return value
