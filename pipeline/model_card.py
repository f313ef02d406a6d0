"""Model cards: the ``README.md`` that the training scripts leave in every model folder they save, with the metadata
block the Hugging Face Hub reads (``library_name``, ``pipeline_tag``, ``base_model``, ``license``, ``tags`` and a
``model-index`` of the measured figures), and the one line of it that the app shows about a fine-tuned model.

Written by ``train/`` (:func:`write_model_card`), read by the served app (:func:`card_summary`): one format, one
module. A summary never holds a path: the base model is named only when it is a Hub id, the data set by its name.

>>> facts = CardFacts(kind="captioner", base_model="Salesforce/blip-image-captioning-base", dataset="shapes",
...                   metrics={"BLEU-4": 0.5, "CIDEr": 1.25}, evaluated_on="the validation split (4 images)",
...                   command="python -m train.caption --train_dir data/shapes/train ...", steps=30)
>>> card = render_model_card(facts)
>>> card.splitlines()[0], "pipeline_tag: image-to-text" in card, "value: 1.25" in card
('---', True, True)
>>> summary_of(card)
'Fine-tuned from Salesforce/blip-image-captioning-base on shapes (30 steps); BLEU-4 0.500, CIDEr 1.250 on the \
validation split (4 images)'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: What each kind of model is to the Hub: its task (``pipeline_tag``) and the library that loads it.
HUB_TASKS = {
    "captioner": {"pipeline_tag": "image-to-text", "library_name": "transformers"},
    "segmenter": {"pipeline_tag": "image-segmentation", "library_name": "pytorch"},
    "stuff": {"pipeline_tag": "image-segmentation", "library_name": "transformers"},
    "answerer": {"pipeline_tag": "visual-question-answering", "library_name": "transformers"},
}
#: The tag that marks a card as this project's (the app reads only those).
TAG = "vision-caption-segment"
#: The figures a summary names, by kind, when they were measured.
HEADLINE = {
    "captioner": ("BLEU-4", "CIDEr"),
    "segmenter": ("segm_AP", "bbox_AP"),
    "stuff": ("mIoU", "pixel_accuracy"),
    "answerer": ("accuracy",),
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class CardFacts:
    """What a card says about one trained model.

    Attributes:
        kind: ``"captioner"``, ``"segmenter"``, ``"stuff"`` or ``"answerer"``.
        base_model: where training started: a Hub id (it goes into the metadata), else words such as "torchvision
            maskrcnn_resnet50_fpn_v2 with COCO weights" (the body only).
        dataset: the data set's name (a folder's name, never its path).
        metrics: the evaluation figures the script measured, by name; empty when it evaluated nothing.
        evaluated_on: what the figures were measured on ("the validation split (40 images)").
        command: the exact command that trained the model.
        steps: optimizer steps taken.
        data: Markdown lines on the data layout (folders, counts, categories).
        license: the licence identifier of the weights (Hub metadata ``license``).
        extra_tags: tags beside :data:`TAG` and the task's.
        library_name: the Hub's ``library_name``; None: the kind's (transformers for captioners), "pytorch" for the
            project's own captioners (attention-lstm, clip-prefix), which transformers does not load.
    """

    kind: str
    base_model: str
    dataset: str
    metrics: Mapping[str, float]
    evaluated_on: str
    command: str
    steps: int
    data: list[str] = field(default_factory=list)
    license: str = "apache-2.0"
    extra_tags: list[str] = field(default_factory=list)
    library_name: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in HUB_TASKS:
            raise ValueError(f"kind must be one of {sorted(HUB_TASKS)}, got {self.kind!r}")


def is_hub_id(name: str) -> bool:
    """Whether ``name`` reads as a Hub repository id (``owner/name``) and is not a folder here.

    >>> is_hub_id("Salesforce/blip-image-captioning-base"), is_hub_id("/tmp/blip"), is_hub_id("blip")
    (True, False, False)
    """
    return bool(_HUB_ID.match(name)) and not Path(name).exists()


def render_model_card(facts: CardFacts) -> str:
    """The card's text: the metadata block (valid ``ModelCardData``, with a ``model-index`` of the figures) and a
    body that says what the model is, how it was trained and measured, and how to load it."""
    from huggingface_hub import EvalResult, ModelCardData

    task = HUB_TASKS[facts.kind]
    hub_base = facts.base_model if is_hub_id(facts.base_model) else None
    results = [
        EvalResult(
            task_type=task["pipeline_tag"],
            dataset_type=facts.dataset,
            dataset_name=facts.dataset,
            dataset_split="validation",
            metric_type=name.lower(),
            metric_name=name,
            metric_value=round(float(value), 4),
        )
        for name, value in facts.metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]
    data = ModelCardData(
        library_name=facts.library_name or task["library_name"],
        pipeline_tag=task["pipeline_tag"],
        base_model=hub_base,
        license=facts.license,
        tags=[TAG, task["pipeline_tag"], *facts.extra_tags],
        model_name=f"{facts.kind} fine-tuned on {facts.dataset}",
        eval_results=results or None,
    )
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(_body(facts, results)) + "\n"


def _body(facts: CardFacts, results: list) -> list[str]:
    figures = [f"| {r.metric_name} | {r.metric_value} |" for r in results]
    measured = (
        [f"Measured on {facts.evaluated_on} at the end of training:", "", "| metric | value |", "|---|---|", *figures]
        if figures
        else ["Not evaluated: the run had no validation data."]
    )
    loader = {
        "captioner": "load_captioner",
        "segmenter": "load_segmenter",
        "stuff": "load_stuff",
        "answerer": "load_answerer",
    }[facts.kind]
    return [
        f"# A {facts.kind} fine-tuned on {facts.dataset}",
        "",
        summary_line(facts.kind, facts.base_model, facts.dataset, facts.steps, _headline(facts.kind, results)) + ".",
        "",
        "## Base model",
        "",
        facts.base_model,
        "",
        "## Data",
        "",
        *(facts.data or [f"The {facts.dataset} data set."]),
        "",
        "## Evaluation",
        "",
        *measured,
        "",
        "## Training command",
        "",
        "```bash",
        facts.command,
        "```",
        "",
        "## Use",
        "",
        "```python",
        f"from pipeline import {loader}",
        "",
        f'model = {loader}("THIS_FOLDER_OR_HUB_ID", device="cpu")',
        "```",
        "",
        "## Licence",
        "",
        f"`{facts.license}`; the base model's and the data's terms apply too.",
    ]


def _headline(kind: str, results: list) -> dict[str, float]:
    values = {r.metric_name: r.metric_value for r in results}
    return {name: values[name] for name in HEADLINE[kind] if name in values}


def summary_line(kind: str, base_model: str, dataset: str, steps: int, figures: Mapping[str, float]) -> str:
    """One line about a trained model, with no path in it (a base that is not a Hub id is "a local model")."""
    base = base_model if is_hub_id(base_model) else ("a local model" if "/" in base_model else base_model)
    line = f"Fine-tuned from {base} on {dataset} ({steps} steps)"
    if figures:
        line += "; " + ", ".join(f"{name} {value:.3f}" for name, value in figures.items())
    return line


def write_model_card(directory: str | Path, facts: CardFacts) -> Path:
    """Write ``README.md`` into the model folder ``directory``; its path."""
    path = Path(directory) / "README.md"
    path.write_text(render_model_card(facts))
    return path


def summary_of(text: str) -> str | None:
    """The card's summary line (its first paragraph, with the measurement's scope), or None when the text is not a
    card this project wrote."""
    from huggingface_hub import ModelCard

    card = ModelCard(text, ignore_metadata_errors=True)
    if TAG not in (card.data.tags or []):
        return None
    paragraphs = [part.strip() for part in card.text.split("\n\n") if part.strip()]
    line = paragraphs[1].rstrip(".") if len(paragraphs) > 1 else ""
    scope = re.search(r"^Measured on (.+) at the end of training:", card.text, flags=re.MULTILINE)
    if scope and "; " in line:
        line += f" on {scope.group(1)}"
    return line or None


def card_summary(directory: str | Path) -> str | None:
    """The summary of the card in a model folder, or None when there is none (or it is not this project's)."""
    path = Path(directory) / "README.md"
    if not path.is_file():
        return None
    try:
        return summary_of(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
