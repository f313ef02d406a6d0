"""Word-level vocabularies: the LSTM captioners' tokenizer built from training captions, and a GPT-2 tokenizer of a
few words for the small offline models (:func:`byte_level_bpe`).

Classic CNN-LSTM captioners (Show and Tell, Show, Attend and Tell) predict whole words from a vocabulary of the words
that occur at least ``min_count`` times in the training captions (5 in the Show, Attend and Tell code for Flickr8k
and COCO); rarer ones become ``<unk>``. Words are lower-case runs of letters and digits, with inner hyphens and
apostrophes kept ("t-shirt", "man's"); other punctuation is dropped.

>>> vocabulary = WordVocabulary.build(["A red circle.", "a red square", "a blue circle"], min_count=2)
>>> vocabulary.words[4:]
['a', 'circle', 'red']
>>> vocabulary("a blue circle", add_special_tokens=False)["input_ids"]
[4, 3, 5]
>>> vocabulary.decode([1, 4, 6, 5, 2, 0], skip_special_tokens=True)
'a red circle'
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

#: The special tokens, in this order: ids 0 to 3.
SPECIAL_TOKENS = ("<pad>", "<start>", "<end>", "<unk>")
VOCABULARY_FILE = "vocabulary.json"
_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


def split_words(text: str) -> list[str]:
    """The caption's words, lower case, punctuation dropped.

    >>> split_words("A man's T-shirt, 2 dogs.")
    ['a', "man's", 't-shirt', '2', 'dogs']
    """
    return _WORD.findall(text.lower())


class WordVocabulary:
    """Words to ids and back, with the tokenizer methods the caption pipeline and training call.

    Args:
        words (Sequence[str]): the vocabulary after the special tokens (:data:`SPECIAL_TOKENS` are put in front).
    """

    pad_token_id, bos_token_id, eos_token_id, unk_token_id = range(4)

    def __init__(self, words: Sequence[str]):
        self.words = [*SPECIAL_TOKENS, *(word for word in dict.fromkeys(words) if word not in SPECIAL_TOKENS)]
        self.ids = {word: index for index, word in enumerate(self.words)}

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 5) -> WordVocabulary:
        """The words of ``captions`` that occur at least ``min_count`` times, most frequent first (ties by word)."""
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count!r}")
        counts = Counter(word for caption in captions for word in split_words(caption))
        kept = sorted((word for word, count in counts.items() if count >= min_count), key=lambda w: (-counts[w], w))
        if not kept:
            raise ValueError(f"no word occurs {min_count} times or more in the training captions")
        return cls(kept)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        """The ids of the text's words, unknown words as ``<unk>``, no start or end token."""
        return [self.ids.get(word, self.unk_token_id) for word in split_words(text)]

    def __call__(self, text: str, add_special_tokens: bool = True, **_: Any) -> dict[str, list[int]]:
        """``{"input_ids": ids}``, between ``<start>`` and ``<end>`` when ``add_special_tokens``."""
        ids = self.encode(text)
        return {"input_ids": [self.bos_token_id, *ids, self.eos_token_id] if add_special_tokens else ids}

    def decode(self, ids: Iterable[int] | Any, skip_special_tokens: bool = True, **_: Any) -> str:
        """The words of ``ids`` joined by spaces; with ``skip_special_tokens`` it stops at the first ``<end>`` and
        leaves the other special tokens out (``<unk>`` too: a caption read aloud should not say it)."""
        words = []
        for index in (int(i) for i in ids):
            if skip_special_tokens and index == self.eos_token_id:
                break
            if skip_special_tokens and 0 <= index < len(SPECIAL_TOKENS):
                continue
            words.append(self.words[index] if 0 <= index < len(self.words) else SPECIAL_TOKENS[3])
        return " ".join(words)

    def batch_decode(self, sequences: Iterable[Any], skip_special_tokens: bool = True, **_: Any) -> list[str]:
        return [self.decode(ids, skip_special_tokens=skip_special_tokens) for ids in sequences]

    def save_pretrained(self, directory: str | Path, **_: Any) -> None:
        """Write :data:`VOCABULARY_FILE`: the words in id order, special tokens first."""
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / VOCABULARY_FILE).write_text(json.dumps({"words": self.words}, indent=0) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path, **_: Any) -> WordVocabulary:
        path = Path(directory) / VOCABULARY_FILE
        if not path.is_file():
            raise OSError(f"{path} does not exist: an LSTM captioner directory holds its {VOCABULARY_FILE}")
        words = json.loads(path.read_text())["words"]
        if tuple(words[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"{path}: the first words must be {SPECIAL_TOKENS}, got {words[:4]}")
        return cls(words[len(SPECIAL_TOKENS) :])


def byte_level_bpe(words: Sequence[str]) -> Any:
    """A GPT-2 (byte-level BPE) tokenizer whose vocabulary is ``words``, each with and without its leading space.

    The merges are learned offline by the ``tokenizers`` library from the words alone (no byte alphabet beyond their
    letters), so every word is one token and the vocabulary stays small; ``<|endoftext|>`` (id 0) is GPT-2's start,
    end and padding token.

    >>> byte_level_bpe(["a", "red", "circle"]).tokenize("a red circle")
    ['a', 'Ġred', 'Ġcircle']
    """
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Tokenizer

    words = list(dict.fromkeys(words))
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=100_000, special_tokens=["<|endoftext|>"], show_progress=False)
    bpe.train_from_iterator([*words, *(" " + word for word in words)], trainer)
    learned = json.loads(bpe.to_str())["model"]
    return GPT2Tokenizer(vocab=learned["vocab"], merges=[tuple(pair) for pair in learned["merges"]])
