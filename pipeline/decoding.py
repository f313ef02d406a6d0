"""Greedy and beam search over a step-by-step decoder (the LSTM captioners of :mod:`pipeline.attention_lstm`).

A decoder is a ``step(tokens, memory, state) -> (logits, state, extra)`` function; ``memory`` has ``select(rows)``
(the rows of some images or beams) and ``state`` is a tuple of tensors whose first dimension is the row. The start
token starts every caption; the start and padding tokens are never chosen; a caption ends at its end token.
``repetition_penalty`` works as transformers' ``RepetitionPenaltyLogitsProcessor``: the logit of a word already in
the caption is divided by it when positive and multiplied by it when negative.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Step = Callable[[torch.Tensor, Any, tuple], tuple[torch.Tensor, tuple, Any]]


def _adjust(logits: torch.Tensor, generated: torch.Tensor | None, config: Any, penalty: float) -> torch.Tensor:
    """Forbid the start and padding tokens and penalise repeats (``generated``: ``(rows, length)`` ids so far)."""
    logits = logits.float().clone()
    logits[:, [config.bos_token_id, config.pad_token_id]] = float("-inf")
    if penalty != 1.0 and generated is not None and generated.numel():
        seen = logits.gather(1, generated)
        logits.scatter_(1, generated, torch.where(seen > 0, seen / penalty, seen * penalty))
    return logits


def greedy_search(
    memory: Any, state: tuple, *, step: Step, config: Any, max_new_tokens: int, repetition_penalty: float = 1.0
) -> torch.Tensor:
    """The most likely word at every step, for every row at once: ``(rows, length)`` ids, padded after the end."""
    rows = memory.features.shape[0]
    device = memory.features.device
    tokens = torch.full((rows,), config.bos_token_id, dtype=torch.long, device=device)
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    chosen: list[torch.Tensor] = []
    for _ in range(max_new_tokens):
        logits, state, _ = step(tokens, memory, state)
        generated = torch.stack(chosen, dim=1) if chosen else None
        tokens = _adjust(logits, generated, config, repetition_penalty).argmax(dim=-1)
        tokens = tokens.masked_fill(finished, config.pad_token_id)
        chosen.append(tokens)
        finished |= tokens == config.eos_token_id
        if bool(finished.all()):
            break
    return torch.stack(chosen, dim=1)


def beam_search(
    memory: Any,
    state: tuple,
    *,
    step: Step,
    config: Any,
    max_new_tokens: int,
    num_beams: int,
    repetition_penalty: float = 1.0,
    length_penalty: float = 1.0,
) -> list[int]:
    """The best caption of one image (``memory`` of one row) among ``num_beams`` beams: its ids, end token included
    when it ended.

    Every step keeps the ``num_beams`` best unfinished captions; a caption that ends is scored by its summed log
    probability divided by its length ** ``length_penalty``. The search stops when ``num_beams`` captions have ended
    and no unfinished one scores better at its current length (transformers' ``early_stopping=False`` rule), or at
    ``max_new_tokens``.
    """
    device = memory.features.device
    tokens = torch.full((1,), config.bos_token_id, dtype=torch.long, device=device)
    scores = torch.zeros(1, device=device)
    sequences: list[list[int]] = [[]]
    finished: list[tuple[float, list[int]]] = []
    for length in range(1, max_new_tokens + 1):
        rows = torch.zeros(len(sequences), dtype=torch.long, device=device)
        logits, state, _ = step(tokens, memory.select(rows), state)
        generated = torch.tensor(sequences, dtype=torch.long, device=device) if length > 1 else None
        logits = _adjust(logits, generated, config, repetition_penalty)
        totals = (logits.log_softmax(dim=-1) + scores[:, None]).flatten()
        vocab = logits.shape[-1]
        kept: list[tuple[float, int, int]] = []
        for value, index in zip(*totals.topk(min(2 * num_beams, totals.numel()))):
            beam, word = divmod(int(index), vocab)
            if word == config.eos_token_id:
                finished.append((float(value) / length**length_penalty, [*sequences[beam], word]))
            else:
                kept.append((float(value), beam, word))
            if len(kept) == num_beams:
                break
        finished.sort(key=lambda item: -item[0])
        finished = finished[:num_beams]
        best_open = kept[0][0] / length**length_penalty if kept else float("-inf")
        if not kept or (len(finished) == num_beams and finished[-1][0] >= best_open):
            break
        beams = torch.tensor([beam for _, beam, _ in kept], dtype=torch.long, device=device)
        state = tuple(part[beams] for part in state)
        tokens = torch.tensor([word for _, _, word in kept], dtype=torch.long, device=device)
        scores = torch.tensor([value for value, _, _ in kept], device=device)
        sequences = [[*sequences[beam], word] for _, beam, word in kept]
    else:
        finished += [(float(value) / max_new_tokens**length_penalty, ids) for value, ids in zip(scores, sequences)]
    return max(finished, key=lambda item: item[0])[1]
