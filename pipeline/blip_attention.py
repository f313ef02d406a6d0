"""BLIP's vision attention through PyTorch's fused attention kernel (:func:`pipeline.kernels.fuse_blip_attention`).

A module of its own, imported only when a BLIP is loaded (it imports transformers), and at module level so that a
model that uses it can be pickled (``torch.save(model)``) and loaded again.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.models.blip.modeling_blip import BlipAttention


class FusedBlipAttention(BlipAttention):
    """:class:`~transformers.models.blip.modeling_blip.BlipAttention` through
    :func:`torch.nn.functional.scaled_dot_product_attention`: the same weights and arithmetic, with no score tensor of
    its own; it gives no attention weights back (None in their place)."""

    def forward(self, hidden_states: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, None]:
        batch, length, width = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(batch, length, 3, self.num_heads, self.head_dim)
        qkv = qkv.permute(2, 0, 3, 1, 4)
        context = torch.nn.functional.scaled_dot_product_attention(
            qkv[0], qkv[1], qkv[2], dropout_p=self.dropout.p if self.training else 0.0, scale=self.scale
        )
        return self.projection(context.transpose(1, 2).reshape(batch, length, width)), None
