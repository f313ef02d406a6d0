"""The models a client may name: the catalog's, and what the operator configured at start.

A public server does not let clients choose what it loads: :class:`ModelMenus` refuses any other name with one
message that lists the valid names and says nothing about the server's disk; any hub id only when the operator
opted in (``allow_hub``), directories never. :func:`operator_model` gives an operator's directory a menu name of its
own, so that the menus, the page and the API never show where it lies on the server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..catalog import KINDS, NO_STUFF, get_spec, list_models, looks_like_hub_id, register_model
from .intake import RequestError

#: The answerer menu's word for none: questions are then answered from the objects alone.
NO_ANSWERER = "none"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def operator_model(kind: str, name_or_source: str) -> str:
    """The menu name of a model the operator configured at start (``--captioner``, ``APP_SEGMENTER``, ...).

    A catalog name (``"none"`` for stuff too) stays as it is, and a hub id is its own name. A directory is
    registered in the catalog under its folder name (``runs/blip-flickr8k`` -> ``blip-flickr8k``, a number added on
    a clash), so that the menus, the page and the API never show where it lies on the server.

    Raises:
        ValueError: neither a catalog name, nor a directory, nor (captioners) a hub id.
    """
    if kind == "stuff" and name_or_source == NO_STUFF:
        return NO_STUFF
    spec = get_spec(name_or_source, kind)  # an unknown name is the operator's mistake: fail at start-up
    if spec.name in {entry.name for entry in list_models(kind)} or not Path(spec.source).is_dir():
        return spec.name
    taken = {entry.name: entry.source for entry in list_models(kind)}
    base = Path(spec.source).resolve().name or kind
    name, number = base, 1
    while name in taken and taken[name] != str(Path(spec.source).resolve()):
        number += 1
        name = f"{base}-{number}"
    register_model(name, kind, str(Path(spec.source).resolve()), f"{kind} configured by the operator")
    return name


class ModelMenus:
    """The model names a client may choose, per kind.

    Args:
        captioners, segmenters (Sequence[str]): the menu names (catalog names; see :func:`operator_model`).
        stuff (Sequence[str], default ()): the stuff models' menu names; ``"none"`` (no stuff model) is always
            offered, first.
        answerers (Sequence[str], default ()): the question answerers' names; a client may also name
            :data:`NO_ANSWERER` (``"none"``: questions answered from the objects alone).
        allow_hub (bool, default False): also accept any Hugging Face hub id as a captioner (the server then
            downloads what a client names: only for a server whose operator wants that, never on a public Space).
    """

    def __init__(
        self,
        captioners: Sequence[str],
        segmenters: Sequence[str],
        *,
        stuff: Sequence[str] = (),
        answerers: Sequence[str] = (),
        allow_hub: bool = False,
    ):
        self._names = {
            "captioner": list(dict.fromkeys(captioners)),
            "segmenter": list(dict.fromkeys(segmenters)),
            "stuff": list(dict.fromkeys([NO_STUFF, *stuff])),  # "none" is always a choice: things only
            "answerer": list(dict.fromkeys(answerers)),
        }
        self.allow_hub = allow_hub

    def names(self, kind: str) -> list[str]:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return list(self._names[kind])

    def check(self, kind: str, name: Any) -> str:
        """``name`` when a client may choose it, else a :class:`RequestError` listing the valid names.

        The message is the same whatever ``name`` is (a path that exists, one that does not, ``..``): it tells a
        client nothing about the server's disk.
        """
        names = self.names(kind) + ([NO_ANSWERER] if kind == "answerer" else [])
        if isinstance(name, str) and name in names:
            return name
        if self.allow_hub and kind == "captioner" and self.is_hub_id(name):
            return name
        shown = name if isinstance(name, str) and len(name) <= 80 else f"a {type(name).__name__}"
        hub = " or a Hugging Face hub id (owner/name)" if self.allow_hub and kind == "captioner" else ""
        raise RequestError(f"unknown {kind} {shown!r}: choose one of {names}{hub}", title=f"Unknown {kind}")

    @staticmethod
    def is_hub_id(name: Any) -> bool:
        """``owner/name`` in the hub's own characters, and not a path of this machine (a relative one included)."""
        return (
            isinstance(name, str)
            and bool(_HUB_ID.match(name))
            and ".." not in name
            and looks_like_hub_id(name)
            and not os.path.lexists(name)
        )
