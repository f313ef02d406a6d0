"""Fine-tune a BLIP, GIT or ViT-GPT2 captioner on Flickr-style captions, scored every epoch (BLEU, METEOR, CIDEr).

Any captioner :func:`pipeline.load_captioner` serves (hub id or ``save_pretrained`` directory, with its processor)
is trained on (image, caption) pairs; its family, read from its config, decides the model class
(``AutoModelForImageTextToText``) and how captions become labels (:func:`build_train_collator`):

- BLIP (``BlipForConditionalGeneration``): ``[CLS] caption [SEP]`` with the first token replaced by the text
  decoder's ``bos_token_id``, which BLIP's ``generate`` starts from;
- GIT (``GitForCausalLM``, e.g. ``microsoft/git-base-coco``): ``[CLS] caption [SEP]`` as its tokenizer writes it, the
  labels the same ids (GIT shifts them itself, after its image tokens);
- VisionEncoderDecoder (ViT-GPT2, e.g. ``nlpconnect/vit-gpt2-image-captioning``): labels ``caption <eos>`` without
  the tokenizer's special tokens; the model shifts them right behind ``decoder_start_token_id`` (GPT-2's
  ``<|endoftext|>``, also its padding: padded positions are told apart by length, never by id). A config without
  ``decoder_start_token_id`` / ``pad_token_id`` gets the tokenizer's start / end token.

Padding never counts in the loss (label -100). Evaluation generates from the pixel values alone, as the pipeline
does. The caption file layout is detected from its content:

- Flickr8k (Kaggle) ``captions.txt``: a CSV with the header ``image,caption``;
- Flickr8k ``Flickr8k.token.txt``: ``name.jpg#0<TAB>caption``;
- Flickr30k ``results.csv``: ``image_name| comment_number| comment`` (its known broken rows included).

Malformed rows (no caption, a bad caption number, a name that is not an image file) are skipped and counted.
Validation images come from ``--val_dir`` / ``--val_captions_file``, a list of names (``--val_list``, e.g. Flickr8k's
``Flickr_8k.devImages.txt``), or a ``--val_fraction`` of the images. Each epoch generates one caption per validation
image and scores it against all that image's references (:func:`pipeline.evaluation.caption_metrics`: BLEU-1..4,
METEOR, ROUGE-L, CIDEr and the gender rates, on the main process, on the PTB tokenizer's words as COCO's
evaluation does). The tokenizer and METEOR run on Java: without it the script stops before training with a message
saying what to install; ``--no_meteor`` leaves METEOR out.
The final model and processor go to ``--output_dir`` with ``save_pretrained``, which ``pipeline.load_captioner
(<output_dir>)`` and the app load; ``metrics.json``, ``history.json`` and ``history.png`` sit beside them, resumable
states in ``<output_dir>/checkpoints/step_<N>``.

Launch from the repository root (``-m``, so that ``train`` and ``pipeline`` import) on one or many GPUs
(``accelerate config`` once, or flags as below), Flickr8k from Kaggle::

    accelerate launch --multi_gpu --num_processes 2 --mixed_precision bf16 -m train.caption \\
        --model_name_or_path Salesforce/blip-image-captioning-base \\
        --images_dir flickr8k/Images --captions_file flickr8k/captions.txt --val_fraction 0.05 \\
        --per_device_batch_size 16 --learning_rate 1e-5 --warmup_steps 200 --num_train_epochs 5 \\
        --random_resized_crop_scale 0.8 --output_dir runs/blip-flickr8k

Flickr8k with its official split: ``--captions_file Flickr8k_text/Flickr8k.token.txt --images_dir
Flicker8k_Dataset --train_list Flickr8k_text/Flickr_8k.trainImages.txt --val_list
Flickr8k_text/Flickr_8k.devImages.txt``; Flickr30k: ``--captions_file flickr30k_images/results.csv --images_dir
flickr30k_images/flickr30k_images``. On a CPU, plain ``python -m train.caption ...`` works (``--cpu`` ignores a GPU).

Augmentation (``--random_resized_crop_scale``, ``--hflip``, ``--color_jitter``): a flip makes "to the left of" false
and colour jitter can make "red" false, so keep both at 0 for captions that name sides or colours (the shapes data).

The offline ``shapes`` captioner is a tiny BLIP built by ``pipeline.builders.build_blip`` from the shapes
vocabulary and trained from scratch by ``python -m train.make_shapes_models`` (its ``CAPTION_PHASES`` hold the exact
flags): three cosine cycles of this script, each starting from the previous model, at 1e-3 then 5e-4 (a from-scratch
model this small takes a far higher rate than BLIP fine-tuning's 1e-5), batches of 32 captions, no flips or colour
jitter, float16 storage.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from pipeline.caption_files import find_caption_data, read_captions
from pipeline.captioning import OWN_FAMILIES, ImageTextProcessor, caption_family, load_caption_model
from pipeline.checkpoints import make_readable
from pipeline.evaluation import CAPTION_METRICS, GENDER_METRICS, caption_metrics, require_java, start_meteor
from train.common import (
    EpochSeeded,
    add_common_arguments,
    check_common_arguments,
    command_line,
    dataset_name,
    finish_run,
    fit,
    present_images,
    start_run,
)

#: --architecture -> the caption family of :func:`pipeline.captioning.caption_family`.
ARCHITECTURES = {
    "blip": "blip",
    "git": "git",
    "vit-gpt2": "vision-encoder-decoder",
    "attention-lstm": "attention-lstm",
    "clip-prefix": "clip-prefix",
}


def read_name_list(path: str | Path) -> list[str]:
    """Image names, one a line (Flickr8k's ``Flickr_8k.trainImages.txt``)."""
    if not Path(path).is_file():
        raise ValueError(f"image list {str(path)!r} does not exist")
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def build_augmentation(args: argparse.Namespace) -> Any:
    """The PIL-level training augmentation; the processor resizes and normalises afterwards."""
    from torchvision import transforms

    steps = []
    if args.random_resized_crop_scale < 1.0:
        steps.append(transforms.RandomResizedCrop(args.image_size, scale=(args.random_resized_crop_scale, 1.0)))
    if args.hflip > 0:
        steps.append(transforms.RandomHorizontalFlip(args.hflip))
    if args.color_jitter > 0:
        jitter = args.color_jitter
        steps.append(transforms.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=jitter / 4))
    return transforms.Compose(steps) if steps else None


class CaptionPairs(EpochSeeded, Dataset):
    """Every (image, caption) pair of some images: the training set.

    Returns (per item):
        tuple ``(image, caption)``: an RGB PIL image (augmented when ``augment`` is given) and its caption.
    """

    def __init__(
        self,
        images_dir: str | Path,
        captions: dict[str, list[str]],
        names: Sequence[str],
        augment: Any = None,
        seed: int = 0,
    ):
        self.images_dir = Path(images_dir)
        self.seed = seed
        self.pairs = [(name, caption) for name in names for caption in captions[name]]
        self.augment = augment
        if not self.pairs:
            raise ValueError(f"no captioned images to train on in {str(images_dir)!r}")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[Image.Image, str]:
        name, caption = self.pairs[index]
        image = Image.open(self.images_dir / name).convert("RGB")
        if self.augment:
            with self.random_state(index):
                image = self.augment(image)
        return image, caption


class CaptionImages(Dataset):
    """Each image once, with its name: the evaluation set."""

    def __init__(self, images_dir: str | Path, names: Sequence[str]):
        self.images_dir = Path(images_dir)
        self.names = list(names)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.open(self.images_dir / self.names[index]).convert("RGB"), index


class TrainCollator:
    """Process a batch of (image, caption) for BLIP or GIT: pixel values, token ids, attention mask, padded labels.

    Args:
        processor: the model's processor (image processor and BERT-style tokenizer).
        max_length (int): longest caption in tokens, special tokens included.
        start_token_id (int | None, default None): BLIP: the decoder's ``bos_token_id``, put in place of the
            tokenizer's ``[CLS]`` (BLIP's ``generate`` starts from it); None (GIT) keeps ``[CLS]``.
    """

    def __init__(self, processor: Any, max_length: int, start_token_id: int | None = None):
        self.processor = processor
        self.max_length = max_length
        self.start_token_id = start_token_id

    def __call__(self, batch: list[tuple[Image.Image, str]]) -> dict[str, torch.Tensor]:
        images, captions = zip(*batch)
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        text = self.processor.tokenizer(
            [caption.lower() for caption in captions],
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        input_ids = text["input_ids"].clone()
        if self.start_token_id is not None:
            input_ids[:, 0] = self.start_token_id
        labels = input_ids.masked_fill(text["attention_mask"] == 0, -100)
        return {
            "pixel_values": pixels,
            "input_ids": input_ids,
            "attention_mask": text["attention_mask"],
            "labels": labels,
        }


class EncoderDecoderCollator:
    """Process a batch of (image, caption) for a VisionEncoderDecoderModel: pixel values and ``caption <eos>`` labels.

    The captions are tokenized without special tokens, cut to ``max_length - 1`` and closed by ``eos_token_id``;
    shorter ones are padded with -100, by length (GPT-2's padding id is its end token). The model builds its decoder
    inputs by shifting the labels right behind ``decoder_start_token_id``.
    """

    def __init__(self, processor: Any, max_length: int, eos_token_id: int):
        self.processor = processor
        self.max_length = max_length
        self.eos_token_id = eos_token_id

    def __call__(self, batch: list[tuple[Image.Image, str]]) -> dict[str, torch.Tensor]:
        images, captions = zip(*batch)
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        tokenizer = self.processor.tokenizer
        ids = [
            tokenizer(caption.lower(), add_special_tokens=False)["input_ids"][: self.max_length - 1]
            + [self.eos_token_id]
            for caption in captions
        ]
        labels = torch.full((len(ids), max(len(row) for row in ids)), -100, dtype=torch.long)
        for index, row in enumerate(ids):
            labels[index, : len(row)] = torch.tensor(row)
        return {"pixel_values": pixels, "labels": labels}


def build_train_collator(model: Any, processor: Any, max_length: int) -> Any:
    """The training collator for the model's caption family (see the module docstring)."""
    family = caption_family(model)
    if family in ("vision-encoder-decoder", "attention-lstm", "clip-prefix"):
        return EncoderDecoderCollator(processor, max_length, model.config.eos_token_id)
    if family == "blip":
        return TrainCollator(processor, max_length, start_token_id=model.config.text_config.bos_token_id)
    if family == "git":
        return TrainCollator(processor, max_length)
    raise ValueError(
        "train/caption.py trains BLIP, GIT, VisionEncoderDecoder, attention-lstm and clip-prefix captioners, got a "
        f"{model.config.model_type!r} model ({type(model).__name__})"
    )


def complete_special_tokens(model: Any, tokenizer: Any) -> list[str]:
    """Give a VisionEncoderDecoderModel config the start, end and padding ids training needs, from its tokenizer.

    ``VisionEncoderDecoderModel.from_encoder_decoder_pretrained(...)`` leaves them unset; nlpconnect's ViT-GPT2 has
    all three (GPT-2's ``<|endoftext|>``). Returns what was set, for the log.
    """
    if caption_family(model) != "vision-encoder-decoder":
        return []
    end = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    wanted = {
        "decoder_start_token_id": start,
        "eos_token_id": end,
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end,
    }
    changed = []
    for key, value in wanted.items():
        if getattr(model.config, key, None) is None:
            if value is None:
                raise ValueError(f"the model's config has no {key} and its tokenizer none to take it from")
            setattr(model.config, key, value)
            setattr(model.generation_config, key, value)
            changed.append(f"{key}={value}")
    return changed


class EvalCollator:
    def __init__(self, processor: Any):
        self.processor = processor

    def __call__(self, batch: list[tuple[Image.Image, int]]) -> dict[str, torch.Tensor]:
        images, indices = zip(*batch)
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels, "index": torch.tensor(indices)}


def processed_image_size(image_processor: Any) -> int:
    """The side of the square the image processor hands the model: BLIP and ViT resize to ``size``, GIT's CLIP
    processor resizes the short side and crops to ``crop_size``."""
    size = image_processor.crop_size if getattr(image_processor, "do_center_crop", False) else image_processor.size

    def read(key: str) -> Any:  # a SizeDict in transformers 5 (unset keys are None), a dict before
        try:
            return size[key]
        except (KeyError, TypeError):
            return None

    side = read("height") or read("shortest_edge")
    if not side:
        raise ValueError(f"cannot tell the input size of {type(image_processor).__name__} from {size}")
    return int(side)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = parser.add_argument_group("data")
    data.add_argument("--train_dir", help="folder with a caption file and an images folder (instead of the next two)")
    data.add_argument("--captions_file", help="captions.txt, Flickr8k.token.txt or results.csv (detected)")
    data.add_argument("--images_dir", help="the images the caption file names")
    data.add_argument("--train_list", help="train only on these image names (one a line)")
    data.add_argument("--val_dir", help="validation folder like --train_dir")
    data.add_argument("--val_captions_file", help="validation caption file (images from --val_images_dir)")
    data.add_argument("--val_images_dir", help="validation images (default: --images_dir)")
    data.add_argument("--val_list", help="validation image names (one a line), taken from the training files")
    data.add_argument("--val_fraction", type=float, default=0.0, help="hold out this fraction of images instead")
    data.add_argument("--max_val_images", type=int, default=None, help="evaluate on at most this many images")
    augment = parser.add_argument_group("augmentation (flips and colour jitter can make captions false)")
    augment.add_argument(
        "--random_resized_crop_scale", type=float, default=1.0, help="smallest crop area fraction; 1 disables"
    )
    augment.add_argument("--hflip", type=float, default=0.0, help="horizontal flip probability (default 0)")
    augment.add_argument("--color_jitter", type=float, default=0.0, help="brightness/contrast/saturation jitter")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--architecture",
        choices=tuple(ARCHITECTURES),
        help="the captioner family; blip, git and vit-gpt2 start from --model_name_or_path (checked against it), "
        "attention-lstm is built new from the training captions unless --model_name_or_path names one to continue",
    )
    model.add_argument(
        "--model_name_or_path",
        help="captioner hub id or save_pretrained directory: BLIP, GIT, a VisionEncoderDecoderModel (ViT-GPT2) or "
        "an attention-lstm directory",
    )
    lstm = parser.add_argument_group(
        "attention-lstm (a new model: pipeline.attention_lstm; --min_word_count also "
        "for a clip-prefix from configurations)"
    )
    lstm.add_argument("--encoder", choices=("resnet50", "small"), default="resnet50", help="default resnet50")
    lstm.add_argument(
        "--encoder_weights",
        choices=("imagenet", "none"),
        default="imagenet",
        help="ResNet-50's start: torchvision's ResNet50_Weights.IMAGENET1K_V2 (default) or random; small: random",
    )
    lstm.add_argument("--no_attention", action="store_true", help="the plain CNN-LSTM: the grid's mean every step")
    lstm.add_argument(
        "--min_word_count",
        type=int,
        default=5,
        help="the vocabulary: training-caption words seen at least this often (default 5, as Show, Attend and Tell); "
        "rarer words become <unk>",
    )
    lstm.add_argument("--lstm_image_size", type=int, default=224, help="square input side (default 224)")
    lstm.add_argument(
        "--lstm_config",
        default="{}",
        help='JSON of AttentionLSTMConfig widths, e.g. \'{"hidden_size": 256, "embed_size": 128, "dropout": 0.3}\'',
    )
    clip = parser.add_argument_group("clip-prefix (a new model: pipeline.clip_prefix)")
    clip.add_argument("--clip_model", default="openai/clip-vit-base-patch32", help="the CLIP checkpoint (vision half)")
    clip.add_argument("--gpt2_model", default="gpt2", help="the GPT-2 checkpoint and its tokenizer (default gpt2)")
    clip.add_argument("--prefix_length", type=int, default=10, help="GPT-2 prefix embeddings per image (default 10)")
    clip.add_argument(
        "--clip_prefix_config",
        default=None,
        help="JSON: build from configurations instead, random weights and a tokenizer of the training words: "
        '\'{"image_size": 96, "vision": {CLIPVisionConfig overrides}, "decoder": {GPT2Config overrides}}\'',
    )
    model.add_argument("--max_length", type=int, default=40, help="longest training caption in tokens (default 40)")
    model.add_argument("--max_new_tokens", type=int, default=30, help="longest generated caption in evaluation")
    model.add_argument("--num_beams", type=int, default=1, help="beam width in evaluation (default 1, greedy)")
    model.add_argument(
        "--no_meteor",
        action="store_true",
        help="leave METEOR out of the evaluation (its JVM starts slowly; the PTB tokenizer still needs Java)",
    )
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    check_common_arguments(parser, args)
    args.command = command_line("train.caption", argv)
    if args.architecture not in ("attention-lstm", "clip-prefix") and not args.model_name_or_path:
        parser.error(f"--architecture {args.architecture or 'blip, git, vit-gpt2'} needs --model_name_or_path")
    for name in ("lstm_config", "clip_prefix_config"):
        text = getattr(args, name)
        try:
            setattr(args, name, None if text is None else json.loads(text))
        except ValueError as error:
            parser.error(f"--{name} is not JSON: {error}")
        if text is not None and not isinstance(getattr(args, name), dict):
            parser.error(f"--{name} must be a JSON object, got {text!r}")
    if args.min_word_count < 1:
        parser.error(f"--min_word_count must be at least 1, got {args.min_word_count}")
    if args.train_dir:
        args.captions_file, args.images_dir = (str(p) for p in find_caption_data(args.train_dir))
    if not (args.captions_file and args.images_dir):
        parser.error("give --train_dir, or both --captions_file and --images_dir")
    if args.val_dir:
        args.val_captions_file, args.val_images_dir = (str(p) for p in find_caption_data(args.val_dir))
    chosen = [bool(args.val_captions_file), bool(args.val_list), args.val_fraction > 0]
    if sum(chosen) > 1:
        parser.error("choose one of --val_dir/--val_captions_file, --val_list and --val_fraction")
    if not 0.0 <= args.val_fraction < 1.0:
        parser.error(f"--val_fraction must be in [0, 1), got {args.val_fraction}")
    for name in ("random_resized_crop_scale", "hflip", "color_jitter"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            parser.error(f"--{name} must be between 0 and 1, got {getattr(args, name)}")
    if args.random_resized_crop_scale <= 0:
        parser.error("--random_resized_crop_scale must be above 0")
    return args


def split_images(args: argparse.Namespace, captions: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """Training and validation image names from the flags (validation empty when none was asked for)."""
    names = sorted(captions)
    if args.train_list:
        wanted = set(read_name_list(args.train_list))
        names = [name for name in names if name in wanted]
    if args.val_list:
        held_out = set(read_name_list(args.val_list))
        return [n for n in names if n not in held_out], sorted(n for n in held_out if n in captions)
    if args.val_fraction > 0:
        shuffled = names.copy()
        random.Random(args.seed).shuffle(shuffled)
        count = max(1, round(len(names) * args.val_fraction))
        return sorted(shuffled[count:]), sorted(shuffled[:count])
    return names, []


def read_data(args: argparse.Namespace, accelerator: Any) -> tuple[list[str], list[str], dict, str, dict]:
    """Training and validation image names, the validation references and images folder, the training captions.

    Every image is looked for before training, so that a partly extracted data set costs a note, not a crash hours
    into a run: missing ones are skipped and counted like malformed rows.
    """
    train_file = read_captions(args.captions_file)
    accelerator.print(
        f"{args.captions_file}: {train_file.layout} layout, {len(train_file.captions)} images, "
        f"{train_file.skipped} malformed rows skipped"
    )
    train_names, val_names = split_images(args, train_file.captions)
    references, val_images_dir = train_file.captions, args.images_dir
    if args.val_captions_file:
        val_file = read_captions(args.val_captions_file)
        accelerator.print(f"{args.val_captions_file}: {val_file.skipped} malformed rows skipped")
        references, val_images_dir = val_file.captions, args.val_images_dir or args.images_dir
        val_names = sorted(val_file.captions)
    val_names = val_names[: args.max_val_images] if args.max_val_images else val_names
    train_names, note = present_images(train_names, args.images_dir, args.captions_file)
    if val_names:
        val_names, val_note = present_images(val_names, val_images_dir, args.val_captions_file or args.captions_file)
        note = "\n".join(line for line in (note, val_note) if line)
    if note:
        accelerator.print(note)
    return train_names, val_names, references, val_images_dir, train_file.captions


def build_model(args: argparse.Namespace, captions: Sequence[str]) -> tuple[Any, Any]:
    """The model and processor to train: loaded from ``--model_name_or_path`` (its family checked against
    ``--architecture``), or a new attention-lstm or clip-prefix captioner (see the module docstring)."""
    if args.model_name_or_path:
        model, processor = load_caption_model(args.model_name_or_path)
        if args.architecture and caption_family(model) != ARCHITECTURES[args.architecture]:
            raise SystemExit(
                f"error: --architecture {args.architecture} but {args.model_name_or_path} is a "
                f"{caption_family(model)} captioner"
            )
        return model, processor
    from pipeline.hub import ModelUnavailableError

    try:
        if args.architecture == "clip-prefix":
            return new_clip_prefix(args, captions)
        return new_attention_lstm(args, captions)
    except (ValueError, TypeError, OSError, ModelUnavailableError) as error:
        raise SystemExit(f"error: {error}") from None


def new_attention_lstm(args: argparse.Namespace, captions: Sequence[str]) -> tuple[Any, Any]:
    """A new attention-lstm captioner with the vocabulary of ``captions`` (``--min_word_count``)."""
    from pipeline.attention_lstm import build_attention_lstm
    from pipeline.hub import require_torchvision_weights
    from pipeline.word_vocabulary import WordVocabulary

    vocabulary = WordVocabulary.build(captions, min_count=args.min_word_count)
    weights = None
    if args.encoder == "resnet50" and args.encoder_weights == "imagenet":
        weights = require_torchvision_weights("the attention-lstm encoder", "resnet50")
    model, image_processor = build_attention_lstm(
        vocabulary, image_size=args.lstm_image_size, encoder_weights=weights, encoder=args.encoder,
        attention=not args.no_attention, **args.lstm_config,
    )  # fmt: skip
    return model, ImageTextProcessor(image_processor, vocabulary)


def new_clip_prefix(args: argparse.Namespace, captions: Sequence[str]) -> tuple[Any, Any]:
    """A new clip-prefix captioner: from ``--clip_model`` and ``--gpt2_model``, or with ``--clip_prefix_config``
    from configurations, with a GPT-2 tokenizer of the training captions' words (``--min_word_count``)."""
    from pipeline.clip_prefix import build_clip_prefix
    from pipeline.word_vocabulary import WordVocabulary

    if args.clip_prefix_config is not None:
        words = WordVocabulary.build(captions, min_count=args.min_word_count).words[4:]
        settings = {"prefix_length": args.prefix_length, **args.clip_prefix_config}
        model, image_processor, tokenizer = build_clip_prefix(words, **settings)
    else:
        from pipeline.hub import prepare_hub_download

        # Fail in seconds offline, naming the model, not after a hub timeout; load from the cache when both are there.
        halves = (("clip-prefix's CLIP", args.clip_model), ("clip-prefix's GPT-2", args.gpt2_model))
        cached = [prepare_hub_download(label, source) for label, source in halves if not Path(source).is_dir()]
        model, image_processor, tokenizer = build_clip_prefix(
            clip_model=args.clip_model, gpt2_model=args.gpt2_model, prefix_length=args.prefix_length,
            local_files_only=bool(cached) and all(cached),
        )  # fmt: skip
    return model, ImageTextProcessor(image_processor, tokenizer)


def new_model_words(args: argparse.Namespace) -> str:
    """Where a new model started, in words, for its card."""
    if args.architecture == "clip-prefix":
        if args.clip_prefix_config is not None:
            return "a new clip-prefix captioner (random weights)"
        return f"a new clip-prefix captioner ({args.clip_model} and {args.gpt2_model})"
    imagenet = args.encoder == "resnet50" and args.encoder_weights == "imagenet"
    return f"a new attention-lstm ({args.encoder} encoder, {'ImageNet' if imagenet else 'random'} weights)"


def caption_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The captioner's language-modelling loss of one batch (pixel values, labels and, BLIP and GIT, input ids)."""
    return model(**batch).loss


@torch.no_grad()
def generate_captions(
    model: torch.nn.Module, processor: Any, loader: Any, names: Sequence[str], accelerator: Any, **generate_kwargs: Any
) -> dict[str, str]:
    """One generated caption per image of ``loader``, gathered from every process: image name -> caption."""
    model.eval()
    generator = accelerator.unwrap_model(model)
    found = []
    for batch in loader:
        sequences = generator.generate(pixel_values=batch["pixel_values"], **generate_kwargs)
        texts = processor.batch_decode(sequences, skip_special_tokens=True)
        found.extend((index, text.strip()) for index, text in zip(batch["index"].tolist(), texts))
    gathered = accelerator.gather_for_metrics(found, use_gather_object=True)
    return {names[index]: text for index, text in gathered}


def evaluate(
    model: torch.nn.Module,
    processor: Any,
    loader: Any,
    names: Sequence[str],
    references: dict[str, list[str]],
    accelerator: Any,
    meteor: bool = True,
    **generate_kwargs: Any,
) -> dict[str, float]:
    """The :func:`pipeline.evaluation.caption_metrics` of the model's captions of ``names``.

    Every process generates its share; the main process scores them all (one METEOR Java process, not one per GPU)
    and hands the figures to the others.
    """
    from accelerate.utils import broadcast_object_list

    candidates = generate_captions(model, processor, loader, names, accelerator, **generate_kwargs)
    scores = None
    if accelerator.is_main_process:
        scores = caption_metrics({name: references[name] for name in candidates}, candidates, meteor=meteor)
    return broadcast_object_list([scores])[0]


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    accelerator, output_dir = start_run(args)

    # -- data
    try:
        train_names, val_names, references, val_images_dir, train_captions = read_data(args, accelerator)
    except ValueError as error:  # a data set problem is one line, not a traceback
        raise SystemExit(f"error: {error}") from None

    if val_names and accelerator.is_main_process:
        require_java()  # the PTB tokenizer and METEOR: without Java stop now, not after the first epoch
        if not args.no_meteor:
            start_meteor()  # its JVM loads while the model does

    model, processor = build_model(args, [caption for name in train_names for caption in train_captions[name]])
    accelerator.print(f"captioner: {caption_family(model)}, {sum(p.numel() for p in model.parameters())} parameters")
    for change in complete_special_tokens(model, processor.tokenizer):
        accelerator.print(f"config: set {change} from the tokenizer")
    collator = build_train_collator(model, processor, args.max_length)
    args.image_size = processed_image_size(processor.image_processor)
    train_set = CaptionPairs(args.images_dir, train_captions, train_names, build_augmentation(args), args.seed)
    train_loader = DataLoader(
        train_set,
        shuffle=True,
        # Its own generator: a DataLoader draws each iterator's base seed from it, not from the global RNG that a
        # resumed run restores and must not see moved by re-creating the iterator.
        generator=torch.Generator().manual_seed(args.seed),
        batch_size=args.per_device_batch_size,
        collate_fn=collator,
        num_workers=args.num_workers,
    )
    val_loader = None
    if val_names:
        val_loader = DataLoader(
            CaptionImages(val_images_dir, val_names),
            batch_size=args.per_device_batch_size,
            collate_fn=EvalCollator(processor),
            num_workers=args.num_workers,
        )

    # -- optimizer, schedule
    no_decay = ("bias", "norm", "embeddings", "ln_", "wte", "wpe")  # GPT-2 names its norms ln_*, embeddings wte/wpe
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(k in n.lower() for k in no_decay)]},
        {
            "params": [p for n, p in model.named_parameters() if any(k in n.lower() for k in no_decay)],
            "weight_decay": 0.0,
        },
    ]
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate, weight_decay=args.weight_decay)
    generate_kwargs = {"max_new_tokens": args.max_new_tokens, "num_beams": args.num_beams}
    model, progress, metrics = fit(
        accelerator,
        args,
        output_dir,
        model,
        optimizer,
        train_loader,
        val_loader,
        train_set,
        compute_loss=caption_loss,
        evaluate=lambda model, loader: evaluate(
            model, processor, loader, val_names, references, accelerator, not args.no_meteor, **generate_kwargs
        ),
        tracker="caption",
        describe=lambda steps: (
            f"{len(train_names)} training images ({len(train_set)} captions), {len(val_names)} validation images, "
            f"{steps} steps"
        ),
    )

    # -- the model the catalog loads, and the record of the run
    def save(final: torch.nn.Module) -> None:
        final.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
        for weights in output_dir.glob("*.safetensors"):  # written owner-only; every other output is 0644
            make_readable(weights)

    card = {
        "kind": "captioner",
        "base_model": args.model_name_or_path or new_model_words(args),
        "dataset": dataset_name(Path(args.captions_file).parent),
        "evaluated_on": f"{len(val_names)} validation images",
        "data": [
            f"- training: `{Path(args.captions_file).name}`, {len(train_names)} images, {len(train_set)} captions",
            f"- validation: {len(val_names)} images, every reference caption of each",
            f"- images resized to {args.image_size}; augmentation: flip {args.hflip}, colour jitter "
            f"{args.color_jitter}, crop scale {args.random_resized_crop_scale}",
        ],
        "extra_tags": ["image-captioning"],
        # the project's own captioners load with pipeline.load_captioner, not transformers
        "library_name": "pytorch" if caption_family(model) in OWN_FAMILIES else None,
    }
    finish_run(
        accelerator, args, model, progress, metrics, save=save, plotted=CAPTION_METRICS + GENDER_METRICS[1:], card=card
    )
    return metrics


if __name__ == "__main__":
    main()
