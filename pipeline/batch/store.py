"""The output folder of a batch run: parts written atomically as the work goes, resume, and the merged outputs.

Layout of ``DIR``::

    run.json            the models, options and categories of the run (a rerun must match them)
    parts/*.jsonl       one file per analysed batch: a header line (key, image id, ok of each record), then records
    panoptic/*.png      one COCO panoptic PNG per image (written before the part that names it)
    captions.jsonl      merged: one line per image (file, image_id, caption, objects, description, timings)
    instances.json      merged: COCO results format (image_id, category_id, segmentation RLE, bbox, score)
    panoptic.json       merged: COCO panoptic format (images, annotations with segments_info, categories: the
                        things with isthing 1, a stuff model's regions with isthing 0)
    errors.jsonl        merged: images that could not be read, with the reason
    summary.json        counts, images/s, models, profile, machine, categories

Every file is written to a temporary name and then renamed (``os.replace``), so a killed process leaves whole parts
or none, and at worst a stale ``.*.tmp`` that the next run removes. A rerun skips the keys of successful records;
an image whose record is an error is tried again. Merging reads the parts in image-id order and keeps one record per
image (a success over an error), so nothing is duplicated. One run at a time per ``DIR``.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

#: The merged outputs, in DIR.
OUTPUTS = ("captions.jsonl", "instances.json", "panoptic.json", "errors.jsonl", "summary.json")
#: What a rerun into the same DIR must repeat exactly (other settings, such as the batch size, may change).
RUN_KEYS = ("captioner", "segmenter", "stuff", "profile", "options", "categories")


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO]:
    """Write ``path`` through a temporary file in its folder, renamed over it only once complete and synced."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    handle = open(temporary, mode, **({} if "b" in mode else {"encoding": "utf-8"}))
    try:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.replace(temporary, path)
    except BaseException:
        handle.close()
        temporary.unlink(missing_ok=True)
        raise


class OutputStore:
    """The output folder ``DIR`` of a batch run (see the module docstring).

    Args:
        directory (str | Path): the folder; created by :meth:`prepare`.
        rank (int, default 0): this process's index, part of every part's name.
    """

    def __init__(self, directory: str | Path, *, rank: int = 0):
        self.directory = Path(directory)
        self.parts = self.directory / "parts"
        self.panoptic = self.directory / "panoptic"
        self.rank = rank
        self._token = f"{time.time_ns():020d}-{os.getpid()}-r{rank:03d}"
        self._written = 0

    # -- before the work ---------------------------------------------------------------------------------------
    def prepare(self, run: Mapping[str, Any]) -> None:
        """Create the folder, remove stale temporary files, and record ``run`` or check it against the first run's.

        Raises:
            ValueError: ``DIR`` holds a run with other models, options or categories.
        """
        for folder in (self.directory, self.parts, self.panoptic):
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
        saved_path = self.directory / "run.json"
        if saved_path.is_file():
            saved = json.loads(saved_path.read_text(encoding="utf-8"))
            changed = [key for key in RUN_KEYS if saved.get(key) != run.get(key)]
            if changed:
                what = "; ".join(f"{key} was {saved.get(key)!r}, now {run.get(key)!r}" for key in changed)
                raise ValueError(
                    f"{self.directory} holds a run with other settings ({what}): "
                    "rerun with the same settings to resume it, or choose another --output"
                )
        else:
            with atomic_file(saved_path) as handle:
                json.dump({key: run.get(key) for key in RUN_KEYS}, handle, indent=1)

    def run_settings(self) -> dict[str, Any]:
        """What :meth:`prepare` recorded."""
        return json.loads((self.directory / "run.json").read_text(encoding="utf-8"))

    def finished(self) -> dict[str, int]:
        """The keys of images with a successful record, and their image ids (read from the parts' headers only)."""
        done: dict[str, int] = {}
        for _, header in self._headers():
            for key, image_id, ok in header["images"]:
                if ok:
                    done[key] = image_id
        return done

    # -- during the work ---------------------------------------------------------------------------------------
    def write_part(self, records: Sequence[tuple[dict[str, Any], bytes]]) -> Path | None:
        """Save one batch: its panoptic PNGs, then its records as one part file (each atomically)."""
        if not records:
            return None
        for record, png in records:
            if "error" not in record:
                with atomic_file(self.panoptic / record["panoptic_png"], "wb") as handle:
                    handle.write(png)
        ordered = sorted((record for record, _ in records), key=lambda record: record["image_id"])
        header = {"images": [[r["key"], r["image_id"], "error" not in r] for r in ordered]}
        self._written += 1
        path = self.parts / f"{self._token}-{self._written:06d}.jsonl"
        with atomic_file(path) as handle:
            handle.write(json.dumps(header) + "\n")
            handle.writelines(json.dumps(record) + "\n" for record in ordered)
        return path

    # -- after the work ----------------------------------------------------------------------------------------
    def _headers(self) -> list[tuple[Path, dict[str, Any]]]:
        headers = []
        for path in sorted(self.parts.glob("*.jsonl")):
            with open(path, encoding="utf-8") as handle:
                headers.append((path, json.loads(handle.readline())))
        return headers

    def records(self) -> Iterator[dict[str, Any]]:
        """Every image's final record in image-id order: its first successful record, else its last error."""
        current: list[dict[str, Any]] = []
        for record in _merge_parts(self._headers()):
            if current and record["image_id"] != current[0]["image_id"]:
                yield _choose(current)
                current = []
            current.append(record)
        if current:
            yield _choose(current)

    def merge(self, categories: Sequence[Mapping[str, Any]] | None, summary: Mapping[str, Any]) -> dict[str, Any]:
        """Write the merged outputs from the parts and return the summary.

        Args:
            categories (Sequence[Mapping] | None): ``{"id", "name"}`` of the category ids in use; None lists the
                segmenter's labels found in the records, by their label ids.
            summary (Mapping): run facts to include in ``summary.json`` (engine, models, machine, ...).
        """
        counts = {"images": 0, "errors": 0, "instances": 0, "segments": 0}
        found: dict[int, str] = {}
        stuff: dict[int, str] = {}  # the stuff categories the segments use (isthing 0 in panoptic.json)
        panoptic_images = []
        with (
            atomic_file(self.directory / "captions.jsonl") as captions,
            atomic_file(self.directory / "errors.jsonl") as errors,
            atomic_file(self.directory / "instances.json") as instances,
            atomic_file(self.directory / "panoptic.json") as panoptic,
        ):
            instances.write("[")
            panoptic.write('{"annotations": [')
            for record in self.records():
                if "error" in record:
                    counts["errors"] += 1
                    errors.write(json.dumps({k: record[k] for k in ("file", "image_id", "error")}) + "\n")
                    continue
                counts["images"] += 1
                captions.write(json.dumps(caption_line(record)) + "\n")
                for instance in record["instances"]:
                    found.setdefault(instance["label_id"], instance["label"])
                    if instance["category_id"] is None:
                        continue
                    keep = ("image_id", "category_id", "segmentation", "bbox", "score")
                    detection = {**instance, "image_id": record["image_id"]}
                    instances.write(("," if counts["instances"] else "") + "\n")
                    instances.write(json.dumps({key: detection[key] for key in keep}))
                    counts["instances"] += 1
                counts["segments"] += len(record["segments"])
                for segment in record["segments"]:
                    if not segment.get("isthing", True):
                        stuff.setdefault(segment["category_id"], segment["label"])
                annotation = {
                    "image_id": record["image_id"],
                    "file_name": record["panoptic_png"],
                    "segments_info": record["segments"],
                }
                panoptic.write(("," if panoptic_images else "") + "\n" + json.dumps(annotation))
                panoptic_images.append({"id": record["image_id"], "file_name": record["file"], **_size(record)})
            instances.write("\n]\n")
            used = (
                list(categories)
                if categories is not None
                else [{"id": i, "name": n} for i, n in sorted(found.items())]
            )
            images = json.dumps(panoptic_images)
            things = [{"id": c["id"], "name": c["name"], "isthing": 1, "supercategory": ""} for c in used]
            thing_ids = {c["id"] for c in used}
            kinds = things + [
                {"id": i, "name": n, "isthing": 0, "supercategory": "stuff"}
                for i, n in sorted(stuff.items())
                if i not in thing_ids
            ]
            panoptic.write(f'\n], "images": {images}, "categories": {json.dumps(kinds)}}}\n')
        full = {**summary, "counts": counts, "categories": used, "outputs": list(OUTPUTS)}
        with atomic_file(self.directory / "summary.json") as handle:
            json.dump(full, handle, indent=1)
        return full


def _size(record: Mapping[str, Any]) -> dict[str, int]:
    return {"width": record["width"], "height": record["height"]}


def caption_line(record: Mapping[str, Any]) -> dict[str, Any]:
    """What ``captions.jsonl`` keeps of a record."""
    line = {key: record[key] for key in ("file", "image_id", "caption")}
    if "description" in record:
        line["description"] = record["description"]
    line["objects"] = record["objects"]
    line["instances"] = len(record["instances"])
    line["width"], line["height"] = record["width"], record["height"]
    line["timings_ms"] = record["timings_ms"]
    return line


def _choose(records: list[dict[str, Any]]) -> dict[str, Any]:
    keys = {record["key"] for record in records}
    if len(keys) > 1:
        raise ValueError(f"image id {records[0]['image_id']} belongs to several images {sorted(keys)}")
    return next((record for record in records if "error" not in record), records[-1])


def _read_part(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        handle.readline()  # the header
        for line in handle:
            yield json.loads(line)


def _merge_parts(headers: list[tuple[Path, dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """The records of all parts in image-id order (each part is sorted), opening a part only once its first image
    is next, so that only overlapping parts are open at a time."""
    pending = sorted(
        ((header["images"][0][1], order, path) for order, (path, header) in enumerate(headers) if header["images"]),
        reverse=True,
    )
    heap: list[tuple[int, int, int, dict[str, Any], Iterator[dict[str, Any]]]] = []
    sequence = 0

    def push(order: int, records: Iterator[dict[str, Any]]) -> None:
        nonlocal sequence
        record = next(records, None)
        if record is not None:
            sequence += 1
            heapq.heappush(heap, (record["image_id"], order, sequence, record, records))

    while pending or heap:
        while pending and (not heap or pending[-1][0] <= heap[0][0]):
            _, order, path = pending.pop()
            push(order, _read_part(path))
        _, order, _, record, records = heapq.heappop(heap)
        yield record
        push(order, records)
