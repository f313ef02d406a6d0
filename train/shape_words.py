"""What a shapes caption says, checked against what the picture holds: kinds with their counts, and colours.

BLEU and CIDEr reward the words of the reference captions; a listener needs the caption to name the right shapes.
:func:`shape_accuracy` reads each caption's mentions of the shapes world (a count word or "a", colour words, a kind:
"two red squares and a blue circle", "a red circle to the left of a blue square") and scores, over the pictures:

- ``kinds_counts_right``: the share whose caption names exactly the right kinds, each with the right count;
- ``colours_right``: the share whose caption names exactly the right set of colours.

The truth of a picture is read the same way from its first reference caption (every phrasing names the same
shapes).

>>> sorted(mentions("two red squares and a blue circle").items())
[('circle', 1), ('square', 2)]
>>> sorted(colours("a red circle to the left of a blue square"))
['blue', 'red']
>>> shape_accuracy({"1.png": ["a red circle"]}, {"1.png": "a red square"})
{'kinds_counts_right': 0.0, 'colours_right': 1.0, 'pictures': 1.0}
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence

from .shapes import CATEGORIES, COLORS, COUNT_WORDS

_NUMBERS = {"a": 1, "an": 1, "one": 1, **{word: number for number, word in COUNT_WORDS.items()}}
_KINDS = {**{kind: kind for kind in CATEGORIES}, **{kind + "s": kind for kind in CATEGORIES}}


def mentions(caption: str) -> Counter[str]:
    """How many of each kind of shape the caption names: a kind word counts as the number word before it (through
    any colour words), or 1."""
    words = re.findall(r"[a-z]+", caption.lower())
    found: Counter[str] = Counter()
    for index, word in enumerate(words):
        if word not in _KINDS:
            continue
        back = index - 1
        while back >= 0 and words[back] in COLORS:
            back -= 1
        found[_KINDS[word]] += _NUMBERS.get(words[back], 1) if back >= 0 else 1
    return found


def colours(caption: str) -> set[str]:
    """The colour words the caption names."""
    return {word for word in re.findall(r"[a-z]+", caption.lower()) if word in COLORS}


def shape_accuracy(references: Mapping[str, Sequence[str]], candidates: Mapping[str, str]) -> dict[str, float]:
    """The shares of pictures whose caption names the right kinds with the right counts, and the right colours.

    Args:
        references: picture name -> its reference captions (the first one is read as the truth).
        candidates: picture name -> the caption to check; only these pictures are scored.

    Returns:
        dict with ``kinds_counts_right``, ``colours_right`` (0 to 1) and ``pictures``.
    """
    names = [name for name in candidates if references.get(name)]
    if not names:
        raise ValueError("no picture has both a caption to check and a reference caption")
    kinds = sum(mentions(candidates[name]) == mentions(references[name][0]) for name in names)
    right_colours = sum(colours(candidates[name]) == colours(references[name][0]) for name in names)
    return {
        "kinds_counts_right": kinds / len(names),
        "colours_right": right_colours / len(names),
        "pictures": float(len(names)),
    }
