"""Benchmark: this project's pipeline (full and fast profiles) against the naive way, side by side, in one run.

The naive way is what a first script does: ``BlipProcessor`` + ``BlipForConditionalGeneration.generate``, then
torchvision's ``maskrcnn_resnet50_fpn_v2`` with its default settings, one after the other, each model loaded once.
Ours is :func:`pipeline.load_pipeline` with ``profile="full"`` (same outputs) and ``profile="fast"``.

The released weights cannot always be downloaded, so by default the benchmark builds full-size architectures with
random weights and loads them through the real loading path: a BLIP-base-sized ``save_pretrained`` directory read by
``pipeline.load_captioner(dir)``, and a random ``maskrcnn_resnet50_fpn_v2`` state dict saved under torchvision's
checkpoint file name in a temporary ``$TORCH_HOME/hub/checkpoints/``, read by
``pipeline.load_segmenter("maskrcnn-v2")`` and by torchvision's own builder for the naive way. Random weights detect
junk, so both sides keep the same number of detections (``--detections``) and generate the same number of tokens
(``--tokens``, forced with ``min_new_tokens``).

Run it (about 15-25 minutes on 2 CPU cores; the README table comes from this)::

    HF_HUB_OFFLINE=1 python space/benchmark/bench.py --out bench-results

The quality cost of the fast profile, on the held-out shapes test split with the trained ``shapes`` models::

    python -m train.shapes --output_dir data/shapes-test --seed 1 --train 0 --val 0 --test 300
    python space/benchmark/bench.py --quality data/shapes-test/test --out bench-results

The batch job (``python -m pipeline.batch``) against a per-image loop over the same N pictures, full-size models
(``--tiny`` for tiny ones, ``--bulk-models shapes`` for the trained shapes models), each profile of ``--profiles``::

    HF_HUB_OFFLINE=1 python space/benchmark/bench.py --bulk 16 --profiles full --out bench-results

What a stuff model adds to a photo's ``fast`` analysis (a random SegFormer-b0, ADE20K's 150 classes, saved with
``save_pretrained`` and read by ``pipeline.load_stuff(dir)``, beside the same captioner and segmenter), per image::

    HF_HUB_OFFLINE=1 python space/benchmark/bench.py --stuff-cost 8 --out bench-results

In seconds, on tiny random models (what the tests run)::

    python space/benchmark/bench.py --tiny --quick --out /tmp/bench

It prints, for the naive way and each profile: per-image latency p50/p95 (caption, segment, total), images/s on a
batch, live frames/s over a simulated 640x480 webcam stream, peak memory (RSS) and the ratio to naive; checks that
the full profile's captions and instances agree with the naive way's; and writes ``bench.json`` and ``bench.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

if __package__ in (None, ""):  # run as a script (python space/benchmark/bench.py): the library is at the root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.captioning import caption_sentence  # noqa: E402
from pipeline.machine import load_average, machine_info  # noqa: E402
from pipeline.speed import PROFILES as SPEED_PROFILES  # noqa: E402
from pipeline.speed import live_profile, profile_summary, segmenter_view  # noqa: E402

PROFILES = ("full", "fast")
FRAME_SIZE = (640, 480)
#: Words for the tiny model's vocabulary; the full-size one pads the vocabulary to BLIP-base's 30,524 tokens.
WORDS = "a an the of in on picture photo red blue green circle square triangle and to left right".split()
BLIP_BASE_VOCAB = 30524


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python space/benchmark/bench.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench-results", help="folder for bench.json and bench.png")
    parser.add_argument("--images", type=int, default=8, help="images for the per-image latency (default 8)")
    parser.add_argument("--batch", type=int, default=16, help="images in the throughput batch (default 16)")
    parser.add_argument("--stream-seconds", type=float, default=30.0, help="simulated webcam stream length per side")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT of the test images and webcam frames")
    parser.add_argument("--tokens", type=int, default=20, help="new tokens every captioner generates (default 20)")
    parser.add_argument("--detections", type=int, default=10, help="detections kept per image by every segmenter")
    parser.add_argument(
        "--caption-every", type=float, default=2.0, help="live view: caption refresh cadence (s; the app's default)"
    )
    parser.add_argument("--quick", action="store_true", help="2 images, batch of 2, 2 s streams: checks, not figures")
    parser.add_argument("--tiny", action="store_true", help="tiny random models instead of full-size ones")
    parser.add_argument(
        "--profiles",
        default=",".join(PROFILES),
        help="our profiles to measure (default full,fast; with --quality also live)",
    )
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    parser.add_argument(
        "--memory-sizes",
        default="1,12,40",
        help="megapixels of the photos for the peak-memory-by-image-size rows (default 1,12,40; --quick: 1)",
    )
    parser.add_argument(
        "--quality",
        metavar="SPLIT_DIR",
        help="instead of timing: each profile's quality on a shapes split (python -m train.shapes writes one)",
    )
    parser.add_argument(
        "--captioner", default="shapes", help="--quality: captioner name or directory (default shapes)"
    )
    parser.add_argument(
        "--segmenter", default="shapes", help="--quality: segmenter name or directory (default shapes)"
    )
    parser.add_argument("--limit", type=int, default=None, help="--quality: evaluate only the first N images")
    parser.add_argument(
        "--bulk",
        type=int,
        metavar="N",
        help="instead of the timing: the batch job against a per-image loop over N pictures (bulk.json)",
    )
    parser.add_argument(
        "--bulk-models",
        choices=("built", "shapes"),
        default="built",
        help="--bulk: the built random-weight models (full size, or --tiny) or the trained shapes models",
    )
    parser.add_argument("--bulk-batch-size", type=int, default=8, help="--bulk: the batch job's --batch-size")
    parser.add_argument(
        "--stuff-cost", type=int, metavar="N", help="instead of the timing: a stuff model's cost on N photos (fast)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.batch, args.stream_seconds = (
            min(args.images, 2),
            min(args.batch, 2),
            min(args.stream_seconds, 2.0),
        )
        args.memory_sizes = "1"
    try:
        args.memory_sizes = [float(size) for size in args.memory_sizes.split(",") if size.strip()]
    except ValueError:
        args.memory_sizes = [-1.0]
    if any(not 0 < size <= 40 for size in args.memory_sizes):
        parser.error("--memory-sizes must be megapixels between 0 and 40 (the pixel limit), e.g. 1,12,40")
    if args.bulk is not None and not 1 <= args.bulk <= 10000:
        parser.error(f"--bulk must be between 1 and 10000 pictures, got {args.bulk}")
    for name in ("images", "batch", "tokens", "detections", "bulk_batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if args.stream_seconds <= 0:
        parser.error(f"--stream-seconds must be positive, got {args.stream_seconds}")
    try:
        args.size = tuple(int(side) for side in args.size.lower().split("x"))
    except ValueError:
        args.size = ()
    if len(args.size) != 2 or min(args.size) < 16:
        parser.error("--size must be WIDTHxHEIGHT with both sides at least 16, e.g. 640x480")
    args.profiles = [name.strip() for name in args.profiles.split(",") if name.strip()]
    allowed = tuple(SPEED_PROFILES) if args.quality else PROFILES  # timing runs the live profile in its stream
    unknown = sorted(set(args.profiles) - set(allowed))
    if unknown:
        parser.error(f"--profiles must be among {allowed}, got {unknown}")
    return args


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


@contextlib.contextmanager
def peak_rss(record: dict[str, float], key: str, interval: float = 0.02) -> Iterator[None]:
    """Track the largest resident set size of this process while the block runs, in MiB (max over repeats)."""
    peak = [rss_mb()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(interval):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield
    finally:
        done.set()
        sampler.join()
        record[key] = max(record.get(key, 0.0), peak[0], rss_mb())


# -- models ------------------------------------------------------------------------------------------------------


def build_models(root: Path, *, tiny: bool) -> dict[str, Any]:
    """Write random-weight models that load through the real loading path; say what was built.

    Returns:
        dict with ``captioner`` (a ``save_pretrained`` directory), ``segmenter`` (a catalog name or checkpoint
        directory), ``torch_home`` (set in ``os.environ`` for the run) and ``notes`` (lines for the report).
    """
    from pipeline.builders import build_blip, build_maskrcnn
    from pipeline.checkpoints import save_segmenter
    from pipeline.hub import torchvision_checkpoint

    torch.manual_seed(0)
    captioner_dir, notes = root / "blip", []
    if tiny:
        small = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 37}
        blip, processor = build_blip(WORDS, image_size=32, patch_size=8, vision=small, text=small)
        notes.append(
            "tiny random BLIP (32 px, 1 layer each side) saved with save_pretrained, loaded by load_captioner"
        )
    else:
        # BlipConfig's defaults are the blip-image-captioning-base architecture; build_blip sets the vision
        # initializer_range to 0.02 (the default 1e-10 yields denormals that slow the encoder and flatter int8).
        fillers = [f"word{index}" for index in range(BLIP_BASE_VOCAB - 5 - len(WORDS))]
        blip, processor = build_blip(WORDS + fillers)
        notes.append(
            "random-weight BLIP-base architecture (BlipConfig defaults, 384 px ViT-B/16, vision initializer_range "
            f"0.02, {BLIP_BASE_VOCAB}-token vocabulary, {sum(p.numel() for p in blip.parameters()) / 1e6:.0f}M "
            f"parameters) saved with save_pretrained to {captioner_dir}, loaded by pipeline.load_captioner(dir)"
        )
    blip.save_pretrained(captioner_dir)
    processor.save_pretrained(captioner_dir)
    del blip

    torch_home = root / "torch-home"
    os.environ["TORCH_HOME"] = str(torch_home)
    if tiny:
        segmenter = root / "segmenter"
        # small heads too, so that a test runs the whole benchmark in seconds
        settings = {
            "min_size": 128,
            "max_size": 160,
            "fpn_channels": 32,
            "box_representation": 32,
            "mask_layers": [32],
        }
        categories = ["__background__", "circle", "square", "triangle"]
        model = build_maskrcnn("maskrcnn_fpn", num_classes=len(categories), backbone="resnet18", **settings)
        save_segmenter(model, segmenter, categories=categories, architecture="maskrcnn_fpn", model_kwargs=settings)
        notes.append("tiny random Mask R-CNN (resnet18 FPN, 128 px) checkpoint, loaded by load_segmenter(dir)")
        segmenter_name = str(segmenter)
    else:
        checkpoint = torchvision_checkpoint("maskrcnn_resnet50_fpn_v2")
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        model = build_maskrcnn("maskrcnn_resnet50_fpn_v2", num_classes=91)
        torch.save(model.state_dict(), checkpoint)
        notes.append(
            f"random-weight maskrcnn_resnet50_fpn_v2 state dict saved as {checkpoint} (TORCH_HOME={torch_home}), "
            'loaded by pipeline.load_segmenter("maskrcnn-v2") and by torchvision\'s builder with its COCO weights enum'
        )
        segmenter_name = "maskrcnn-v2"
    del model
    gc.collect()
    return {
        "captioner": str(captioner_dir),
        "segmenter": segmenter_name,
        "torch_home": str(torch_home),
        "notes": notes,
    }


class NaiveWay:
    """The models called directly, one after the other, each loaded once: the baseline.

    Args:
        captioner_dir (str): a BLIP ``save_pretrained`` directory.
        segmenter (str): ``"maskrcnn-v2"`` (torchvision's builder and weights enum) or a checkpoint directory.
        tokens (int): new tokens to generate (forced).
        detections (int): ``box_detections_per_img``.
    """

    name = "naive"

    def __init__(self, captioner_dir: str, segmenter: str, *, tokens: int, detections: int):
        from torchvision.transforms.functional import pil_to_tensor
        from transformers import BlipForConditionalGeneration, BlipProcessor

        self.processor = BlipProcessor.from_pretrained(captioner_dir)
        self.captioner = BlipForConditionalGeneration.from_pretrained(captioner_dir).eval()
        if segmenter == "maskrcnn-v2":
            from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights, maskrcnn_resnet50_fpn_v2

            weights = MaskRCNN_ResNet50_FPN_V2_Weights.DEFAULT
            self.segmenter = maskrcnn_resnet50_fpn_v2(weights=weights, box_detections_per_img=detections).eval()
            self.to_tensor = weights.transforms()
        else:
            from pipeline.checkpoints import load_segmenter_checkpoint

            model, _ = load_segmenter_checkpoint(segmenter, model_kwargs={"box_detections_per_img": detections})
            self.segmenter = model.eval()
            self.to_tensor = lambda image: pil_to_tensor(image).float() / 255.0
        self.tokens = tokens

    def caption(self, image: Image.Image) -> str:
        with torch.inference_mode():
            inputs = self.processor(images=image, return_tensors="pt")
            ids = self.captioner.generate(**inputs, max_new_tokens=self.tokens, min_new_tokens=self.tokens)
        return self.processor.decode(ids[0], skip_special_tokens=True)

    def segment(self, image: Image.Image) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            return self.segmenter([self.to_tensor(image)])[0]

    def __call__(self, image: Image.Image) -> dict[str, Any]:
        start = time.perf_counter()
        caption = self.caption(image)
        middle = time.perf_counter()
        raw = self.segment(image)
        end = time.perf_counter()
        timings = {"caption": (middle - start) * 1e3, "segment": (end - middle) * 1e3, "total": (end - start) * 1e3}
        return {"caption": caption, "raw": raw, "timings_ms": timings}


class OurWay:
    """:func:`pipeline.load_pipeline` with one profile, called with the benchmark's options."""

    def __init__(self, captioner_dir: str, segmenter: str, *, profile: str, tokens: int, detections: int):
        from pipeline.combined import load_pipeline

        self.name = profile
        self.pipe = load_pipeline(
            captioner_dir,
            segmenter,
            device="cpu",
            profile=profile,
            segmenter_model_kwargs={"box_detections_per_img": detections},
        )
        # threshold 0: keep every detection the model returns, so both sides post-process the same number.
        self.options = {"max_new_tokens": tokens, "generate_kwargs": {"min_new_tokens": tokens}, "threshold": 0.0}

    def __call__(self, images: Any) -> Any:
        return self.pipe(images, **self.options)


# -- inputs ------------------------------------------------------------------------------------------------------


def scene(index: int, size: tuple[int, int] = FRAME_SIZE, *, shift: int = 0) -> Image.Image:
    """A deterministic photo-like test picture: a gradient, noise and coloured shapes (``shift`` moves them)."""
    width, height = size
    rng = np.random.default_rng(index)
    ramp = np.linspace(40, 200, width, dtype=np.float32)[None, :, None]
    pixels = ramp + rng.normal(0, 18, size=(height, width, 3)).astype(np.float32)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for shape in range(4):
        x, y = rng.integers(0, width - width // 4), rng.integers(0, height - height // 4)
        x = (x + shift * (shape + 1)) % (width - width // 5)
        w, h = rng.integers(width // 10, width // 4), rng.integers(height // 10, height // 4)
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        [draw.ellipse, draw.rectangle][shape % 2]([x, y, x + w, y + h], fill=colour)
    return image


# -- measurements ------------------------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {"p50": float(np.percentile(array, 50)), "p95": float(np.percentile(array, 95)), "n": len(values)}


def simulate_stream(
    process: Callable[[Image.Image, float], float | None],
    seconds: float,
    *,
    fps: int = 30,
    size: tuple[int, int] = FRAME_SIZE,
) -> dict[str, Any]:
    """Feed a simulated webcam (``fps`` frames/s of ``size``, moving shapes) to ``process``; the newest frame wins.

    ``process(frame, captured_at)`` handles one frame (``captured_at`` on the ``time.perf_counter`` clock) and
    returns the age in seconds of the caption shown with it, or None before the first caption. Frames that arrive
    while it runs are never queued: the next call gets the newest.

    Returns:
        dict with ``frames`` processed, ``seconds``, ``fps`` and ``caption_age_s`` (p50/p95/max over the frames).
    """
    frames = [scene(1000, size, shift=step * 6) for step in range(8)]  # the camera's pictures, cycled
    start, processed, ages = time.perf_counter(), 0, []
    while (now := time.perf_counter()) - start < seconds:
        newest = int((now - start) * fps)  # the camera has produced this many frames by now
        age = process(frames[newest % len(frames)], start + newest / fps)
        processed += 1
        if age is not None:
            ages.append(age)
    elapsed = time.perf_counter() - start
    report = {"frames": processed, "seconds": round(elapsed, 2), "fps": processed / elapsed}
    if ages:
        report["caption_age_s"] = {**percentiles(ages), "max": max(ages)}
    return report


def stream_side(name: str, side: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Live frames/s of one side: the naive way and ``full`` caption and segment every frame; ``fast`` runs the
    app's live path, :class:`pipeline.stream.LiveStream`, with :func:`pipeline.speed.segmenter_view` of the CPU's
    :func:`pipeline.speed.live_profile`."""
    if name != "fast":

        def whole(frame: Image.Image, captured_at: float) -> float:
            side(frame)
            return time.perf_counter() - captured_at

        return {**simulate_stream(whole, args.stream_seconds, size=args.size), "how": "caption + segment every frame"}

    from pipeline.stream import LiveStream

    def caption(image: Image.Image) -> dict[str, str]:
        options = {key: side.options[key] for key in ("max_new_tokens", "generate_kwargs")}
        return side.pipe.captioner(image, **options)

    live = LiveStream(
        segmenter_view(side.pipe.segmenter, live_profile(side.pipe.segmenter.device)),
        caption,
        threshold=side.options["threshold"],
        caption_every_s=args.caption_every,
        max_age_s=3600.0,  # the simulation hands over only the newest frame already
        clock=time.perf_counter,
    )
    try:
        report = simulate_stream(
            lambda frame, captured_at: live.process(frame, captured_at=captured_at).caption_age_s,
            args.stream_seconds,
            size=args.size,
        )
        live.wait_for_caption()
    finally:
        live.close()
    report["how"] = (
        f"pipeline.stream.LiveStream: frames shrunk to {live.max_side} px, segmenter_view(segmenter, 'live') on every "
        f"frame, the fast captioner in the background every {args.caption_every} s or on a scene change"
    )
    return report


# -- agreement ---------------------------------------------------------------------------------------------------


def compare(naive: dict[str, Any], ours: dict[str, Any], *, box_atol: float = 0.05, score_atol: float = 1e-4) -> dict:
    """Our result against the naive way's on one image: same caption, same instances within float tolerance.

    Instances are matched in score order; boxes within ``box_atol`` pixels, scores within ``score_atol``, labels
    equal and mask IoU at least 0.99.
    """
    raw = naive["raw"]
    order = torch.argsort(raw["scores"], descending=True, stable=True)
    instances = ours["instances"]
    # Our captions are the model's text written as a sentence (capital letter, full stop).
    same_caption = caption_sentence(naive["caption"]) == ours["caption"]
    result = {"caption": same_caption, "count": len(order) == len(instances)}
    ious, box_error, score_error, labels = [], 0.0, 0.0, True
    for index, instance in zip(order.tolist(), instances, strict=False):
        labels &= int(raw["labels"][index]) == instance["label_id"]
        box_error = max(box_error, float((raw["boxes"][index] - torch.tensor(instance["box"])).abs().max()))
        score_error = max(score_error, abs(float(raw["scores"][index]) - instance["score"]))
        theirs, mine = raw["masks"][index, 0].numpy() > 0.5, np.asarray(instance["mask"]) > 0
        union = np.logical_or(theirs, mine).sum()
        ious.append(1.0 if union == 0 else float(np.logical_and(theirs, mine).sum() / union))
    result.update(
        labels=bool(labels),
        max_box_error_px=box_error,
        max_score_error=score_error,
        min_mask_iou=min(ious) if ious else 1.0,
    )
    result["agree"] = bool(
        result["caption"]
        and result["count"]
        and labels
        and box_error <= box_atol
        and score_error <= score_atol
        and result["min_mask_iou"] >= 0.99
    )
    return result


def summarise_agreement(rows: list[dict]) -> dict[str, Any]:
    return {
        "images": len(rows),
        "all_agree": all(row["agree"] for row in rows),
        "same_captions": sum(row["caption"] for row in rows),
        "same_instance_counts": sum(row["count"] for row in rows),
        "max_box_error_px": max(row["max_box_error_px"] for row in rows),
        "max_score_error": max(row["max_score_error"] for row in rows),
        "min_mask_iou": min(row["min_mask_iou"] for row in rows),
    }


# -- the run -----------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the models, measure every side, check agreement; return the report (also what ``bench.json`` holds)."""
    report: dict[str, Any] = {
        "command": "python space/benchmark/bench.py " + " ".join(sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine_info(),
        "load_average_start": load_average(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "profiles": {name: profile_summary(name) for name in args.profiles},
    }
    memory: dict[str, float] = {}
    saved_torch_home = os.environ.get("TORCH_HOME")
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as scratch:
        try:
            models = build_models(Path(scratch), tiny=args.tiny)
            report["models"] = models["notes"]
            for note in models["notes"]:
                print(f"built: {note}", flush=True)
            sides = load_sides(args, models, memory, scene(0, args.size))
            measure(args, sides, report, memory)
            del sides
            report["memory_by_size"] = measure_memory_by_size(args, models)
        finally:
            if saved_torch_home is None:
                os.environ.pop("TORCH_HOME", None)
            else:
                os.environ["TORCH_HOME"] = saved_torch_home
    report["load_average_end"] = load_average()
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return report


def load_sides(
    args: argparse.Namespace, models: dict[str, Any], memory: dict[str, float], warm_up: Image.Image
) -> dict[str, Any]:
    """Load the naive way and our profiles once each and warm each up, recording the resident memory each added."""
    sides: dict[str, Any] = {}
    options = {"tokens": args.tokens, "detections": args.detections}
    loaders = [("naive", lambda: NaiveWay(models["captioner"], models["segmenter"], **options))]
    loaders += [
        (name, lambda name=name: OurWay(models["captioner"], models["segmenter"], profile=name, **options))
        for name in args.profiles
    ]
    memory["baseline"] = rss_mb()
    for name, loader in loaders:
        gc.collect()
        before = rss_mb()
        tick = time.perf_counter()
        sides[name] = loader()
        loaded = time.perf_counter() - tick
        sides[name](warm_up)  # first calls touch every weight page, allocate and pick kernels
        memory[f"{name}/load"] = rss_mb() - before
        print(f"loaded {name} in {loaded:.1f} s, warmed up (+{memory[f'{name}/load']:.0f} MiB)", flush=True)
    memory["loaded_all"] = rss_mb()
    return sides


def measure(args: argparse.Namespace, sides: dict[str, Any], report: dict[str, Any], memory: dict[str, float]):
    """Per-image latency (sides interleaved image by image, so load changes hit all alike), batch, live stream."""
    images = [scene(index, args.size) for index in range(args.images)]
    latency: dict[str, dict[str, list[float]]] = {name: {"caption": [], "segment": [], "total": []} for name in sides}
    outputs: dict[str, list[Any]] = {name: [] for name in sides}
    for index, image in enumerate(images):
        for name, side in sides.items():
            with peak_rss(memory, f"{name}/peak"):
                result = side(image)
            outputs[name].append(result)
            for key in ("caption", "segment", "total"):
                latency[name][key].append(result["timings_ms"][key] / 1000.0)
        print(
            f"image {index + 1}/{len(images)}: "
            + ", ".join(f"{name} {latency[name]['total'][-1]:.2f} s" for name in sides),
            flush=True,
        )

    batch = [scene(100 + index, args.size) for index in range(args.batch)]
    throughput: dict[str, float] = {}
    for name, side in sides.items():
        with peak_rss(memory, f"{name}/peak"):
            if name == "naive":
                tick = time.perf_counter()
                for image in batch:
                    side(image)
            else:
                side.pipe.captioner.batch_size = len(batch)  # one generate for the batch; the segmenter goes 1 by 1
                tick = time.perf_counter()
                side(batch)
                side.pipe.captioner.batch_size = 1
            throughput[name] = len(batch) / (time.perf_counter() - tick)
        print(f"batch of {len(batch)}: {name} {throughput[name]:.3f} images/s", flush=True)

    stream: dict[str, Any] = {}
    for name, side in sides.items():
        with peak_rss(memory, f"{name}/peak"):
            stream[name] = stream_side(name, side, args)
        print(f"stream {args.stream_seconds:.0f} s: {name} {stream[name]['fps']:.2f} frames/s", flush=True)

    results: dict[str, Any] = {}
    for name in sides:
        results[name] = {
            "latency_s": {key: percentiles(values) for key, values in latency[name].items()},
            "batch_images_per_s": throughput[name],
            "stream": stream[name],
            "memory_mib": {
                "load_added": round(memory[f"{name}/load"], 1),
                # what a process holding only this side would peak at: the bare process, this side's models, and the
                # working memory above everything loaded that its calls added
                "peak_rss_estimate": round(
                    memory["baseline"]
                    + memory[f"{name}/load"]
                    + max(0.0, memory[f"{name}/peak"] - memory["loaded_all"]),
                    1,
                ),
                "process_peak_during_calls": round(memory[f"{name}/peak"], 1),
            },
        }
    naive = results["naive"]
    for result in results.values():
        result["speedup_vs_naive"] = {
            "latency_p50": naive["latency_s"]["total"]["p50"] / result["latency_s"]["total"]["p50"],
            "batch": result["batch_images_per_s"] / naive["batch_images_per_s"],
            "stream": result["stream"]["fps"] / naive["stream"]["fps"],
        }
    report["results"] = results
    report["memory_method"] = (
        "RSS sampled every 20 ms with psutil; peak_rss_estimate = bare-process RSS + RSS added by loading and warming "
        "up this side + the largest RSS above all-sides-loaded seen during its calls (all sides stay loaded so that "
        "their runs interleave image by image)"
    )
    report["agreement"] = {
        name: summarise_agreement(
            [compare(naive_out, ours_out) for naive_out, ours_out in zip(outputs["naive"], outputs[name], strict=True)]
        )
        for name in sides
        if name != "naive"
    }


def measure_memory_by_size(args: argparse.Namespace, models: dict[str, Any]) -> list[dict[str, Any]]:
    """What one photo of each size costs the app's photo path: the CPU's default profile, up to 100 detections (the
    catalog's setting) all kept, masks as RLE as the endpoints return them; RSS added at the peak and seconds."""
    from pipeline.combined import load_pipeline
    from pipeline.speed import default_profile

    gc.collect()
    pipe = load_pipeline(models["captioner"], models["segmenter"], device="cpu", profile=default_profile("cpu"))
    pipe(scene(0, args.size), max_new_tokens=args.tokens)
    rows = []
    for megapixels in args.memory_sizes:
        width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
        photo = scene(1, (width, width * 3 // 4))
        gc.collect()
        record: dict[str, float] = {}
        before = rss_mb()
        tick = time.perf_counter()
        with peak_rss(record, "peak"):
            result = pipe(photo, threshold=0.0, max_new_tokens=args.tokens, mask_format="rle")
        seconds = time.perf_counter() - tick
        rows.append(
            {
                "megapixels": megapixels,
                "size": list(photo.size),
                "profile": default_profile("cpu"),
                "instances": len(result["instances"]),
                "seconds": round(seconds, 2),
                "peak_added_mib": round(record["peak"] - before, 1),
            }
        )
        print(f"memory: {megapixels:g} MP {photo.size}: +{rows[-1]['peak_added_mib']:.0f} MiB at the peak, "
              f"{seconds:.1f} s, {rows[-1]['instances']} instances", flush=True)  # fmt: skip
        del photo, result
    return rows


def measure_bulk(args: argparse.Namespace) -> dict[str, Any]:
    """The batch job against a per-image loop, per profile: images/s and whether the outputs agree.

    The loop is what a first script does: ``load_pipeline(...)`` once, one warm-up call, then ``pipe(path)`` per
    picture, timed from the first picture to the last. The batch job is ``python -m pipeline.batch`` run in this
    process (``--batch-size``, 2 decoding workers), timed from its start (loading the models) to its end, so its
    figure carries its own loading and warm-up, which the loop's does not.
    """
    from pipeline.batch.__main__ import main as batch_main
    from pipeline.combined import load_pipeline

    report: dict[str, Any] = {"pictures": args.bulk, "size": list(args.size), "profiles": {}}
    saved_torch_home = os.environ.get("TORCH_HOME")
    with tempfile.TemporaryDirectory(prefix="pipeline-bulk-") as scratch:
        root = Path(scratch)
        try:
            if args.bulk_models == "shapes":
                captioner, segmenter, report["models"] = "shapes", "shapes", ["the trained shapes models"]
            else:
                models = build_models(root, tiny=args.tiny)
                captioner, segmenter, report["models"] = models["captioner"], models["segmenter"], models["notes"]
            pictures = root / "pictures"
            pictures.mkdir()
            paths = []
            for index in range(args.bulk):
                paths.append(pictures / f"{index:05d}.png")
                scene(index, args.size).save(paths[-1])
            for profile in args.profiles:
                pipe = load_pipeline(captioner, segmenter, device="cpu", profile=profile)
                pipe(paths[0])
                tick = time.perf_counter()
                looped = [pipe(str(path))["caption"] for path in paths]
                loop_s = time.perf_counter() - tick
                del pipe
                gc.collect()
                output = root / f"batch-{profile}"
                argv = [str(pictures), "--output", str(output), "--captioner", str(captioner), "--segmenter",
                        str(segmenter), "--profile", profile, "--batch-size", str(args.bulk_batch_size)]  # fmt: skip
                tick = time.perf_counter()
                code = batch_main(argv)
                batch_s = time.perf_counter() - tick
                records = [json.loads(line) for line in (output / "captions.jsonl").read_text().splitlines()]
                batched = {record["file"]: record["caption"] for record in records}
                same = sum(batched.get(path.name) == caption for path, caption in zip(paths, looped))
                summary = json.loads((output / "summary.json").read_text())
                row = {
                    "loop_images_per_s": round(args.bulk / loop_s, 4),
                    "batch_images_per_s": round(args.bulk / batch_s, 4),
                    "speedup": round(loop_s / batch_s, 2),
                    # the job's own figure: from its models' loading to its last record, less start-up and merging
                    "batch_analysis_images_per_s": summary["images_per_second"],
                    "speedup_analysis": round(summary["images_per_second"] * loop_s / args.bulk, 2),
                    "same_captions": same,
                    "batch_exit_code": code,
                }
                report["profiles"][profile] = row
                print(f"bulk, {profile}: loop {row['loop_images_per_s']:.3f} images/s, batch job "
                      f"{row['batch_images_per_s']:.3f} images/s ({row['speedup']:.2f}x) whole command, "
                      f"{row['batch_analysis_images_per_s']:.3f} images/s ({row['speedup_analysis']:.2f}x) from "
                      f"its models' loading, {same}/{args.bulk} same captions", flush=True)  # fmt: skip
        finally:
            if saved_torch_home is None:
                os.environ.pop("TORCH_HOME", None)
            else:
                os.environ["TORCH_HOME"] = saved_torch_home
    return report


# -- quality -----------------------------------------------------------------------------------------------------


def measure_quality(args: argparse.Namespace) -> dict[str, Any]:
    """Caption BLEU/CIDEr and COCO box/mask AP of each profile on a shapes split, and each profile's cost vs full.

    The split folder is what ``python -m train.shapes`` writes: ``images/``, ``instances.json``, ``captions.txt``.
    The scores come from :mod:`pipeline.evaluation`, the code ``train.evaluate`` runs: captions with the captioner's
    defaults, every detection kept, and with ``--limit`` the ground truth cut to the same images.
    """
    from pipeline.catalog import load_captioner, load_segmenter
    from pipeline.evaluation import evaluate_captioner, evaluate_segmenter

    report: dict[str, Any] = {"split": str(args.quality), "profiles": {}}
    for profile in args.profiles:
        captioner = load_captioner(args.captioner, device="cpu", profile=profile)
        segmenter = load_segmenter(args.segmenter, device="cpu", profile=profile)
        tick = time.perf_counter()
        metrics = evaluate_captioner(captioner, args.quality, max_images=args.limit)
        metrics.update(evaluate_segmenter(segmenter, args.quality, max_images=args.limit))
        images = metrics.pop("images")
        metrics["seconds_per_image"] = (time.perf_counter() - tick) / max(1.0, images)
        report["images"] = int(images)
        report["profiles"][profile] = metrics
        print(f"{profile}: " + ", ".join(f"{key} {value:.3f}" for key, value in metrics.items()), flush=True)
    if "full" in report["profiles"]:
        full = report["profiles"]["full"]
        report["cost_vs_full"] = {
            name: {key: full[key] - value for key, value in metrics.items() if key != "seconds_per_image"}
            for name, metrics in report["profiles"].items()
            if name != "full"
        }
    return report


# -- output ------------------------------------------------------------------------------------------------------


def measure_stuff_cost(args: argparse.Namespace) -> dict[str, Any]:
    """Per-image latency of the ``fast`` analysis without and with a random SegFormer-b0 stuff model (ADE20K's 150
    classes: the released model's architecture), alternating the two on the same photos; the stuff model's own
    milliseconds too."""
    from pipeline.builders import build_segformer
    from pipeline.combined import load_pipeline
    from pipeline.stuff import ADE20K_STUFF

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        models = build_models(root, tiny=args.tiny)
        labels = sorted(ADE20K_STUFF) + [f"thing {index}" for index in range(150 - len(ADE20K_STUFF))]
        torch.manual_seed(0)
        widths = {"hidden_sizes": [8, 16, 24, 32], "decoder_hidden_size": 16} if args.tiny else {}
        segformer, processor = build_segformer(labels, image_size=128 if args.tiny else 512, **widths)
        segformer.save_pretrained(root / "segformer")
        processor.save_pretrained(root / "segformer")
        del segformer
        options = {"max_new_tokens": args.tokens, "generate_kwargs": {"min_new_tokens": args.tokens}}
        pipes = {
            name: load_pipeline(models["captioner"], models["segmenter"], device="cpu", profile="fast", stuff=stuff)
            for name, stuff in (("without", None), ("with", str(root / "segformer")))
        }
        photos = [scene(index, args.size) for index in range(args.stuff_cost + 1)]
        rows: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
        for index, photo in enumerate(photos):
            for name, pipe in pipes.items():
                timings = pipe(photo, **options)["timings_ms"]
                if index:  # the first photo warms both up
                    rows[name].append(timings)
    totals = {name: percentiles([row["total"] for row in rows[name]]) for name in rows}
    return {
        "settings": {"photos": args.stuff_cost, "size": list(args.size), "tokens": args.tokens, "tiny": args.tiny},
        "notes": [*models["notes"], "random-weight SegFormer-b0 (SegformerConfig defaults, 150 classes, 512 px) "
                  "saved with save_pretrained, loaded by pipeline.load_stuff(dir)"],
        "total_ms": totals,
        "stuff_ms": percentiles([row["stuff"] for row in rows["with"]]),
        "added_percent": 100.0 * (totals["with"]["p50"] / totals["without"]["p50"] - 1.0),
    }  # fmt: skip


def format_table(report: dict[str, Any]) -> str:
    """The results as a markdown table (what README shows)."""
    rows = [
        "| | caption p50 / p95 (s) | segment p50 / p95 (s) | total p50 / p95 (s) | batch (images/s) "
        "| live (frames/s) | live caption age p50 / p95 (s) | peak RSS (MiB) | speed-up (latency / batch / live) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in report["results"].items():
        latency, speedup = result["latency_s"], result["speedup_vs_naive"]
        cells = [f"{latency[key]['p50']:.2f} / {latency[key]['p95']:.2f}" for key in ("caption", "segment", "total")]
        label = "naive" if name == "naive" else f"ours, {name}"
        age = result["stream"].get("caption_age_s")
        age_cell = f"{age['p50']:.2f} / {age['p95']:.2f}" if age else "n/a"
        rows.append(
            f"| {label} | {' | '.join(cells)} | {result['batch_images_per_s']:.3f} | {result['stream']['fps']:.2f} "
            f"| {age_cell} | {result['memory_mib']['peak_rss_estimate']:.0f} "
            f"| {speedup['latency_p50']:.2f}x / {speedup['batch']:.2f}x / {speedup['stream']:.2f}x |"
        )
    if report.get("memory_by_size"):
        rows += [
            "",
            "| photo | profile | instances | seconds | RSS added at the peak (MiB) |",
            "|---|---|---|---|---|",
        ]
        for row in report["memory_by_size"]:
            width, height = row["size"]
            rows.append(
                f"| {row['megapixels']:g} MP ({width}x{height}) | {row['profile']} | {row['instances']} "
                f"| {row['seconds']:.1f} | {row['peak_added_mib']:.0f} |"
            )
    return "\n".join(rows)


def write_chart(report: dict[str, Any], path: Path) -> None:
    """Three bar charts (latency, batch throughput, live frames/s), each bar labelled with its ratio to naive."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["results"])
    panels = [
        ("per-image latency p50 (s)", lambda r: r["latency_s"]["total"]["p50"], "latency_p50"),
        (f"images/s, batch of {report['settings']['batch']}", lambda r: r["batch_images_per_s"], "batch"),
        (
            "live frames/s ({}x{} stream; fast = LiveStream path)".format(*report["settings"]["size"]),
            lambda r: r["stream"]["fps"],
            "stream",
        ),
    ]
    figure, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    colours = {"naive": "#9e9e9e", "full": "#1f77b4", "fast": "#ff7f0e"}
    for axis, (title, value, ratio_key) in zip(axes, panels, strict=True):
        values = [value(report["results"][name]) for name in names]
        bars = axis.bar(names, values, color=[colours.get(name, "#2ca02c") for name in names])
        for bar, name in zip(bars, names, strict=True):
            ratio = report["results"][name]["speedup_vs_naive"][ratio_key]
            axis.annotate(
                f"{ratio:.2f}x",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=9,
            )
        axis.set_title(title, fontsize=10)
        axis.margins(y=0.15)
    machine = report["machine"]
    figure.suptitle(
        f"bench.py on {machine['cpu']}, {machine['cores']} cores"
        + (f", {machine['gpu']}" if machine["gpu"] else "")
        + f" (load {report['load_average_start'][:1]} -> {report['load_average_end'][:1]}); ratio = speed-up vs naive",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.stuff_cost:
        cost = {"machine": machine_info(), "load_average_start": load_average(), **measure_stuff_cost(args)}
        cost["load_average_end"] = load_average()
        (out / "stuff_cost.json").write_text(json.dumps(cost, indent=2) + "\n")
        print(f"stuff model: +{cost['added_percent']:.1f}% on the fast analysis; wrote {out / 'stuff_cost.json'}")
        return 0
    if args.bulk:
        bulk = {"machine": machine_info(), "load_average_start": load_average(), **measure_bulk(args)}
        bulk["load_average_end"] = load_average()
        (out / "bulk.json").write_text(json.dumps(bulk, indent=2) + "\n")
        print(f"load average {bulk['load_average_start']} at start, {bulk['load_average_end']} at end; wrote "
              f"{out / 'bulk.json'}")  # fmt: skip
        return 0 if all(row["batch_exit_code"] == 0 for row in bulk["profiles"].values()) else 1
    if args.quality:
        quality = measure_quality(args)
        (out / "quality.json").write_text(json.dumps(quality, indent=2) + "\n")
        for name, cost in quality.get("cost_vs_full", {}).items():
            print(
                f"cost of {name} vs full: BLEU-4 {cost['BLEU-4']:+.4f}, segm AP {cost['segm_AP']:+.4f}, "
                f"bbox AP {cost['bbox_AP']:+.4f} (positive = worse)"
            )
        print(f"wrote {out / 'quality.json'}")
        return 0
    report = run(args)
    table = format_table(report)
    report["table_markdown"] = table
    (out / "bench.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    if not args.no_chart:
        write_chart(report, out / "bench.png")
    machine = report["machine"]
    print(
        f"\nmachine: {machine['cpu']}, {machine['cores']} cores, kernels {machine['torch_cpu_capability']}, native "
        f"bfloat16 {machine['native_bfloat16']}, GPU: {machine['gpu'] or 'none'}; load average "
        f"{report['load_average_start']} at start, {report['load_average_end']} at end"
    )
    print(table)
    for name, agreement in report["agreement"].items():
        verdict = "agree" if agreement["all_agree"] else "DIFFER"
        print(
            f"{name} vs naive: {verdict} ({agreement['same_captions']}/{agreement['images']} same captions, "
            f"max box error {agreement['max_box_error_px']:.2g} px, min mask IoU {agreement['min_mask_iou']:.3f})"
        )
    print(f"wrote {out / 'bench.json'}" + ("" if args.no_chart else f" and {out / 'bench.png'}"))
    full = report["agreement"].get("full")
    return 1 if full is not None and not full["all_agree"] else 0


if __name__ == "__main__":
    sys.exit(main())
