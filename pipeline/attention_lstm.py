"""The classic captioner: a CNN encoder and an LSTM decoder with soft attention over the CNN's feature grid.

This is "Show, Attend and Tell" (Xu et al., 2015): a ResNet turns the image into a grid of feature vectors; at every
word an LSTM scores each grid cell against its state, takes the softmax-weighted mean of the cells (the context,
scaled by a learned gate) with the previous word's embedding as its input, and predicts the next word from a
vocabulary built from the training captions (:class:`pipeline.word_vocabulary.WordVocabulary`). The loss adds the
paper's "doubly stochastic" term, which asks every cell to be looked at about once over the caption. With
``attention=False`` it is the plain CNN-LSTM (Show and Tell style): the context is the grid's mean at every step.

Encoders (:data:`ENCODERS`): ``"resnet50"``, torchvision's ResNet-50 up to its last stage (2048 channels, a 7 x 7 grid
at 224 pixels; trained from its ImageNet weights, ``ResNet50_Weights.IMAGENET1K_V2``); ``"small"``, the first two
stages of a one-block-per-stage ResNet (128 channels, stride 8), for the offline shapes model. The grid's cells are
projected to the decoder's width once, before decoding.

A model is a directory: ``config.json`` (``"model_type": "attention-lstm"``), ``model.safetensors``,
``preprocessor_config.json`` (:class:`ResizeNormalize`) and ``vocabulary.json``; :func:`pipeline.load_captioner`
loads it by directory or catalog name and captions with greedy or beam search (``num_beams``, ``max_new_tokens``,
``repetition_penalty``), as it does transformers captioners.

>>> from pipeline.word_vocabulary import WordVocabulary
>>> torch.manual_seed(0) and None
>>> model = AttentionLSTMCaptioner(AttentionLSTMConfig(vocab_size=10, encoder="small", hidden_size=32,
...                                                    embed_size=16, attention_size=16))
>>> model.generate(torch.zeros(2, 3, 64, 64), max_new_tokens=4, num_beams=2).shape[0]
2
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, NamedTuple

import torch
from PIL import Image
from torch import nn

from .decoding import beam_search, greedy_search
from .model_dirs import CONFIG_FILE, WEIGHTS_FILE, CaptionOutput, read_model_config
from .word_vocabulary import WordVocabulary

MODEL_TYPE = "attention-lstm"
PREPROCESSOR_FILE = "preprocessor_config.json"
#: encoder name -> (channels of its grid, its stride in pixels).
ENCODERS = {"resnet50": (2048, 32), "small": (128, 8)}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclasses.dataclass
class AttentionLSTMConfig:
    """The architecture of an :class:`AttentionLSTMCaptioner`, stored as its ``config.json``.

    Attributes:
        vocab_size: the vocabulary's size, special tokens included.
        encoder: one of :data:`ENCODERS`.
        attention: soft attention over the grid (Show, Attend and Tell); False: the grid's mean (CNN-LSTM).
        embed_size, hidden_size, attention_size: word embedding, LSTM and attention widths.
        dropout: before the output layer, in training.
        attention_regularization: the weight of the doubly stochastic attention term in the loss.
        pad_token_id, bos_token_id, eos_token_id: :class:`~pipeline.word_vocabulary.WordVocabulary`'s.
    """

    vocab_size: int
    encoder: str = "resnet50"
    attention: bool = True
    embed_size: int = 256
    hidden_size: int = 512
    attention_size: int = 256
    dropout: float = 0.5
    attention_regularization: float = 1.0
    pad_token_id: int = WordVocabulary.pad_token_id
    bos_token_id: int = WordVocabulary.bos_token_id
    eos_token_id: int = WordVocabulary.eos_token_id
    model_type: str = MODEL_TYPE

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {sorted(ENCODERS)}, got {self.encoder!r}")
        if self.vocab_size < 5:
            raise ValueError(f"vocab_size must count 4 special tokens and at least one word, got {self.vocab_size}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AttentionLSTMConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known - {"architectures"})
        if unknown:
            raise ValueError(f"unknown attention-lstm config keys {unknown}; known: {sorted(known)}")
        return cls(**{key: value for key, value in values.items() if key in known})


class ResizeNormalize:
    """The image processor: an RGB image resized to a square and normalised with ImageNet's mean and deviation.

    >>> ResizeNormalize(64)(images=Image.new("RGB", (80, 40)))["pixel_values"].shape
    torch.Size([1, 3, 64, 64])
    """

    do_center_crop = False

    def __init__(self, image_size: int = 224, image_mean: Any = IMAGENET_MEAN, image_std: Any = IMAGENET_STD):
        self.image_size = int(image_size)
        self.image_mean, self.image_std = list(image_mean), list(image_std)

    @property
    def size(self) -> dict[str, int]:
        return {"height": self.image_size, "width": self.image_size}

    def __call__(self, images: Any, return_tensors: str | None = "pt", **_: Any) -> dict[str, torch.Tensor]:
        from torchvision.transforms.functional import normalize, pil_to_tensor

        batch = images if isinstance(images, (list, tuple)) else [images]
        side = (self.image_size, self.image_size)
        pixels = [
            pil_to_tensor(image.convert("RGB").resize(side, Image.Resampling.BILINEAR)).float() / 255.0
            for image in batch
        ]
        return {"pixel_values": normalize(torch.stack(pixels), self.image_mean, self.image_std)}

    def save_pretrained(self, directory: str | Path, **_: Any) -> None:
        values = {"image_processor_type": type(self).__name__, "image_size": self.image_size,
                  "image_mean": self.image_mean, "image_std": self.image_std}  # fmt: skip
        (Path(directory) / PREPROCESSOR_FILE).write_text(json.dumps(values, indent=1) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path, **_: Any) -> ResizeNormalize:
        values = json.loads((Path(directory) / PREPROCESSOR_FILE).read_text())
        return cls(values["image_size"], values["image_mean"], values["image_std"])


def build_encoder(name: str, weights: Any = None) -> nn.Sequential:
    """The CNN of :data:`ENCODERS` as a module from pixels to a feature grid ``(batch, channels, h, w)``.

    Args:
        name (str): ``"resnet50"`` or ``"small"``.
        weights (torchvision.models.WeightsEnum | None): ResNet-50's weights (``ResNet50_Weights.IMAGENET1K_V2``);
            None leaves it random (a saved model's weights are loaded afterwards).
    """
    from torchvision.models import ResNet, resnet50
    from torchvision.models.resnet import BasicBlock

    if name == "resnet50":
        net = resnet50(weights=weights)
        stages = [net.layer1, net.layer2, net.layer3, net.layer4]
    elif name == "small":
        if weights is not None:
            raise ValueError("the small encoder has no pre-trained weights: pass weights=None")
        net = ResNet(BasicBlock, [1, 1, 1, 1])
        stages = [net.layer1, net.layer2]
    else:
        raise ValueError(f"encoder must be one of {sorted(ENCODERS)}, got {name!r}")
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, *stages)


class Memory(NamedTuple):
    """What the decoder reads at every step: the projected grid cells and their attention keys (None without)."""

    features: torch.Tensor
    keys: torch.Tensor | None

    def select(self, rows: torch.Tensor) -> Memory:
        return Memory(self.features[rows], None if self.keys is None else self.keys[rows])


class AttentionDecoder(nn.Module):
    """The LSTM decoder, one word a step, attending over the grid (see the module docstring)."""

    def __init__(self, config: AttentionLSTMConfig, channels: int):
        super().__init__()
        hidden = config.hidden_size
        self.attention = config.attention
        self.project = nn.Linear(channels, hidden)
        self.init_hidden, self.init_cell = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.embedding = nn.Embedding(config.vocab_size, config.embed_size, padding_idx=config.pad_token_id)
        if self.attention:
            self.attend_features = nn.Linear(hidden, config.attention_size)
            self.attend_state = nn.Linear(hidden, config.attention_size)
            self.attend_score = nn.Linear(config.attention_size, 1)
            self.gate = nn.Linear(hidden, hidden)
        self.cell = nn.LSTMCell(config.embed_size + hidden, hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(hidden, config.vocab_size)

    def start(self, grid: torch.Tensor) -> tuple[Memory, tuple[torch.Tensor, torch.Tensor]]:
        """The memory and the first LSTM state (from the cells' mean) of a grid ``(batch, channels, h, w)``."""
        features = self.project(grid.flatten(2).transpose(1, 2))
        mean = features.mean(dim=1)
        keys = self.attend_features(features) if self.attention else None
        return Memory(features, keys), (torch.tanh(self.init_hidden(mean)), torch.tanh(self.init_cell(mean)))

    def step(
        self, tokens: torch.Tensor, memory: Memory, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
        """The next word's logits, the new state and the attention weights over the cells (None without)."""
        hidden, _ = state
        weights = None
        if memory.keys is not None:
            scores = self.attend_score(torch.tanh(memory.keys + self.attend_state(hidden)[:, None])).squeeze(-1)
            weights = scores.softmax(dim=-1)
            context = (weights[..., None] * memory.features).sum(dim=1) * torch.sigmoid(self.gate(hidden))
        else:
            context = memory.features.mean(dim=1)
        state = self.cell(torch.cat([self.embedding(tokens), context], dim=-1), state)
        return self.output(self.dropout(state[0])), state, weights


class AttentionLSTMCaptioner(nn.Module):
    """CNN encoder + LSTM decoder with soft attention: training loss, greedy and beam search, a directory format.

    Args:
        config (AttentionLSTMConfig): the architecture.
        encoder_weights (torchvision.models.WeightsEnum | None, default None): ResNet-50's starting weights.
    """

    def __init__(self, config: AttentionLSTMConfig, encoder_weights: Any = None):
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config.encoder, encoder_weights)
        self.decoder = AttentionDecoder(config, ENCODERS[config.encoder][0])

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> CaptionOutput:
        """Teacher-forced cross-entropy of ``labels`` (``caption <end>``, padded with -100), the model shifting them
        right behind ``<start>``, plus the attention term (weighted by ``attention_regularization``)."""
        inputs = labels.masked_fill(labels == -100, self.config.pad_token_id)
        start = torch.full_like(inputs[:, :1], self.config.bos_token_id)
        inputs = torch.cat([start, inputs[:, :-1]], dim=1)
        memory, state = self.decoder.start(self.encoder(pixel_values))
        logits, attended = [], torch.zeros_like(memory.features[..., 0])
        for position in range(inputs.shape[1]):
            step_logits, state, weights = self.decoder.step(inputs[:, position], memory, state)
            logits.append(step_logits)
            if weights is not None:
                attended = attended + weights * (labels[:, position] != -100)[:, None]
        stacked = torch.stack(logits, dim=1)
        loss = nn.functional.cross_entropy(stacked.flatten(0, 1), labels.flatten(), ignore_index=-100)
        if self.config.attention and self.config.attention_regularization:
            # The mean over cells (the paper sums them), so that the term's weight does not grow with the grid
            loss = loss + self.config.attention_regularization * ((1.0 - attended) ** 2).mean()
        return CaptionOutput(loss, stacked)

    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor,
        max_new_tokens: int = 30,
        num_beams: int = 1,
        repetition_penalty: float = 1.0,
        length_penalty: float = 1.0,
        **unknown: Any,
    ) -> torch.Tensor:
        """Word ids of one caption per image ``(batch, length)``, each ending with ``<end>`` unless cut at
        ``max_new_tokens``, padded with ``<pad>``.

        Greedy search when ``num_beams`` is 1; otherwise beam search, each finished caption scored by its summed log
        probability over its length ** ``length_penalty``, as transformers' ``generate`` does.
        """
        if unknown:
            raise TypeError(f"the attention-lstm captioner takes no {sorted(unknown)}: its options are "
                            "max_new_tokens, num_beams, repetition_penalty and length_penalty")  # fmt: skip
        if max_new_tokens < 1 or num_beams < 1:
            raise ValueError(f"max_new_tokens and num_beams must be at least 1, got {max_new_tokens}, {num_beams}")
        memory, state = self.decoder.start(self.encoder(pixel_values))
        search = dict(step=self.decoder.step, config=self.config, max_new_tokens=max_new_tokens,
                      repetition_penalty=repetition_penalty)  # fmt: skip
        if num_beams == 1:
            return greedy_search(memory, state, **search)
        rows = [
            beam_search(
                memory.select([row]),
                (state[0][row : row + 1], state[1][row : row + 1]),
                num_beams=num_beams,
                length_penalty=length_penalty,
                **search,
            )  # fmt: skip
            for row in range(pixel_values.shape[0])
        ]
        padded = torch.full((len(rows), max(len(ids) for ids in rows)), self.config.pad_token_id, dtype=torch.long)
        for index, ids in enumerate(rows):
            padded[index, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return padded.to(pixel_values.device)

    def save_pretrained(self, directory: str | Path, **_: Any) -> None:
        """Write ``config.json`` and ``model.safetensors`` (the processor writes its own files beside them)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        values = {"architectures": [type(self).__name__], **dataclasses.asdict(self.config)}
        (directory / CONFIG_FILE).write_text(json.dumps(values, indent=1) + "\n")
        tensors = {name: tensor.contiguous() for name, tensor in self.state_dict().items()}
        save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, dtype: Any = None, **_: Any) -> AttentionLSTMCaptioner:
        """The model of a :meth:`save_pretrained` directory, in eval mode on the CPU, float32 unless ``dtype``.

        Raises:
            OSError: ``config.json`` or ``model.safetensors`` missing.
        """
        from safetensors.torch import load_file

        directory = Path(directory)
        model = cls(AttentionLSTMConfig.from_dict(read_model_config(directory, "an attention-lstm")))
        model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
        return model.to(dtype or torch.float32).eval()


def build_attention_lstm(
    vocabulary: WordVocabulary, *, image_size: int = 224, encoder_weights: Any = None, **config: Any
) -> tuple[AttentionLSTMCaptioner, ResizeNormalize]:
    """A new captioner for ``vocabulary`` and its image processor.

    Args:
        vocabulary (WordVocabulary): built from the training captions.
        image_size (int, default 224): the square input side.
        encoder_weights (torchvision.models.WeightsEnum | None): ResNet-50's starting weights.
        **config: :class:`AttentionLSTMConfig` fields (``encoder``, ``attention``, widths, ``dropout``).
    """
    model = AttentionLSTMCaptioner(AttentionLSTMConfig(vocab_size=len(vocabulary), **config), encoder_weights)
    return model, ResizeNormalize(image_size)


def load_attention_lstm(directory: str | Path, *, dtype: Any = None) -> tuple[Any, Any, WordVocabulary]:
    """The model, image processor and vocabulary of an attention-lstm directory.

    Raises:
        OSError: a file missing.
    """
    if not (Path(directory) / PREPROCESSOR_FILE).is_file():
        raise OSError(f"{Path(directory) / PREPROCESSOR_FILE} does not exist")
    model = AttentionLSTMCaptioner.from_pretrained(directory, dtype=dtype)
    return model, ResizeNormalize.from_pretrained(directory), WordVocabulary.from_pretrained(directory)
