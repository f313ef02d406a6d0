"""The two engines that run a batch: a local one (DataLoader workers decode while the models run; under
``accelerate launch`` each process takes its share) and Ray Data (decoding as tasks, the models in an actor pool).

Both turn items into the same records with :func:`pipeline.batch.records.analyse` and hand them to the same
:class:`~pipeline.batch.store.OutputStore`; the Ray engine's records come back to the driver, which writes them, so
the workers need no shared file system.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from .inputs import ImageSource, Item, decode
from .records import analyse, error_record
from .store import OutputStore

#: CPUs a Ray decoding task asks for: less than an actor's, which also keeps Ray from fusing decoding into the actors.
RAY_DECODE_CPUS = 0.5


def load_models(models: Mapping[str, Any]) -> Any:
    """The :class:`~pipeline.combined.ImageAnalysisPipeline` of a run's model settings."""
    from transformers.utils import logging as transformers_logging

    from ..combined import load_pipeline

    transformers_logging.disable_progress_bar()
    return load_pipeline(
        models["captioner"],
        models["segmenter"],
        device=models["device"],
        batch_size=models["batch_size"],
        max_pixels=models["max_pixels"],
        profile=models["profile"],
        stuff=models.get("stuff"),
    )


#: One decoded item: ``(item, image, None, decode_ms)``, or ``(item, None, error, decode_ms)``.
Decoded = tuple[Item, Image.Image | None, str | None, float]


def decode_timed(source: ImageSource, item: Item, max_pixels: int | None) -> Decoded:
    """:func:`pipeline.batch.inputs.decode` of one item, its error caught, its time measured."""
    tick = time.perf_counter()
    try:
        image, error = decode(source, item, max_pixels), None
    except ValueError as failure:
        image, error = None, str(failure)
    return item, image, error, (time.perf_counter() - tick) * 1000.0


def analyse_decoded(
    pipe: Any, decoded: Sequence[Decoded], options: Mapping[str, Any], category_of: Mapping[str, int] | None
) -> list[tuple[dict[str, Any], bytes]]:
    """Records of a batch of decoded items: the images analysed in one call, the errors recorded."""
    good = [(item, image, ms) for item, image, error, ms in decoded if error is None]
    records = analyse(pipe, [item for item, _, _ in good], [image for _, image, _ in good], options, category_of)
    for (record, _), (_, _, ms) in zip(records, good):
        record["timings_ms"]["decode"] = round(ms, 1)  # the worker's read and decode, not the pipeline's check
    return records + [(error_record(item, error), b"") for item, _, error, _ in decoded if error is not None]


# -- local (and accelerate) ------------------------------------------------------------------------------------


class DecodedImages(torch.utils.data.Dataset):
    """Items decoded by :func:`decode_timed`, for a DataLoader."""

    def __init__(self, source: ImageSource, items: Sequence[Item], max_pixels: int | None):
        self.source, self.items, self.max_pixels = source, list(items), max_pixels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Decoded:
        return decode_timed(self.source, self.items[index], self.max_pixels)


def run_local(
    models: Mapping[str, Any],
    options: Mapping[str, Any],
    source: ImageSource,
    items: Sequence[Item],
    store: OutputStore,
    category_of: Mapping[str, int] | None,
    *,
    num_workers: int,
    progress: Any,
    on_ready: Callable[[], None] = lambda: None,
) -> int:
    """Analyse ``items`` in this process, ``num_workers`` DataLoader workers decoding ahead; returns how many.

    ``on_ready`` is called once the models are loaded (the progress bar restarts then, so that its rate is the
    analysis's own)."""
    if not items:
        return 0
    loader = torch.utils.data.DataLoader(
        DecodedImages(source, items, models["max_pixels"]),
        batch_size=models["batch_size"],
        num_workers=num_workers,
        collate_fn=list,
    )
    batches = iter(loader)  # the workers start decoding while the models load
    pipe = load_models(models)
    on_ready()
    progress.reset(total=len(items))
    try:
        for batch in batches:
            store.write_part(analyse_decoded(pipe, batch, options, category_of))
            progress.update(len(batch))
    finally:
        pipe.close()
    return len(items)


# -- Ray Data --------------------------------------------------------------------------------------------------


def _decode_row(row: dict[str, Any], source: dict[str, Any], max_pixels: int | None) -> dict[str, Any]:
    item = Item(row["key"], row["file"], int(row["image_id"]), row["location"])
    _, image, error, ms = decode_timed(ImageSource(**source), item, max_pixels)
    pixels = np.zeros((0, 0, 3), dtype=np.uint8) if image is None else np.asarray(image)
    return {**row, "pixels": pixels, "error": error or "", "decode_ms": ms}


class RayAnalyser:
    """A Ray Data actor: one copy of the models, records of each batch (``map_batches``)."""

    def __init__(self, models: dict[str, Any], options: dict[str, Any], category_of: dict[str, int] | None):
        self.pipe = load_models(models)
        self.options, self.category_of = options, category_of

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        decoded = []
        columns = ("key", "file", "image_id", "location", "pixels", "error", "decode_ms")
        for key, file, image_id, location, pixels, error, ms in zip(*(batch[column] for column in columns)):
            item = Item(str(key), str(file), int(image_id), str(location))
            image = None if error else Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode="RGB")
            decoded.append((item, image, str(error) or None, float(ms)))
        records = analyse_decoded(self.pipe, decoded, self.options, self.category_of)
        return {
            "record": np.array([json.dumps(record) for record, _ in records], dtype=object),
            "png": np.array([png for _, png in records], dtype=object),
        }


def run_ray(
    models: Mapping[str, Any],
    options: Mapping[str, Any],
    source: ImageSource,
    items: Sequence[Item],
    store: OutputStore,
    category_of: Mapping[str, int] | None,
    *,
    address: str | None,
    actors: int,
    cpus_per_actor: float,
    gpus_per_actor: float,
    progress: Any,
    on_ready: Callable[[], None] = lambda: None,
) -> int:
    """Analyse ``items`` as a Ray Data pipeline; the driver (this process) writes the records. Returns how many.

    Uses the Ray instance this process has already started, else starts one (``address`` None) or joins a cluster
    (``address`` ``"auto"`` or ``"ray://HOST:10001"``), and shuts down what it started. ``on_ready`` is called once
    Ray is up, so that images/s counts the actors' start-up too.
    """
    if not items:
        return 0
    import ray
    import ray.data

    started = not ray.is_initialized()
    if started:
        # No address: a Ray of this job's own ("local"), not whatever cluster /tmp/ray/ray_current_cluster last
        # named (a bare ray.init() joins that one, and fails when it was killed without `ray stop`).
        ray.init(address=address or "local", logging_level="WARNING", log_to_driver=False)
    on_ready()
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False  # the job's own bar counts images
        dataset = ray.data.from_items([item.to_dict() for item in items])
        dataset = dataset.map(
            _decode_row,
            fn_kwargs={"source": source.to_dict(), "max_pixels": models["max_pixels"]},
            num_cpus=RAY_DECODE_CPUS,
        )
        dataset = dataset.map_batches(
            RayAnalyser,
            fn_constructor_kwargs={"models": dict(models), "options": dict(options), "category_of": category_of},
            batch_size=models["batch_size"],
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus_per_actor,
            num_gpus=gpus_per_actor,
            batch_format="numpy",
        )
        done = 0
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            records = [(json.loads(record), bytes(png)) for record, png in zip(batch["record"], batch["png"])]
            store.write_part(records)
            progress.update(len(records))
            done += len(records)
    finally:
        if started:
            ray.shutdown()
    return done
