"""What a batch run reads: the input kinds turned into a list of work items, and the decoding of one item.

An INPUT is one of:

- a folder: every image file under it (recursive), sorted by relative path; a folder written by ``datasets``'
  ``save_to_disk`` is read as that data set instead;
- a glob (``"photos/**/*.jpg"``), sorted;
- a text file of image paths, one a line (``#`` comments and blank lines skipped), relative to ``--images-root``
  or else to the text file's folder;
- a COCO annotations JSON: its ``images`` list (ids and ``file_name`` kept), relative to ``--images-root`` or else
  to an ``images/`` folder beside the JSON, or the JSON's own folder;
- ``hf:NAME``: a Hugging Face ``datasets`` data set: ``hf:imagefolder:DIR`` (``load_dataset("imagefolder")``) or a hub
  name (``load_dataset(NAME)``, needs the network); ``--split`` and ``--image-column`` choose what is read.

Each item has a ``key`` (unique in the input: what resume compares), the ``file`` written into the records, an
``image_id`` (the COCO id, else its position from 1) and a ``location`` (a path, or a data set row).
"""

from __future__ import annotations

import functools
import glob
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..images import load_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
_GLOB_CHARACTERS = set("*?[")


@dataclass(frozen=True)
class Item:
    """One image to analyse: ``key`` (unique), ``file`` (as recorded), ``image_id`` and ``location``."""

    key: str
    file: str
    image_id: int
    location: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ImageSource:
    """Where items' images are read from: files (``kind="files"``) or the rows of a ``datasets`` data set.

    Attributes:
        kind (str): ``"files"`` or ``"dataset"``.
        description (str): the input as the user gave it.
        dataset (str | None): a ``save_to_disk`` folder, ``imagefolder:DIR`` or a hub name (datasets only).
        split (str | None): the data set split read.
        column (str | None): the image column read.
    """

    kind: str
    description: str
    dataset: str | None = None
    split: str | None = None
    column: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_items(
    source: str,
    *,
    images_root: str | Path | None = None,
    split: str = "train",
    image_column: str | None = None,
    limit: int | None = None,
    exclude: str | Path | None = None,
) -> tuple[ImageSource, list[Item]]:
    """The work items of an INPUT (see the module docstring), in input order, the first ``limit`` only.

    Args:
        source (str): a folder, a glob, a text file of paths, a COCO JSON or ``hf:NAME``.
        images_root (str | Path | None, default None): where relative paths of a text file or COCO JSON start.
        split (str, default "train"): the split of a data set.
        image_column (str | None, default None): a data set's image column; None takes its first ``Image`` column.
        limit (int | None, default None): keep the first N items only.
        exclude (str | Path | None, default None): a folder whose files are never items (the run's own output).

    Returns:
        tuple ``(ImageSource, list[Item])``.

    Raises:
        ValueError: the input is none of the accepted kinds, or is malformed; the message says which.

    >>> list_items("no/such/*.png")[1]
    []
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of images, got {limit!r}")
    path = Path(source)
    if source.startswith("hf:"):
        image_source, items = _dataset_items(source[3:], split, image_column, source)
    elif path.is_dir() and _is_saved_dataset(path):
        image_source, items = _dataset_items(str(path), split, image_column, source)
    elif path.is_dir():
        image_source = ImageSource("files", source)
        skipped = Path(exclude).resolve() if exclude else None
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in IMAGE_SUFFIXES
            and not (skipped and p.resolve().is_relative_to(skipped))
        )
        items = _file_items([(p.relative_to(path).as_posix(), p) for p in files])
    elif path.is_file() and path.suffix.lower() == ".json":
        image_source, items = ImageSource("files", source), _coco_items(path, images_root)
    elif path.is_file():
        root = Path(images_root) if images_root else path.parent
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        names = [line for line in lines if line and not line.startswith("#")]
        image_source, items = ImageSource("files", source), _file_items([(name, root / name) for name in names])
    elif _GLOB_CHARACTERS & set(source):
        matches = sorted(p for p in glob.glob(source, recursive=True) if Path(p).is_file())
        image_source, items = ImageSource("files", source), _file_items([(p, Path(p)) for p in matches])
    else:
        raise ValueError(
            f"input {source!r} is none of: a folder, a glob, a text file of paths, a COCO JSON, or hf:NAME "
            "(a Hugging Face data set)"
        )
    return image_source, items[:limit] if limit else items


def _file_items(named: list[tuple[str, Path]]) -> list[Item]:
    items, seen = [], set()
    for name, path in named:
        if name in seen:  # a path listed twice is one image
            continue
        seen.add(name)
        items.append(Item(name, name, len(items) + 1, str(path.resolve())))
    return items


def _coco_items(path: Path, images_root: str | Path | None) -> list[Item]:
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"COCO input {str(path)!r} is not valid JSON: {error}") from None
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise ValueError(f"COCO input {str(path)!r} needs an 'images' list")
    if images_root:
        root = Path(images_root)
    else:
        root = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
    items, ids = [], set()
    for image in coco["images"]:
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise ValueError(f"COCO input {str(path)!r}: every image needs 'id' and 'file_name', got {image!r}")
        if image["id"] in ids:
            raise ValueError(f"COCO input {str(path)!r}: image id {image['id']} appears twice")
        ids.add(image["id"])
        name = str(image["file_name"])
        items.append(Item(name, name, int(image["id"]), str((root / name).resolve())))
    return items


def coco_categories(path: str | Path) -> list[dict[str, Any]] | None:
    """The ``categories`` (``{"id", "name"}`` each) of a COCO JSON, or None when it has none."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    categories = data.get("categories") if isinstance(data, dict) else None
    if not categories:
        return None
    return [{"id": int(category["id"]), "name": str(category["name"])} for category in categories]


# -- Hugging Face data sets --------------------------------------------------------------------------------------


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )


@functools.lru_cache(maxsize=4)
def open_dataset(name: str, split: str | None, column: str | None) -> Any:
    """A ``datasets.Dataset`` with its image column left undecoded (``{"bytes", "path"}`` per row); cached per
    process, so that each decoding worker opens (memory-maps) it once."""
    import datasets

    if Path(name).is_dir():
        loaded = datasets.load_from_disk(name)
    elif name.startswith("imagefolder:"):
        loaded = datasets.load_dataset("imagefolder", data_dir=name.split(":", 1)[1])
    else:
        loaded = datasets.load_dataset(name)
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ValueError(f"data set {name!r} has no split {split!r}; its splits are {sorted(loaded)}")
        loaded = loaded[split]
    if column is not None and isinstance(loaded.features.get(column), datasets.Image):
        loaded = loaded.cast_column(column, datasets.Image(decode=False))
    return loaded


def _dataset_items(
    name: str, split: str, image_column: str | None, description: str
) -> tuple[ImageSource, list[Item]]:
    try:
        import datasets
        import pyarrow.compute
    except ImportError:
        raise ValueError(
            f"input {description!r} is a Hugging Face data set, which needs the datasets package: "
            'pip install -r requirements.txt ".[batch]"'
        ) from None
    dataset = open_dataset(name, split, None)
    column = image_column or next(
        (key for key, feature in dataset.features.items() if isinstance(feature, datasets.Image)), None
    )
    if column is None or column not in dataset.features:
        missing = f"no image column {image_column!r}" if image_column else "no column of the Image type"
        raise ValueError(
            f"data set {description!r} has {missing}; its columns are {list(dataset.features)}; "
            "choose one with --image-column"
        )
    dataset = open_dataset(name, split, column)
    if dataset._indices is not None:  # a select() or shuffle() saved as an index mapping
        dataset = dataset.flatten_indices()
    values = dataset.data.column(column)
    if pyarrow.types.is_struct(values.type):  # {"bytes", "path"}: read the paths only, not every image's bytes
        values = pyarrow.compute.struct_field(values, "path")
    paths = [_row_path(value) for value in values.to_pylist()]
    items = [Item(str(index), path or f"{split}[{index}]", index + 1, str(index)) for index, path in enumerate(paths)]
    return ImageSource("dataset", description, name, split, column), items


def _row_path(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("path")
    return value if isinstance(value, str) and value else None


# -- decoding ----------------------------------------------------------------------------------------------------


def decode(source: ImageSource, item: Item, max_pixels: int | None = None) -> Image.Image:
    """Read and decode one item's image through :func:`pipeline.images.load_image` (its checks and pixel limit).

    Raises:
        ValueError: the file is missing, unreadable, not an image or too large; the message says which.
    """
    if source.kind == "files":
        try:
            return load_image(item.location, max_pixels=max_pixels)
        except OSError as error:  # e.g. a file without read permission
            raise ValueError(f"could not read {item.file!r}: {error.strerror or error}") from None
    row = open_dataset(source.dataset, source.split, source.column)[int(item.location)][source.column]
    if isinstance(row, dict) and row.get("bytes"):
        return load_image(row["bytes"], max_pixels=max_pixels)
    if isinstance(row, Image.Image):
        return load_image(row, max_pixels=max_pixels)
    path = _row_path(row)
    if path is None:
        raise ValueError(f"data set row {item.location} has no image in column {source.column!r}")
    return load_image(path, max_pixels=max_pixels)
