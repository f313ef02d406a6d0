"""Fine-tune a BLIP question answerer (``BlipForQuestionAnswering``) on VQAv2-layout data, scored by VQA accuracy.

A split folder holds VQAv2's two files, ``questions.json`` (``{"questions": [{"image_id", "question",
"question_id"}]}``) and ``annotations.json`` (``{"annotations": [{"question_id", "answers": [{"answer"}, ...],
"answer_type", ...}]}``), with its pictures in ``images/`` (named through an ``instances.json`` when there is one,
as the shapes data set writes it, else VQAv2's ``COCO_<split>_<id>.jpg``; ``--train_images`` / ``--val_images``
point elsewhere, e.g. COCO's ``train2014``). Each question is trained on its most frequent answer (VQAv2's
``multiple_choice_answer``): the question and the picture go to the encoder, the answer ``[bos] answer [SEP]`` is the
text decoder's target (padding never counts). Every epoch, the validation questions are answered by ``generate`` as
:class:`pipeline.answering.AnswerPipeline` does, and scored with the official VQA accuracy
(:func:`pipeline.evaluation.vqa_scores`: overall, by answer type and by question type). The final model and processor
go to ``--output_dir`` with ``save_pretrained`` (``pipeline.load_answerer(<output_dir>)`` and the app load it), with
``metrics.json``, ``history.json``, ``history.png`` and a model card; resumable states in ``checkpoints/step_<N>``.

Launch from the repository root on one or many GPUs (the accelerate flags as for ``train/caption.py``)::

    accelerate launch --multi_gpu --num_processes 2 --mixed_precision bf16 -m train.answer \\
        --model_name_or_path Salesforce/blip-vqa-base --train_dir vqav2/train2014 --train_images coco/train2014 \\
        --val_dir vqav2/val2014 --val_images coco/val2014 --max_val_questions 5000 \\
        --per_device_batch_size 32 --learning_rate 2e-5 --warmup_steps 500 --num_train_epochs 2 \\
        --output_dir runs/blip-vqa --resume_from_checkpoint latest

The offline ``shapes`` answerer is trained by ``python -m train.make_shapes_models --only answerer`` with this
script, on the shapes data set's questions (:func:`train.shapes.questions`).
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from pipeline.catalog import load_answer_model
from pipeline.checkpoints import make_readable
from pipeline.evaluation import read_vqa, vqa_scores
from train.common import (
    add_common_arguments,
    check_common_arguments,
    command_line,
    dataset_name,
    finish_run,
    fit,
    start_run,
)


class QuestionPairs(Dataset):
    """(picture, question, answer) triples of a :func:`~pipeline.evaluation.read_vqa` split; ``index`` keeps each
    question's place for evaluation."""

    def __init__(self, entries: Sequence[dict[str, Any]]):
        self.entries = list(entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        answer = Counter(entry["answers"]).most_common(1)[0][0]
        image = Image.open(entry["image"]).convert("RGB")
        return {"index": index, "image": image, "question": entry["question"], "answer": answer}

    def set_epoch(self, epoch: int) -> None:
        """No augmentation: every epoch sees the same pictures (``fit`` calls this for the scripts that augment)."""


class QuestionCollator:
    """A batch for ``BlipForQuestionAnswering``: the processor's pixels and question ids, and the answers as
    ``decoder_input_ids`` (``[bos] answer [SEP]``, padded) with ``labels`` (the same, padding -100)."""

    def __init__(self, processor: Any, decoder_start: int, max_length: int = 16):
        self.processor, self.decoder_start, self.max_length = processor, decoder_start, max_length

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        inputs = self.processor(
            images=[item["image"] for item in items],
            text=[item["question"] for item in items],
            padding=True,
            return_tensors="pt",
        )
        tokenizer = self.processor.tokenizer
        answers = tokenizer(
            [item["answer"] for item in items],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        decoder_ids = answers["input_ids"].clone()
        decoder_ids[:, 0] = self.decoder_start
        labels = decoder_ids.masked_fill(answers["attention_mask"] == 0, -100)
        return {
            **inputs,
            "decoder_input_ids": decoder_ids,
            "decoder_attention_mask": answers["attention_mask"],
            "labels": labels,
            "index": torch.tensor([item["index"] for item in items]),
        }


def _kept(entries: list[dict[str, Any]], types: str | None) -> list[dict[str, Any]]:
    """The entries of the asked question types (all when None)."""
    wanted = {name.strip() for name in types.split(",")} if types else None
    return [entry for entry in entries if wanted is None or entry["question_type"] in wanted]


def answer_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**{key: value for key, value in batch.items() if key != "index"}).loss


def evaluate(
    model: torch.nn.Module,
    processor: Any,
    loader: Any,
    entries: Sequence[dict[str, Any]],
    accelerator: Any,
    tokens: int,
) -> dict[str, float]:
    """Answer every validation question (each process its share, gathered) and score them with VQA accuracy."""
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.eval()
    pad = processor.tokenizer.pad_token_id
    found: dict[int, str] = {}
    with torch.inference_mode():
        for batch in loader:
            ids = unwrapped.generate(
                pixel_values=batch["pixel_values"],
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                max_new_tokens=tokens,
            )
            ids = accelerator.pad_across_processes(ids, dim=1, pad_index=pad)
            indices, ids = accelerator.gather_for_metrics((batch["index"], ids))
            for index, sequence in zip(indices.tolist(), ids):
                found[index] = " ".join(processor.tokenizer.decode(sequence, skip_special_tokens=True).split())
    model.train()
    order = sorted(found)
    return vqa_scores([found[index] for index in order], [entries[index] for index in order])


def _parameter_groups(model: torch.nn.Module, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The trained parameters, the vision encoder's in a group of its own when it has its own learning rate (the
    scheduler scales every group's rate alike)."""
    vision = {id(parameter) for parameter in model.vision_model.parameters()}
    trained = [parameter for parameter in model.parameters() if parameter.requires_grad]
    if args.vision_learning_rate is None:
        return [{"params": trained}]
    return [
        {"params": [parameter for parameter in trained if id(parameter) not in vision]},
        {"params": [parameter for parameter in trained if id(parameter) in vision], "lr": args.vision_learning_rate},
    ]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model_name_or_path", required=True, help="a BLIP VQA hub id or save_pretrained directory to start from"
    )
    parser.add_argument("--train_dir", required=True, help="training split: questions.json and annotations.json")
    parser.add_argument("--train_images", default=None, help="its pictures (default: <train_dir>/images)")
    parser.add_argument("--val_dir", default=None, help="validation split, scored every epoch (default: none)")
    parser.add_argument("--val_images", default=None, help="its pictures (default: <val_dir>/images)")
    parser.add_argument("--max_val_questions", type=int, default=None, help="score the first N validation questions")
    parser.add_argument("--max_answer_tokens", type=int, default=8, help="longest answer generated (default 8)")
    parser.add_argument(
        "--question_types",
        default=None,
        help="comma-separated question_type values to train and score on (e.g. colour,shape: what the segmenter "
        "does not answer); default: all",
    )
    parser.add_argument(
        "--freeze_vision", action="store_true", help="keep the vision encoder as it is (e.g. a captioner's)"
    )
    parser.add_argument(
        "--vision_learning_rate",
        type=float,
        default=None,
        help="peak learning rate of the vision encoder, when it trains (default: --learning_rate); lower keeps more "
        "of a captioner's encoder",
    )
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    check_common_arguments(parser, args)
    if args.vision_learning_rate is not None and not args.vision_learning_rate > 0:
        parser.error(f"--vision_learning_rate must be positive, got {args.vision_learning_rate}")
    for name in ("max_val_questions", "max_answer_tokens"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    args.command = command_line("train.answer", argv)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    accelerator, output_dir = start_run(args)
    try:
        train_entries = _kept(read_vqa(args.train_dir, images_dir=args.train_images), args.question_types)
        val_entries = (
            _kept(read_vqa(args.val_dir, images_dir=args.val_images), args.question_types) if args.val_dir else []
        )
        val_entries = val_entries[: args.max_val_questions]
        if not train_entries:
            raise ValueError(f"no training question of the types {args.question_types!r} in {args.train_dir}")
    except (ValueError, KeyError) as error:  # a data set problem is one line, not a traceback
        raise SystemExit(f"error: {error}") from None
    model, processor = load_answer_model(args.model_name_or_path)
    if args.freeze_vision:
        model.vision_model.requires_grad_(False)
    collator = QuestionCollator(processor, model.decoder_start_token_id)
    train_set = QuestionPairs(train_entries)
    train_loader = DataLoader(
        train_set,
        shuffle=True,
        generator=torch.Generator().manual_seed(args.seed),  # its own: see train/caption.py
        batch_size=args.per_device_batch_size,
        collate_fn=collator,
        num_workers=args.num_workers,
    )
    val_loader = None
    if val_entries:
        val_loader = DataLoader(
            QuestionPairs(val_entries), batch_size=args.per_device_batch_size, collate_fn=collator,
            num_workers=args.num_workers,
        )  # fmt: skip
    groups = _parameter_groups(model, args)
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate, weight_decay=args.weight_decay)
    model, progress, metrics = fit(
        accelerator, args, output_dir, model, optimizer, train_loader, val_loader, train_set,
        compute_loss=answer_loss,
        evaluate=lambda model, loader: evaluate(
            model, processor, loader, val_entries, accelerator, args.max_answer_tokens
        ),
        tracker="answer",
        describe=lambda n: f"{len(train_entries)} training, {len(val_entries)} validation questions, {n} steps",
    )  # fmt: skip

    def save(final: torch.nn.Module) -> None:
        final.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
        for weights in output_dir.glob("*.safetensors"):
            make_readable(weights)

    card = {
        "kind": "answerer",
        "base_model": args.model_name_or_path,
        "dataset": dataset_name(args.train_dir),
        "evaluated_on": f"{len(val_entries)} validation questions",
        "data": [
            f"- training: {len(train_entries)} questions (VQAv2 layout), each trained on its most frequent answer",
            f"- validation: {len(val_entries)} questions, VQA accuracy against every human answer",
        ],
        "extra_tags": ["visual-question-answering"],
    }
    finish_run(accelerator, args, model, progress, metrics, save=save, plotted=("accuracy",), card=card)
    return metrics


if __name__ == "__main__":
    main()
