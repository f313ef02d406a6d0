"""Rebuild the offline ``shapes`` models: generate the data, train them with the training scripts, evaluate, install.

One command, CPU only, no network::

    HF_HUB_OFFLINE=1 python -m train.make_shapes_models

It writes the shapes data set (seed 0: 3000 train, 100 val images), the same with stuff backgrounds
(``train/shapes.py --stuff``: sky, grass, water, sand and wall regions, a fifth of the pictures plain) and a held-out
test split of each (seed 1, never seen in training) under ``--work_dir``, builds a tiny BLIP with the shapes vocabulary
(:data:`CAPTIONER`), trains it with ``train/caption.py`` in three warm-restart phases on the plain pictures and a
fourth at twice the input size (:data:`UPSCALED_IMAGE_SIZE`, :func:`upscale_captioner`), a small
Mask R-CNN (:data:`SEGMENTER_KWARGS`) from scratch with ``train/segment.py`` on the stuff pictures (so that textured
backgrounds raise no false shapes), and a tiny SegFormer (:data:`STUFF_CONFIG`) with ``train/stuff.py``, all stored
as float16 (the catalog loads them as float32), copies the model files to ``pipeline/weights/shapes-captioner``,
``shapes-segmenter`` and ``shapes-stuff`` (the catalog's ``shapes`` entries) and scores them on the held-out splits,
writing ``heldout_metrics.json`` beside each (the stuff model's: the fused panoptic view's PQ, things and stuff).
The question answerer (:data:`ANSWERER_PHASES`) is a tiny BLIP VQA of the captioner's widths started from the
captioner's third (96 px) phase (:func:`answerer_from_captioner`: its vision encoder, and its text decoder as both the
question encoder and the answer decoder, as BLIP's VQA model starts from its pre-trained captioner), trained with
``train/answer.py`` on the colour and shape questions of a larger data set of its own (:data:`ANSWERER_TRAIN_IMAGES`;
counts, presence and places are the segmenter's), the vision encoder frozen in the first cycle and slower than the
rest in the second, installed in ``pipeline/weights/shapes-answerer`` and scored by VQA accuracy on the held-out split.
The captioners of the other families (:data:`OWN_CAPTIONERS`: attention-lstm, clip-prefix, GIT and ViT-GPT2, the last
two built here from configurations by :data:`BUILT_CAPTIONERS`) are one ``train/caption.py`` run each on the same
pictures, installed in ``shapes-lstm``, ``shapes-clip-prefix``, ``shapes-git`` and ``shapes-vit-gpt2`` and scored on
the held-out split.

The schedules (:data:`CAPTION_PHASES`, :data:`SEGMENT_ARGS`) were sized for a shared 2-core machine (one thread per
run: on an oversubscribed CPU, two threads per process ran 3-5x slower than one); where a GPU is visible the same
command uses it, as accelerate picks the device. ``--resume`` continues interrupted runs from their latest state.
Training is seeded; on another machine the figures can differ slightly (thread counts change float summation order).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from pipeline.builders import build_blip, build_blip_vqa, build_git, build_vit_gpt2
from pipeline.catalog import WEIGHTS_DIR
from pipeline.evaluation import evaluate_answerer, evaluate_captioner, evaluate_panoptic, evaluate_segmenter
from train import answer, caption, segment, shapes, stuff
from train.shape_words import shape_accuracy
from train.shapes_shifted import write_shifted

DATA_SEED, HELDOUT_SEED = 0, 1
TRAIN_IMAGES, VAL_IMAGES, TEST_IMAGES = 3000, 100, 300
#: The pictures of the captioner's second test set, drawn by another renderer (``train/shapes_shifted.py``).
SHIFTED_IMAGES = 200

#: The tiny BLIP: 96 px input, 16 px patches (36 image tokens), 3 + 3 layers of width 160.
CAPTIONER = {
    "image_size": 96,
    "patch_size": 16,
    "vision": {"hidden_size": 160, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 640},
    "text": {
        "hidden_size": 160,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "intermediate_size": 640,
        "max_position_embeddings": 48,
    },
}
_CAPTION_COMMON = [
    "--weight_decay", "0.01", "--lr_scheduler", "cosine", "--per_device_batch_size", "32",
    "--checkpointing_steps", "200", "--logging_steps", "20", "--save_float16",
]  # fmt: skip
#: Three cosine cycles (warm restarts), each ``train/caption.py`` run starting from the previous one's model: after
#: the first the captioner named colours and counts right but shapes in only a quarter of the held-out images, and
#: each restart raised that (figures in train/README.md).
CAPTION_PHASES = [
    ["--learning_rate", "1e-3", "--warmup_steps", "100", "--max_train_steps", "1400", "--seed", "0", *_CAPTION_COMMON],
    ["--learning_rate", "5e-4", "--warmup_steps", "50", "--max_train_steps", "1200", "--seed", "1", *_CAPTION_COMMON],
    ["--learning_rate", "5e-4", "--warmup_steps", "50", "--max_train_steps", "1200", "--seed", "2", *_CAPTION_COMMON],
]
#: The fourth phase's input size: the third phase's model upscaled (:func:`upscale_captioner`, the same 16 px patches,
#: a 12 x 12 grid). At 96 px a shape is about one patch across and the captioner named the right kinds with counts in
#: 63% of the held-out pictures; at 192 px, after one more cycle, in 96% (figures in train/README.md).
UPSCALED_IMAGE_SIZE = 192
UPSCALED_PHASE = ["--learning_rate", "5e-4", "--warmup_steps", "50", "--max_train_steps", "1200", "--seed", "3",
                  "--no_meteor", *_CAPTION_COMMON]  # fmt: skip

#: The small Mask R-CNN: ResNet-18 stages 1-2 with BatchNorm, a 64-channel FPN and heads, 128 px input.
SEGMENTER_KWARGS = {
    "returned_layers": [1, 2],
    "fpn_channels": 64,
    "norm": "batch",
    "anchor_sizes": [16, 32, 64],
    "box_representation": 256,
    "mask_layers": [64, 64],
    "min_size": 128,
    "max_size": 128,
    "rpn_pre_nms_top_n_train": 600,
    "rpn_post_nms_top_n_train": 300,
    "rpn_pre_nms_top_n_test": 300,
    "rpn_post_nms_top_n_test": 100,
    "rpn_batch_size_per_image": 128,
    "box_batch_size_per_image": 64,
    "box_detections_per_img": 20,
}
#: The tiny SegFormer of the shapes stuff model: four stages of widths 16-96, one block each, a 64-wide decoder.
STUFF_CONFIG = {"hidden_sizes": [16, 32, 64, 96], "decoder_hidden_size": 64, "depths": [1, 1, 1, 1],
                "num_attention_heads": [1, 1, 2, 2]}  # fmt: skip
STUFF_ARGS = [
    "--init", "scratch", "--segformer_config", json.dumps(STUFF_CONFIG), "--image_size", "128",
    "--per_device_batch_size", "16", "--learning_rate", "3e-3", "--warmup_steps", "20", "--num_train_epochs", "16",
    "--save_float16", "--seed", "0",
]  # fmt: skip
#: The stuff model's data: the first pictures of the stuff data set's splits (a picture depends on its index only),
#: 1000 steps of 16 in 16 epochs; and the held-out stuff test split's size.
STUFF_TRAIN_IMAGES, STUFF_VAL_IMAGES, STUFF_TEST_IMAGES = 1000, 60, 100
SEGMENT_ARGS = [
    "--init", "scratch", "--model", "maskrcnn_fpn", "--backbone", "resnet18",
    "--learning_rate", "2e-3", "--weight_decay", "1e-4", "--warmup_steps", "50", "--lr_scheduler", "cosine",
    "--per_device_batch_size", "8", "--max_train_steps", "500", "--checkpointing_steps", "50",
    "--logging_steps", "10", "--save_float16", "--seed", "0",
]  # fmt: skip

#: The answerer's words: the captions' and the questions' and answers' (digits, as VQA answers numbers).
ANSWER_WORDS = "how many are there is what colour shape yes no 0 1 2 3 4".split()
#: The question types the answerer is trained and scored on: what the segmenter does not answer.
ANSWER_TYPES = ("colour", "shape")
_ANSWER_COMMON = [
    "--question_types", ",".join(ANSWER_TYPES), "--lr_scheduler", "cosine",
    "--per_device_batch_size", "32", "--max_train_steps", "1500", "--checkpointing_steps", "500",
    "--logging_steps", "50",
]  # fmt: skip
#: Two cosine cycles of ``train/answer.py``, the second from the first's model (float32 between them): the first with
#: the captioner's vision encoder frozen, the second training it too, at a third of the rest's rate, so that it
#: learns to tell the shapes apart (a colour question names a shape) without losing the captioner's colours.
ANSWERER_PHASES = [
    ["--learning_rate", "5e-4", "--warmup_steps", "100", "--seed", "0", "--freeze_vision", *_ANSWER_COMMON],
    ["--learning_rate", "3e-4", "--vision_learning_rate", "1e-4", "--warmup_steps", "50", "--seed", "1",
     "--save_float16", *_ANSWER_COMMON],
]  # fmt: skip
#: The answerer's own training pictures (seed 0, and the captioner's 100 validation ones): on the captioner's 3000 it
#: over-fitted (training loss 0.13, colours right in 0.80 of the validation questions, 0.82 of the held-out ones).
ANSWERER_TRAIN_IMAGES = 12000

#: The attention-lstm captioner (``shapes-lstm``): built new by ``train/caption.py`` from the training captions
#: (every word kept: the shapes vocabulary is small and complete), a small ResNet on 96 px pictures (a 12 x 12
#: grid), one run of 450 steps of 32 (about one epoch; 5-6 minutes on one shared core).
LSTM_ARGS = [
    "--architecture", "attention-lstm", "--encoder", "small", "--min_word_count", "1", "--lstm_image_size", "96",
    "--lstm_config", json.dumps({"hidden_size": 256, "embed_size": 128, "attention_size": 128, "dropout": 0.3}),
    "--learning_rate", "2e-3", "--warmup_steps", "30", "--lr_scheduler", "cosine", "--weight_decay", "0.0001",
    "--per_device_batch_size", "32", "--max_train_steps", "450", "--checkpointing_steps", "150",
    "--logging_steps", "50", "--no_meteor", "--seed", "0", "--save_float16",
]  # fmt: skip

#: The clip-prefix captioner (``shapes-clip-prefix``): built new by ``train/caption.py`` from configurations (no
#: CLIP or GPT-2 weights offline): a 3-layer CLIP ViT of width 128 on 96 px (16 px patches), a 4-vector prefix, a
#: 3-layer GPT-2 of width 128 with a byte-level BPE of the caption words; one run of 450 steps of 32.
CLIP_PREFIX_CONFIG = {
    "image_size": 96,
    "vision": {"hidden_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 512,
               "patch_size": 16},
    "decoder": {"n_embd": 128, "n_layer": 3, "n_head": 4, "n_positions": 64},
}  # fmt: skip
CLIP_PREFIX_ARGS = [
    "--architecture", "clip-prefix", "--min_word_count", "1", "--prefix_length", "4",
    "--clip_prefix_config", json.dumps(CLIP_PREFIX_CONFIG),
    "--learning_rate", "1e-3", "--warmup_steps", "50", "--lr_scheduler", "cosine", "--weight_decay", "0.01",
    "--per_device_batch_size", "32", "--max_train_steps", "450", "--checkpointing_steps", "150",
    "--logging_steps", "50", "--no_meteor", "--seed", "0", "--save_float16",
]  # fmt: skip
#: The GIT captioner (``shapes-git``): a tiny GIT (:func:`pipeline.builders.build_git`, the shapes vocabulary) of a
#: 3-layer CLIP ViT and 3 text layers of width 128 on 96 px (16 px patches: 36 image tokens), random weights.
GIT_SETTINGS = {
    "image_size": 96,
    "patch_size": 16,
    "vision": {"hidden_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 512},
    "text": {"hidden_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 512,
             "max_position_embeddings": 48},
}  # fmt: skip
#: The ViT-GPT2 captioner (``shapes-vit-gpt2``): a tiny VisionEncoderDecoder (:func:`pipeline.builders.build_vit_gpt2`,
#: a byte-level BPE of the shapes words) of a 3-layer ViT and a 3-layer GPT-2 with cross-attention, width 128, 96 px.
VIT_GPT2_SETTINGS = {
    "image_size": 96,
    "patch_size": 16,
    "encoder": {"hidden_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 512},
    "decoder": {"n_embd": 128, "n_layer": 3, "n_head": 4, "n_positions": 64},
}  # fmt: skip
#: One run of ``train/caption.py`` from the built folder (``--model_name_or_path``) for each: 900 steps of 32.
_BUILT_ARGS = [
    "--learning_rate", "1e-3", "--warmup_steps", "50", "--lr_scheduler", "cosine", "--weight_decay", "0.01",
    "--per_device_batch_size", "32", "--max_train_steps", "900", "--checkpointing_steps", "300",
    "--logging_steps", "50", "--no_meteor", "--seed", "0", "--save_float16",
]  # fmt: skip
#: The captioners trained by one ``train/caption.py`` run each: ``--only`` name -> (installed folder, flags).
OWN_CAPTIONERS = {
    "attention-lstm": ("shapes-lstm", LSTM_ARGS),
    "clip-prefix": ("shapes-clip-prefix", CLIP_PREFIX_ARGS),
    "git": ("shapes-git", ["--architecture", "git", *_BUILT_ARGS]),
    "vit-gpt2": ("shapes-vit-gpt2", ["--architecture", "vit-gpt2", *_BUILT_ARGS]),
}
#: Those of :data:`OWN_CAPTIONERS` that start from a folder built here (train/caption.py builds the others itself):
#: ``--only`` name -> (builder, its settings).
BUILT_CAPTIONERS = {"git": (build_git, GIT_SETTINGS), "vit-gpt2": (build_vit_gpt2, VIT_GPT2_SETTINGS)}

MODEL_FILES = {
    "captioner": (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "processor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ),
    "segmenter": ("segmenter.json", "model.safetensors"),
    "stuff": ("config.json", "model.safetensors", "preprocessor_config.json"),
}
MODEL_FILES["answerer"] = MODEL_FILES["captioner"]
MODEL_FILES["attention-lstm"] = ("config.json", "model.safetensors", "preprocessor_config.json", "vocabulary.json")
MODEL_FILES["clip-prefix"] = (
    "config.json",
    "model.safetensors",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
)
MODEL_FILES["git"] = MODEL_FILES["captioner"]
MODEL_FILES["vit-gpt2"] = tuple(
    "preprocessor_config.json" if name == "processor_config.json" else name for name in MODEL_FILES["captioner"]
)


def install(run_dir: Path, kind: str, destination: Path) -> Path:
    """Copy a run's model files (not its checkpoints) to ``destination``, replacing what was there."""
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    for name in MODEL_FILES[kind]:
        shutil.copyfile(run_dir / name, destination / name)
    return destination


def _fresh_accelerate_state() -> None:
    """Forget the previous run's accelerate singletons, so each run in this process configures its own."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work_dir",
        default=str(Path(tempfile.gettempdir()) / "shapes-models"),
        help="data, runs and checkpoints (default: <tmp>/shapes-models)",
    )
    parser.add_argument("--weights_dir", default=str(WEIGHTS_DIR), help="where the shapes-* model folders go")
    parser.add_argument(
        "--only",
        choices=("captioner", "segmenter", "stuff", "answerer", *OWN_CAPTIONERS),
        help="rebuild one of the models only (the answerer starts from the captioner's 96 px phase in --work_dir)",
    )
    parser.add_argument("--torch_threads", type=int, default=1, help="CPU threads per run (default 1)")
    parser.add_argument("--resume", action="store_true", help="continue interrupted runs from their latest state")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="check the whole recipe in a minute or two: 16 training, 4 validation and 8 held-out images, 2 steps a "
        "run; the models are not worth keeping, so --weights_dir must name another folder than the committed one",
    )
    args = parser.parse_args(argv)
    if args.quick and Path(args.weights_dir).resolve() == WEIGHTS_DIR.resolve():
        parser.error("--quick would replace the committed shapes models: give --weights_dir another folder")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    args = parse_args(argv)
    work, weights = Path(args.work_dir), Path(args.weights_dir)
    suffix = "-quick" if args.quick else ""  # a quick run's few images must never stand in for the real data
    data, heldout = work / f"data{suffix}", work / f"heldout{suffix}"
    counts = (16, 4, 8) if args.quick else (TRAIN_IMAGES, VAL_IMAGES, TEST_IMAGES)
    if not (data / "val" / "instances.json").is_file():
        shapes.main(["--output_dir", str(data), "--seed", str(DATA_SEED), "--train", str(counts[0]),
                     "--val", str(counts[1]), "--test", "0"])  # fmt: skip
    if not (heldout / "test" / "instances.json").is_file():
        shapes.main(["--output_dir", str(heldout), "--seed", str(HELDOUT_SEED), "--train", "0", "--val", "0",
                     "--test", str(counts[2])])  # fmt: skip
    stuff_data, stuff_heldout = work / f"data-stuff{suffix}", work / f"heldout-stuff{suffix}"
    stuff_small = work / f"data-stuff-small{suffix}"
    small = (min(counts[0], STUFF_TRAIN_IMAGES), min(counts[1], STUFF_VAL_IMAGES))
    if args.only in (None, "stuff") and not (stuff_small / "val" / "instances.json").is_file():
        shapes.main(["--output_dir", str(stuff_small), "--stuff", "--seed", str(DATA_SEED), "--train", str(small[0]),
                     "--val", str(small[1]), "--test", "0"])  # fmt: skip
    if args.only in (None, "segmenter") and not (stuff_data / "val" / "instances.json").is_file():
        shapes.main(["--output_dir", str(stuff_data), "--stuff", "--seed", str(DATA_SEED), "--train", str(counts[0]),
                     "--val", str(counts[1]), "--test", "0"])  # fmt: skip
    if args.only not in ("captioner", *OWN_CAPTIONERS) and not (stuff_heldout / "test" / "instances.json").is_file():
        shapes.main(["--output_dir", str(stuff_heldout), "--stuff", "--seed", str(HELDOUT_SEED), "--train", "0",
                     "--val", "0", "--test", str(min(counts[2], STUFF_TEST_IMAGES))])  # fmt: skip
    common = ["--torch_threads", str(args.torch_threads)]
    if args.quick:  # later flags win over the recipe's
        common += ["--max_train_steps", "2", "--checkpointing_steps", "1"]

    def resume(run: Path) -> list[str]:
        # Only runs that saved a state can resume; the others start from the beginning.
        return ["--resume_from_checkpoint", "latest"] if args.resume and any(run.glob("checkpoints/step_*")) else []

    figures: dict[str, dict[str, float]] = {}

    if args.only in (None, "captioner"):
        figures["captioner"] = make_captioner(work, weights, data, heldout, suffix, common, resume)
    if args.only in (None, "segmenter"):
        run = work / f"segmenter{suffix}"
        _fresh_accelerate_state()
        segment.main(["--train_dir", str(stuff_data / "train"), "--val_dir", str(stuff_data / "val"),
                      "--output_dir", str(run), "--model_kwargs", json.dumps(SEGMENTER_KWARGS), *SEGMENT_ARGS,
                      *common, *resume(run)])  # fmt: skip
        target = install(run, "segmenter", weights / "shapes-segmenter")
        from pipeline import load_segmenter

        figures["segmenter"] = evaluate_segmenter(load_segmenter(str(target), device="cpu"), heldout / "test")
        (target / "heldout_metrics.json").write_text(json.dumps(figures["segmenter"], indent=1) + "\n")
        print("segmenter, held-out test:", figures["segmenter"])

    if args.only in (None, "stuff"):
        run = work / f"stuff{suffix}"
        _fresh_accelerate_state()
        stuff.main(["--train_dir", str(stuff_small / "train"), "--val_dir", str(stuff_small / "val"),
                    "--output_dir", str(run), *STUFF_ARGS, *common, *resume(run)])  # fmt: skip
        target = install(run, "stuff", weights / "shapes-stuff")
        from pipeline import load_segmenter, load_stuff

        segmenter = load_segmenter(str(weights / "shapes-segmenter"), device="cpu")
        figures["stuff"] = evaluate_panoptic(segmenter, load_stuff(str(target), device="cpu"), stuff_heldout / "test")
        (target / "heldout_metrics.json").write_text(json.dumps(figures["stuff"], indent=1) + "\n")
        print("stuff, held-out test (the fused panoptic view):", figures["stuff"])
    if args.only in (None, "answerer"):
        answer_data = work / f"data-answerer{suffix}"
        if not (answer_data / "val" / "questions.json").is_file():
            shapes.main(["--output_dir", str(answer_data), "--seed", str(DATA_SEED), "--train",
                         str(counts[0] if args.quick else ANSWERER_TRAIN_IMAGES), "--val", str(counts[1]),
                         "--test", "0"])  # fmt: skip
        flags = [*common, *resume_flags(args)]
        captioner = work / f"captioner-phase{len(CAPTION_PHASES)}{suffix}"
        if not (captioner / "model.safetensors").is_file():
            raise SystemExit(f"the answerer starts from the captioner's 96 px phase, {captioner}: build it first")
        figures["answerer"] = make_answerer(work, weights, answer_data, heldout, suffix, flags, captioner)
    for family in OWN_CAPTIONERS:
        if args.only in (None, family):
            run = work / f"{family}{suffix}"
            start = build_captioner(family, work / f"{family}-init{suffix}")
            figures[family] = make_own_captioner(family, run, weights, data, heldout, [*start, *common, *resume(run)])
    return figures


def make_captioner(
    work: Path,
    weights: Path,
    data: Path,
    heldout: Path,
    suffix: str,
    flags: list[str],
    resume: Callable[[Path], list[str]],
) -> dict[str, float]:
    """Build the tiny BLIP, train it in :data:`CAPTION_PHASES` at 96 px and :data:`UPSCALED_PHASE` at
    :data:`UPSCALED_IMAGE_SIZE`, each phase from the previous one's model, install it and score it
    (:func:`score_captioner`).

    ``resume(run)`` gives the flags that continue ``run`` from its latest state (none when not asked for)."""
    shifted = work / f"shifted{suffix}"
    if not (shifted / "captions.txt").is_file():
        write_shifted(shifted, 8 if suffix else SHIFTED_IMAGES)  # a suffix marks a --quick run
    start = save_new(build_blip, CAPTIONER, work / f"captioner-init{suffix}")
    for phase, phase_args in enumerate([*CAPTION_PHASES, UPSCALED_PHASE], start=1):
        if phase_args is UPSCALED_PHASE:  # made again from this run's previous phase: cheap, and never stale
            start = upscale_captioner(start, work / f"captioner-upscaled{suffix}", UPSCALED_IMAGE_SIZE)
        run = work / f"captioner-phase{phase}{suffix}"
        _fresh_accelerate_state()
        caption.main(["--model_name_or_path", str(start), "--train_dir", str(data / "train"),
                      "--val_dir", str(data / "val"), "--output_dir", str(run), *phase_args, *flags,
                      *resume(run)])  # fmt: skip
        start = run
    target = install(run, "captioner", weights / "shapes-captioner")
    from pipeline import load_captioner

    scored = score_captioner(load_captioner(str(target), device="cpu"), heldout / "test", shifted)
    (target / "heldout_metrics.json").write_text(json.dumps(scored, indent=1) + "\n")
    print("captioner, held-out test and shifted set:", scored)
    return scored


def make_own_captioner(
    family: str, run: Path, weights: Path, data: Path, heldout: Path, flags: list[str]
) -> dict[str, float]:
    """Train a captioner of :data:`OWN_CAPTIONERS` with its flags, install it in its folder and score it."""
    folder, family_args = OWN_CAPTIONERS[family]
    _fresh_accelerate_state()
    caption.main(["--train_dir", str(data / "train"), "--val_dir", str(data / "val"), "--output_dir", str(run),
                  *family_args, *flags])  # fmt: skip
    target = install(run, family, weights / folder)
    from pipeline import load_captioner

    scored = evaluate_captioner(load_captioner(str(target), device="cpu"), heldout / "test")
    (target / "heldout_metrics.json").write_text(json.dumps(scored, indent=1) + "\n")
    print(f"{family} captioner ({folder}), held-out test:", scored)
    return scored


def build_captioner(family: str, initial: Path) -> list[str]:
    """Build and save the random-weight starting folder of a :data:`BUILT_CAPTIONERS` family (seed 0, the shapes
    vocabulary) unless it exists; returns the ``--model_name_or_path`` flags naming it (none for other families)."""
    if family not in BUILT_CAPTIONERS:
        return []
    return ["--model_name_or_path", str(save_new(*BUILT_CAPTIONERS[family], initial))]


def save_new(builder: Callable[..., tuple[Any, Any]], settings: dict[str, Any], initial: Path) -> Path:
    """Save a random-weight captioner of the shapes vocabulary (seed 0), ``builder(words, **settings)``, and its
    processor to ``initial`` unless it is there; returns ``initial``."""
    if not initial.is_dir():
        torch.manual_seed(0)
        model, processor = builder(shapes.vocabulary(max_objects=4), **settings)
        model.save_pretrained(initial)
        processor.save_pretrained(initial)
    return initial


def score_captioner(captioner: Any, heldout_test: Path, shifted: Path) -> dict[str, float]:
    """Caption scores (no METEOR) with the shares of pictures whose caption names the right kinds with their counts
    and the right colours (:func:`train.shape_words.shape_accuracy`), on the held-out split and, as ``shifted_*``, on
    the set drawn by another renderer."""
    scored = evaluate_captioner(captioner, heldout_test, meteor=False, checks=(shape_accuracy,))
    on_shifted = evaluate_captioner(captioner, shifted, meteor=False, checks=(shape_accuracy,))
    return {**scored, **{f"shifted_{name}": value for name, value in on_shifted.items()}}


def upscale_captioner(source: Path, destination: Path, image_size: int) -> Path:
    """Save ``source``'s BLIP captioner to ``destination`` for ``image_size`` px input with the same patch size: every
    weight copied, the vision position embeddings (the class token's kept) bicubic-interpolated to the larger grid,
    the processor resizing to ``image_size``. At 96 px a shape of the shapes pictures is about one 16 px patch
    across; at 192 px the same patch kernel sees a quarter of it, so that its outline reaches the encoder."""
    from transformers import BlipForConditionalGeneration, BlipProcessor

    model = BlipForConditionalGeneration.from_pretrained(source, dtype=torch.float32)
    processor = BlipProcessor.from_pretrained(source)
    state = model.state_dict()
    key = "vision_model.embeddings.position_embedding"
    old = state[key]
    side, new_side = round((old.shape[1] - 1) ** 0.5), image_size // model.config.vision_config.patch_size
    grid = old[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid, size=(new_side, new_side), mode="bicubic", align_corners=False)
    state[key] = torch.cat([old[:, :1], grid.permute(0, 2, 3, 1).reshape(1, new_side * new_side, -1)], dim=1)
    config = model.config
    config.vision_config.image_size = image_size
    upscaled = BlipForConditionalGeneration(config)
    upscaled.load_state_dict(state)
    upscaled.generation_config = model.generation_config
    processor.image_processor.size = {"height": image_size, "width": image_size}
    upscaled.save_pretrained(destination)
    processor.save_pretrained(destination)
    return destination


def resume_flags(args: argparse.Namespace) -> list[str]:
    """The answerer run resumes from its latest state when asked (``train/answer.py`` starts afresh without one)."""
    return ["--resume_from_checkpoint", "latest"] if args.resume else []


def answerer_from_captioner(captioner_dir: Path) -> tuple[Any, Any]:
    """A BLIP VQA of the captioner's widths and vocabulary (plus :data:`ANSWER_WORDS`, after it, so that the shared
    words keep their ids) with the captioner's weights: its vision encoder, and its text decoder copied into the
    question encoder and the answer decoder (the new words' rows stay random)."""
    from transformers import BlipForConditionalGeneration

    torch.manual_seed(0)
    model, processor = build_blip_vqa([*shapes.vocabulary(max_objects=4), *ANSWER_WORDS], **CAPTIONER)
    captioner = BlipForConditionalGeneration.from_pretrained(captioner_dir, dtype=torch.float32)
    model.vision_model.load_state_dict(captioner.vision_model.state_dict())
    decoder = captioner.text_decoder.state_dict()
    _copy_weights(model.text_decoder, decoder)
    _copy_weights(model.text_encoder, {key[5:]: value for key, value in decoder.items() if key.startswith("bert.")})
    return model, processor


def _copy_weights(target: torch.nn.Module, source: dict[str, torch.Tensor]) -> None:
    """``source``'s tensors into ``target`` by name; a vocabulary-sized one fills the rows the two share."""
    own = target.state_dict()
    for name, value in source.items():
        if name in own and own[name].shape == value.shape:
            own[name] = value.clone()
        elif name in own and own[name].dim() >= 1 and own[name].shape[1:] == value.shape[1:]:
            own[name][: value.shape[0]] = value
    target.load_state_dict(own)


def make_answerer(
    work: Path, weights: Path, data: Path, heldout: Path, suffix: str, flags: list[str], captioner: Path
) -> dict[str, float]:
    """Build the answerer from ``captioner``, the captioner's 96 px phase (:func:`answerer_from_captioner`), train,
    install, score."""
    initial = work / f"answerer-init{suffix}"
    if not initial.is_dir():
        model, processor = answerer_from_captioner(captioner)
        model.save_pretrained(initial)
        processor.save_pretrained(initial)
    start = initial
    for phase, phase_args in enumerate(ANSWERER_PHASES, start=1):
        run = work / f"answerer-phase{phase}{suffix}"
        _fresh_accelerate_state()
        answer.main(["--model_name_or_path", str(start), "--train_dir", str(data / "train"), "--val_dir",
                     str(data / "val"), "--output_dir", str(run), *phase_args, *flags])  # fmt: skip
        start = run
    target = install(run, "answerer", weights / "shapes-answerer")
    from pipeline import load_answerer

    scored = evaluate_answerer(load_answerer(str(target), device="cpu"), heldout / "test", question_types=ANSWER_TYPES)
    (target / "heldout_metrics.json").write_text(json.dumps(scored, indent=1) + "\n")
    print("answerer, held-out test:", scored)
    return scored


if __name__ == "__main__":
    main()
