"""The captioner pipeline: an image in, one sentence out, for each family of transformers captioners.

A captioner's family (:func:`caption_family`) is read from ``model.config.model_type``; it decides how an image (and
a prompt) becomes model inputs and whether a prompt is accepted:

- ``"blip"``: ``BlipForConditionalGeneration`` with its ``BlipProcessor``. A prompt (``"a picture of"``) is BLIP's
  conditional captioning: the caption continues it and starts with it.
- ``"git"``: ``GitForCausalLM`` with its ``GitProcessor`` (a CLIP image processor and a BERT tokenizer), e.g.
  ``microsoft/git-base-coco``. ``generate`` gets the pixel values and starts from the ``[CLS]`` token; a prompt
  becomes the text prefix ``[CLS] + prompt`` (no ``[SEP]``), as in transformers' GIT examples, and the caption starts
  with it.
- ``"vision-encoder-decoder"``: a ``VisionEncoderDecoderModel`` (ViT-GPT2 such as
  ``nlpconnect/vit-gpt2-image-captioning``: a ViT encoder, a GPT-2 decoder, a ``ViTImageProcessor`` and a GPT-2
  tokenizer). transformers has no processor class for it (``AutoProcessor`` returns the tokenizer alone, which is why
  such a directory used to fail with "You need to specify either text or text_target"), so
  :class:`ImageTextProcessor` pairs the two. Decoding starts from the config's ``decoder_start_token_id``. Prompts
  are refused: these checkpoints are trained to caption from the start token only.
- ``"attention-lstm"``: the classic CNN encoder + LSTM decoder with soft attention (Show, Attend and Tell;
  :mod:`pipeline.attention_lstm`), not a transformers model: its own directory format, a word vocabulary and an
  image processor paired by :class:`ImageTextProcessor`. Greedy and beam search take the same options; no prompts.
- ``"clip-prefix"``: CLIP prefix captioning (ClipCap; :mod:`pipeline.clip_prefix`): a CLIP vision encoder, an MLP to
  a GPT-2 prefix, GPT-2; its own directory format, a CLIP image processor and GPT-2's tokenizer paired by
  :class:`ImageTextProcessor`, decoding by GPT-2's ``generate``; no prompts.
- ``"image-text-to-text"``: any other ``AutoModelForImageTextToText`` model whose processor takes
  ``(images=..., text=...)``, called the BLIP way (the prompt, if any, goes to the processor as text).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .base import Pipeline
from .options import Option, by_name

#: The caption families, see the module docstring.
FAMILIES = ("blip", "git", "vision-encoder-decoder", "attention-lstm", "clip-prefix", "image-text-to-text")
#: The families whose processor is an image processor and a tokenizer side by side (the pipeline calls each).
PAIRED_FAMILIES = ("git", "vision-encoder-decoder", "attention-lstm", "clip-prefix")
#: The families that are not transformers models (their directories load with their own modules).
OWN_FAMILIES = ("attention-lstm", "clip-prefix")
#: The families that accept a prompt.
PROMPT_FAMILIES = ("blip", "git", "image-text-to-text")


#: The captioners' call options, declared once (see :mod:`pipeline.options`).
CAPTION_OPTIONS = (
    Option("prompt", "text", None, "a text the caption continues (BLIP, GIT)", hook="preprocess", max_length=200,
           none_means="no prompt"),
    Option("max_new_tokens", "int", 30, "the longest caption, in tokens", hook="forward", low=1, limit=60),
    Option("num_beams", "int", 1, "1 is greedy search (fastest); more is beam search", hook="forward", low=1,
           limit=8),
    Option("repetition_penalty", "float", 1.0, "above 1 discourages repeated words", hook="forward", low=1.0,
           limit=2.0),
    Option("generate_kwargs", "mapping", None, "further model.generate arguments", hook="forward", none_means="none",
           public=False),
    Option("sentence", "bool", True, "the caption as a sentence (capital letter, full stop)", public=False),
)  # fmt: skip


def caption_family(model_or_config: Any) -> str:
    """The caption family of a model or its config: one of :data:`FAMILIES`.

    >>> from transformers import GitConfig
    >>> caption_family(GitConfig()), caption_family(object())
    ('git', 'image-text-to-text')
    """
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    return model_type if model_type in FAMILIES else "image-text-to-text"


class ImageTextProcessor:
    """An image processor and a tokenizer used as one processor, for models transformers has none for.

    ``VisionEncoderDecoderModel`` checkpoints keep a ``preprocessor_config.json`` and tokenizer files side by side;
    this is what ``nlpconnect/vit-gpt2-image-captioning``'s model card loads (``ViTImageProcessor`` and
    ``AutoTokenizer``), with the ``ProcessorMixin`` methods the pipeline and ``train/caption.py`` use.

    Args:
        image_processor (transformers.BaseImageProcessor): turns images into ``pixel_values``.
        tokenizer (transformers.PreTrainedTokenizerBase): the decoder's tokenizer.

    >>> processor = ImageTextProcessor.from_pretrained("nlpconnect/vit-gpt2-image-captioning")  # doctest: +SKIP
    >>> processor(images=image, return_tensors="pt")["pixel_values"].shape  # doctest: +SKIP
    torch.Size([1, 3, 224, 224])
    """

    def __init__(self, image_processor: Any, tokenizer: Any):
        self.image_processor = image_processor
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, source: str | Path, **options: Any) -> ImageTextProcessor:
        """Load both halves from a directory or hub id (``options`` as for ``AutoTokenizer.from_pretrained``)."""
        from transformers import AutoImageProcessor, AutoTokenizer

        image_processor = AutoImageProcessor.from_pretrained(source, **options)
        return cls(image_processor, AutoTokenizer.from_pretrained(source, **options))

    def __call__(self, images: Any = None, text: Any = None, return_tensors: str | None = "pt", **kwargs: Any) -> dict:
        """``pixel_values`` of ``images`` and the tokenizer's ids of ``text`` (each only when given)."""
        if images is None and text is None:
            raise ValueError("ImageTextProcessor needs images, text or both, got neither")
        outputs: dict[str, Any] = {}
        if images is not None:
            outputs.update(self.image_processor(images=images, return_tensors=return_tensors))
        if text is not None:
            outputs.update(self.tokenizer(text, return_tensors=return_tensors, **kwargs))
        return outputs

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> None:
        """Write both halves into one directory, the layout :meth:`from_pretrained` (and the model card) reads."""
        self.image_processor.save_pretrained(directory, **kwargs)
        self.tokenizer.save_pretrained(directory, **kwargs)


def load_caption_model(source: str | Path, *, dtype: Any = None, **options: Any) -> tuple[Any, Any]:
    """The model and processor of a captioner directory or hub id, chosen from its config.

    ``AutoModelForImageTextToText`` maps ``blip``, ``git`` and ``vision-encoder-decoder`` configs (among others) to
    their generation classes; the processor is ``AutoProcessor``'s, except for a ``VisionEncoderDecoderModel``
    (:class:`ImageTextProcessor`).

    Args:
        source (str | Path): a ``save_pretrained`` directory or a hub id.
        dtype (torch.dtype | None, default None): the weights' dtype; None keeps float32.
        **options: ``from_pretrained`` options (``local_files_only``, ``revision``, ...).

    Returns:
        tuple ``(model, processor)``: the model in eval mode on the CPU, and its processor.

    Raises:
        OSError: files missing (no ``config.json``, no weights) or not downloadable.
        ValueError: a config transformers does not know as an image-to-text generator.
    """
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    own = own_family(source)
    if own == "attention-lstm":
        from .attention_lstm import load_attention_lstm

        model, image_processor, vocabulary = load_attention_lstm(source, dtype=dtype)
        return model, ImageTextProcessor(image_processor, vocabulary)
    if own == "clip-prefix":
        from .clip_prefix import load_clip_prefix

        model, image_processor, tokenizer = load_clip_prefix(source, dtype=dtype)
        return model, ImageTextProcessor(image_processor, tokenizer)
    config = AutoConfig.from_pretrained(source, **options)
    if caption_family(config) == "vision-encoder-decoder":
        processor = ImageTextProcessor.from_pretrained(source, **options)
    else:
        processor = AutoProcessor.from_pretrained(source, **options)
    model = AutoModelForImageTextToText.from_pretrained(source, config=config, dtype=dtype or torch.float32, **options)
    return model.eval(), processor


def own_family(source: str | Path) -> str | None:
    """The family of :data:`OWN_FAMILIES` a local directory holds, from its ``config.json``; None otherwise.

    >>> own_family("pipeline/weights/shapes-lstm"), own_family("Salesforce/blip-image-captioning-base")
    ('attention-lstm', None)
    """
    path = Path(source) / "config.json"
    if not path.is_file():
        return None
    try:
        model_type = json.loads(path.read_text()).get("model_type")
    except (ValueError, AttributeError):
        return None  # transformers reports a broken config better
    return model_type if model_type in OWN_FAMILIES else None


class CaptionPipeline(Pipeline):
    """Caption images with a transformers generation model of any family in :data:`FAMILIES`.

    Args:
        model (transformers.PreTrainedModel): ``BlipForConditionalGeneration``, ``GitForCausalLM``,
            ``VisionEncoderDecoderModel`` or another image-text-to-text generator; moved to ``device``, eval mode.
        processor (Any): the model's processor; for a ``VisionEncoderDecoderModel`` anything with ``image_processor``
            and ``tokenizer`` (:class:`ImageTextProcessor`), as for GIT (``GitProcessor``).
        name (str, default "custom"): the catalog name, reported in results.
        device, batch_size, max_pixels: see :class:`pipeline.base.Pipeline`.

    Call options (:data:`CAPTION_OPTIONS`):
        prompt (str | None, default None): a text the caption continues and starts with (BLIP's conditional
            captioning, GIT's text prefix); a ``ValueError`` for the families outside :data:`PROMPT_FAMILIES`.
        sentence (bool, default True): return the caption as a sentence to show and read aloud (first letter upper
            case, a full stop at the end, single spaces: :func:`caption_sentence`); False gives the model's text.
        max_new_tokens (int, default 30): longest caption, in tokens (at least 1).
        num_beams (int, default 1): 1 is greedy search, more is beam search.
        repetition_penalty (float, default 1.0): above 1 discourages repeated words.
        generate_kwargs (dict | None, default None): any further ``model.generate`` arguments.

    Returns (per image):
        dict with
        - ``"caption"``: the generated text, special tokens and surrounding spaces removed, as a sentence unless
          ``sentence=False``.

    >>> from pipeline import load_captioner
    >>> captioner = load_captioner("shapes")
    >>> captioner("space/examples/shapes.png", num_beams=3)["caption"]
    'Three shapes a yellow triangle a blue circle and a red triangle.'
    """

    call_options = by_name(CAPTION_OPTIONS)

    def __init__(self, model: Any, processor: Any, *, name: str = "custom", **kwargs: Any):
        super().__init__(**kwargs)
        if not hasattr(model, "generate"):
            raise TypeError(f"model must be a transformers generation model, got {type(model).__name__}")
        self.family = caption_family(model)
        if self.family in PAIRED_FAMILIES and not (
            hasattr(processor, "image_processor") and hasattr(processor, "tokenizer")
        ):
            raise TypeError(
                f"a {self.family} captioner needs a processor with an image_processor and a tokenizer "
                f"(GitProcessor, pipeline.captioning.ImageTextProcessor), got {type(processor).__name__}"
            )
        self.name = name
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.model = model.to(self.device).eval()
        self.dtype = next(self.model.parameters()).dtype

    @property
    def accepts_prompt(self) -> bool:
        """Whether this captioner's family takes a ``prompt`` (see :data:`PROMPT_FAMILIES`)."""
        return self.family in PROMPT_FAMILIES

    def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict, dict, dict]:
        preprocess_kwargs, forward_kwargs, postprocess_kwargs = super()._sanitize_parameters(**kwargs)
        prompt = preprocess_kwargs.get("prompt")
        if prompt and prompt.strip() and not self.accepts_prompt:
            raise ValueError(
                f"prompt {prompt!r}: the {self.family} captioner {self.name!r} captions from its start token "
                f"only and takes no prompt; prompts work with the {', '.join(PROMPT_FAMILIES)} families"
            )
        return preprocess_kwargs, forward_kwargs, postprocess_kwargs

    def preprocess(self, image: Image.Image, prompt: str | None = None) -> dict[str, torch.Tensor]:
        text = prompt.strip() if prompt else None
        if self.family in PAIRED_FAMILIES:
            pixels = self.processor.image_processor(images=image, return_tensors="pt")["pixel_values"]
            inputs = {"pixel_values": pixels}
            if text:  # GIT only: the prompt check refused it for the others
                ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                inputs["input_ids"] = torch.tensor([[self.tokenizer.cls_token_id, *ids]])
            return inputs
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
        # GPT-2 decodes its leading space (" a man ..."); nlpconnect's model card strips it the same way.
        text = self.tokenizer.decode(sequence, skip_special_tokens=True).strip()
        return {"caption": caption_sentence(text) if sentence else text}


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
