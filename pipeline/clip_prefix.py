"""CLIP prefix captioning ("ClipCap", Mokady et al., 2021): a CLIP image embedding mapped to a GPT-2 prefix.

A CLIP vision encoder (transformers ``CLIPVisionModel``) embeds the image (its pooled, post-layer-norm class token);
an MLP maps that one vector to ``prefix_length`` vectors of GPT-2's width (ClipCap's MLP mapping network: one hidden
layer, tanh); GPT-2 (``GPT2LMHeadModel``) reads them as the embeddings of a prefix and writes the caption after it.
Training is GPT-2's language-modelling loss on the caption tokens only (the prefix positions are not scored);
decoding is GPT-2's own ``generate`` from the prefix embeddings, so greedy and beam search, ``max_new_tokens`` and
``repetition_penalty`` are transformers' own.

A model is a directory: ``config.json`` (``"model_type": "clip-prefix"``, the CLIP vision and GPT-2 configurations
inside it), ``model.safetensors``, the CLIP image processor's ``preprocessor_config.json`` and GPT-2's tokenizer
files; :func:`pipeline.load_captioner` loads it by directory or catalog name. ``train/caption.py --architecture
clip-prefix`` builds one from a CLIP checkpoint and a GPT-2 checkpoint (ClipCap used ``openai/clip-vit-base-patch32``
and ``gpt2``), or from configurations (:func:`build_clip_prefix`, the offline shapes model).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .model_dirs import CONFIG_FILE, WEIGHTS_FILE, CaptionOutput, read_model_config

MODEL_TYPE = "clip-prefix"


@dataclasses.dataclass
class ClipPrefixConfig:
    """The architecture of a :class:`ClipPrefixCaptioner`, stored as its ``config.json``.

    Attributes:
        vision: the ``CLIPVisionConfig`` as a dict.
        decoder: the ``GPT2Config`` as a dict.
        prefix_length: how many GPT-2 embeddings the image becomes (ClipCap: 10).
        mapping_hidden: the MLP's hidden width; None: halfway between CLIP's width and the prefix's, as ClipCap.
        eos_token_id, pad_token_id: the tokenizer's end and padding ids (GPT-2: both ``<|endoftext|>``).
    """

    vision: dict[str, Any]
    decoder: dict[str, Any]
    prefix_length: int = 10
    mapping_hidden: int | None = None
    eos_token_id: int = 50256
    pad_token_id: int = 50256
    model_type: str = MODEL_TYPE

    def __post_init__(self) -> None:
        if self.prefix_length < 1:
            raise ValueError(f"prefix_length must be at least 1, got {self.prefix_length}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ClipPrefixConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known - {"architectures"})
        if unknown:
            raise ValueError(f"unknown clip-prefix config keys {unknown}; known: {sorted(known)}")
        return cls(**{key: value for key, value in values.items() if key in known})


class ClipPrefixCaptioner(nn.Module):
    """CLIP vision encoder + MLP mapping + GPT-2: training loss, transformers' greedy and beam search, a directory.

    Args:
        config (ClipPrefixConfig): the architecture.
        vision (transformers.CLIPVisionModel | None): a pre-trained encoder; None builds one from ``config.vision``.
        decoder (transformers.GPT2LMHeadModel | None): a pre-trained GPT-2; None builds one from ``config.decoder``.
    """

    def __init__(self, config: ClipPrefixConfig, vision: Any = None, decoder: Any = None):
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModel, GPT2Config, GPT2LMHeadModel

        self.config = config
        self.vision = vision or CLIPVisionModel(CLIPVisionConfig.from_dict(config.vision))
        self.decoder = decoder or GPT2LMHeadModel(GPT2Config.from_dict(config.decoder))
        clip_width, gpt_width = self.vision.config.hidden_size, self.decoder.config.n_embd
        hidden = config.mapping_hidden or (clip_width + gpt_width * config.prefix_length) // 2
        self.mapping = nn.Sequential(
            nn.Linear(clip_width, hidden), nn.Tanh(), nn.Linear(hidden, gpt_width * config.prefix_length)
        )

    def prefix(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The GPT-2 prefix embeddings of the images: ``(batch, prefix_length, n_embd)``."""
        pooled = self.vision(pixel_values=pixel_values).pooler_output
        return self.mapping(pooled).view(pooled.shape[0], self.config.prefix_length, -1)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> CaptionOutput:
        """GPT-2's loss of ``labels`` (``caption <eos>``, padded with -100) after the image's prefix."""
        prefix = self.prefix(pixel_values)
        tokens = labels.masked_fill(labels == -100, self.config.pad_token_id)
        embeds = torch.cat([prefix, self.decoder.get_input_embeddings()(tokens).to(prefix.dtype)], dim=1)
        unscored = torch.full(prefix.shape[:2], -100, dtype=labels.dtype, device=labels.device)
        mask = torch.cat([torch.ones_like(unscored), (labels != -100).long()], dim=1)
        output = self.decoder(inputs_embeds=embeds, attention_mask=mask, labels=torch.cat([unscored, labels], dim=1))
        return CaptionOutput(output.loss, output.logits)

    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor,
        max_new_tokens: int = 30,
        num_beams: int = 1,
        repetition_penalty: float = 1.0,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """Token ids of one caption per image (the new tokens only), from GPT-2's ``generate`` after the prefix."""
        prefix = self.prefix(pixel_values)
        mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device)
        return self.decoder.generate(
            inputs_embeds=prefix,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            repetition_penalty=repetition_penalty,
            do_sample=False,
            eos_token_id=self.config.eos_token_id,
            pad_token_id=self.config.pad_token_id,
            **generate_kwargs,
        )

    def save_pretrained(self, directory: str | Path, **_: Any) -> None:
        """Write ``config.json`` and ``model.safetensors`` (GPT-2's tied output layer stored once)."""
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        values = dataclasses.asdict(self.config)
        values["vision"], values["decoder"] = self.vision.config.to_dict(), self.decoder.config.to_dict()
        (directory / CONFIG_FILE).write_text(json.dumps({"architectures": [type(self).__name__], **values}) + "\n")
        save_model(self, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, dtype: Any = None, **_: Any) -> ClipPrefixCaptioner:
        """The model of a :meth:`save_pretrained` directory, in eval mode on the CPU, float32 unless ``dtype``.

        Raises:
            OSError: ``config.json`` or ``model.safetensors`` missing.
        """
        from safetensors.torch import load_model

        directory = Path(directory)
        model = cls(ClipPrefixConfig.from_dict(read_model_config(directory, "a clip-prefix")))
        load_model(model, str(directory / WEIGHTS_FILE))
        return model.to(dtype or torch.float32).eval()


def build_clip_prefix(
    words: Any = None,
    *,
    clip_model: str | None = None,
    gpt2_model: str | None = None,
    image_size: int = 224,
    vision: dict[str, Any] | None = None,
    decoder: dict[str, Any] | None = None,
    prefix_length: int = 10,
    **options: Any,
) -> tuple[ClipPrefixCaptioner, Any, Any]:
    """A new clip-prefix captioner, its image processor and its tokenizer.

    Either from pre-trained halves (``clip_model`` and ``gpt2_model``: hub ids or directories, ``options`` going to
    their ``from_pretrained``), or random ones from configurations: a CLIP vision encoder of ``image_size`` with the
    ``vision`` overrides, a GPT-2 with the ``decoder`` overrides and a byte-level BPE of ``words``
    (:func:`pipeline.word_vocabulary.byte_level_bpe`).

    >>> model, _, tokenizer = build_clip_prefix(["a", "red", "circle"], image_size=32, prefix_length=2,
    ...     vision={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
    ...             "patch_size": 8}, decoder={"n_embd": 16, "n_layer": 1, "n_head": 2})
    >>> model.generate(torch.zeros(1, 3, 32, 32), max_new_tokens=3, num_beams=2).shape[0]
    1
    """
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPVisionModel, GPT2LMHeadModel

    if clip_model and gpt2_model:
        encoder = CLIPVisionModel.from_pretrained(clip_model, **options)
        gpt2 = GPT2LMHeadModel.from_pretrained(gpt2_model, **options)
        image_processor = CLIPImageProcessor.from_pretrained(clip_model, **options)
        tokenizer = AutoTokenizer.from_pretrained(gpt2_model, **options)
    elif clip_model or gpt2_model:
        raise ValueError("give both clip_model and gpt2_model, or neither (random weights from configurations)")
    else:
        from transformers import CLIPVisionConfig, GPT2Config

        from .word_vocabulary import byte_level_bpe

        if not words:
            raise ValueError("a clip-prefix captioner from configurations needs the words of its vocabulary")
        tokenizer = byte_level_bpe(words)
        special = tokenizer.eos_token_id
        encoder = CLIPVisionModel(CLIPVisionConfig(image_size=image_size, **(vision or {})))
        gpt2 = GPT2LMHeadModel(
            GPT2Config(vocab_size=len(tokenizer), bos_token_id=special, eos_token_id=special, **(decoder or {}))
        )
        side = {"height": image_size, "width": image_size}
        image_processor = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size=side)
    end = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
    config = ClipPrefixConfig(
        vision=encoder.config.to_dict(), decoder=gpt2.config.to_dict(), prefix_length=prefix_length,
        eos_token_id=end, pad_token_id=pad,
    )  # fmt: skip
    return ClipPrefixCaptioner(config, encoder, gpt2), image_processor, tokenizer


def load_clip_prefix(directory: str | Path, *, dtype: Any = None) -> tuple[ClipPrefixCaptioner, Any, Any]:
    """The model, image processor and tokenizer of a clip-prefix directory.

    Raises:
        OSError: a file missing.
    """
    from transformers import CLIPImageProcessor, GPT2TokenizerFast

    model = ClipPrefixCaptioner.from_pretrained(directory, dtype=dtype)
    return model, CLIPImageProcessor.from_pretrained(directory), GPT2TokenizerFast.from_pretrained(directory)
