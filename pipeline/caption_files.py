"""Flickr-style caption files: the three layouts of Flickr8k and Flickr30k, read into captions by image name.

The layout is detected from the file's content, not its name:

- Flickr8k (Kaggle) ``captions.txt``: a CSV with the header ``image,caption``;
- Flickr8k ``Flickr8k.token.txt``: ``name.jpg#0<TAB>caption``;
- Flickr30k ``results.csv``: ``image_name| comment_number| comment`` (its known broken rows included).

Malformed rows (no caption, a bad caption number, a name that is not an image file) are skipped and counted. The
training script reads its data with these, and the evaluations their references.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

LAYOUTS = ("captions.txt", "Flickr8k.token.txt", "results.csv")
IMAGE_DIRS = ("images", "Images", "flickr30k_images", "Flicker8k_Dataset", "Flickr8k_Dataset")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_TOKEN_NAME = re.compile(r"^(?P<image>[^#\s]+)#(?P<number>\d+)$")


@dataclass
class CaptionFile:
    """What :func:`read_captions` found: captions by image name, the layout, and how many rows were skipped."""

    captions: dict[str, list[str]]
    layout: str
    skipped: int


def detect_layout(path: str | Path) -> str:
    """Which of :data:`LAYOUTS` a caption file is in, from its first line (its name does not matter)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        first = handle.readline().strip().lstrip("\ufeff")
    if first.replace(" ", "").lower().startswith("image_name|"):
        return "results.csv"
    if first.replace(" ", "").lower() == "image,caption":
        return "captions.txt"
    if "\t" in first and _TOKEN_NAME.match(first.split("\t", 1)[0]):
        return "Flickr8k.token.txt"
    raise ValueError(
        f"caption file {str(path)!r} is in none of the layouts {LAYOUTS}: its first line is {first[:80]!r}"
    )


def _is_image_name(name: str) -> bool:
    return bool(name) and name.lower().endswith(IMAGE_SUFFIXES)


def read_captions(path: str | Path) -> CaptionFile:
    """Read a Flickr-style caption file in any of :data:`LAYOUTS`; malformed rows are skipped and counted.

    Args:
        path (str | Path): ``captions.txt``, ``Flickr8k.token.txt`` or ``results.csv`` (any name).

    Returns:
        CaptionFile: ``captions`` (image file name -> captions in file order), ``layout``, ``skipped``.
    """
    if not Path(path).is_file():
        raise ValueError(f"caption file {str(path)!r} does not exist")
    layout = detect_layout(path)
    text = Path(path).read_text(encoding="utf-8", errors="replace").lstrip("\ufeff")
    captions: dict[str, list[str]] = {}
    skipped = 0
    lines = text.splitlines()
    if layout == "captions.txt":
        rows = csv.reader(io.StringIO("\n".join(lines[1:])))
        parsed = [(row[0].strip(), ",".join(row[1:]).strip()) if len(row) >= 2 else ("", "") for row in rows]
    elif layout == "Flickr8k.token.txt":
        parsed = []
        for line in lines:
            if not line.strip():
                continue
            name, _, caption = line.partition("\t")
            match = _TOKEN_NAME.match(name.strip())
            parsed.append((match["image"], caption.strip()) if match else ("", ""))
    else:
        parsed = []
        for line in lines[1:]:
            if not line.strip():
                continue
            fields = [field.strip() for field in line.split("|", 2)]  # a comment may itself hold a "|"
            valid = len(fields) == 3 and fields[1].isdigit()
            parsed.append((fields[0], fields[2]) if valid else ("", ""))
    for name, caption in parsed:
        if not _is_image_name(name) or not caption:
            skipped += 1
            continue
        captions.setdefault(name, []).append(caption)
    return CaptionFile(captions, layout, skipped)


def find_caption_data(directory: str | Path) -> tuple[Path, Path]:
    """The caption file and images folder of a data set folder (e.g. a shapes split, or an unpacked Flickr8k)."""
    root = Path(directory)
    caption_files = [root / name for name in LAYOUTS if (root / name).is_file()]
    image_dirs = [root / name for name in IMAGE_DIRS if (root / name).is_dir()]
    if not caption_files or not image_dirs:
        raise ValueError(
            f"data set folder {str(directory)!r} needs one of {LAYOUTS} and an images folder named one of {IMAGE_DIRS}"
        )
    return caption_files[0], image_dirs[0]
