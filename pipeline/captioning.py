"""The captioner pipeline: BLIP (or any transformers image-text-to-text generator) turning an image into a sentence."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from .base import Pipeline


class CaptionPipeline(Pipeline):
    """Caption images with a BLIP-style ``generate`` model and its processor.

    Args:
        model (transformers.PreTrainedModel): e.g. ``BlipForConditionalGeneration``; moved to ``device``, eval mode.
        processor (transformers.ProcessorMixin): the model's processor (image processor and tokenizer).
        name (str, default "custom"): the catalog name, reported in results.
        device, batch_size, max_pixels: see :class:`pipeline.base.Pipeline`.

    Call options:
        prompt (str | None, default None): BLIP's conditional prompt, e.g. ``"a picture of"``; the caption then
            continues it (and starts with it).
        sentence (bool, default True): return the caption as a sentence to show and read aloud (first letter upper
            case, a full stop at the end, single spaces: :func:`caption_sentence`); False gives the model's text.
        max_new_tokens (int, default 30): longest caption, in tokens.
        num_beams (int, default 1): 1 is greedy search, more is beam search.
        repetition_penalty (float, default 1.0): above 1 discourages repeated words.
        generate_kwargs (dict | None, default None): any further ``model.generate`` arguments.

    Returns (per image):
        dict with
        - ``"caption"``: the generated text, special tokens removed, as a sentence unless ``sentence=False``.

    >>> captioner = load_captioner("shapes")  # doctest: +SKIP
    >>> captioner("street.jpg", num_beams=3)["caption"]  # doctest: +SKIP
    'A red circle to the left of a blue square.'
    """

    def __init__(self, model: Any, processor: Any, *, name: str = "custom", **kwargs: Any):
        super().__init__(**kwargs)
        if not hasattr(model, "generate"):
            raise TypeError(f"model must be a transformers generation model, got {type(model).__name__}")
        self.name = name
        self.processor = processor
        self.model = model.to(self.device).eval()
        self.dtype = next(self.model.parameters()).dtype

    def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict, dict, dict]:
        preprocess_kwargs, forward_kwargs, postprocess_kwargs = {}, {}, {}
        if "prompt" in kwargs:
            preprocess_kwargs["prompt"] = kwargs.pop("prompt")
        if "sentence" in kwargs:
            postprocess_kwargs["sentence"] = bool(kwargs.pop("sentence"))
        for key in ("max_new_tokens", "num_beams", "repetition_penalty", "generate_kwargs"):
            if key in kwargs:
                forward_kwargs[key] = kwargs.pop(key)
        if kwargs:
            raise TypeError(f"CaptionPipeline got unknown call options {sorted(kwargs)}")
        _check_positive_int("max_new_tokens", forward_kwargs.get("max_new_tokens", 1))
        _check_positive_int("num_beams", forward_kwargs.get("num_beams", 1))
        return preprocess_kwargs, forward_kwargs, postprocess_kwargs

    def preprocess(self, image: Image.Image, prompt: str | None = None) -> dict[str, torch.Tensor]:
        if prompt is not None and not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string or None, got {type(prompt).__name__}")
        text = prompt.strip() if prompt else None
        return dict(self.processor(images=image, text=text or None, return_tensors="pt"))

    def _forward(
        self,
        model_inputs: list[dict[str, torch.Tensor]],
        max_new_tokens: int = 30,
        num_beams: int = 1,
        repetition_penalty: float = 1.0,
        generate_kwargs: dict | None = None,
    ) -> list[torch.Tensor]:
        # One call option set per batch, so every prompt in a batch is the same and the text inputs stack as they are.
        batch = {key: torch.cat([inputs[key] for inputs in model_inputs]).to(self.device) for key in model_inputs[0]}
        batch["pixel_values"] = batch["pixel_values"].to(self.dtype)
        sequences = self.model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            repetition_penalty=repetition_penalty,
            **(generate_kwargs or {}),
        )
        return list(sequences.cpu())

    def postprocess(self, sequence: torch.Tensor, sentence: bool = True) -> dict[str, str]:
        text = self.processor.decode(sequence, skip_special_tokens=True)
        return {"caption": caption_sentence(text) if sentence else text}


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def caption_sentence(caption: str) -> str:
    """The caption as a sentence to show and read aloud: first letter upper case, a full stop at the end.

    >>> caption_sentence("a cat sitting on a couch")
    'A cat sitting on a couch.'
    """
    text = " ".join(caption.split())
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."
