"""Pre-LayerNorm transformer layers for RIN: attention, MLP, stochastic depth and the two residual blocks.

They mirror the blocks of the authors' RIN (``CrossAttentionBlock`` / ``SelfAttentionBlock``):
``h = h + drop_path(attn(LN(h), context)); h = h + drop_path(MLP(LN(h)))``, GELU MLP with dropout after the
activation, and in cross-attention only the queries are normalised (the context enters as it is). Attention runs
through ``torch.nn.functional.scaled_dot_product_attention``; projections are fused (one ``qkv`` or ``kv`` matmul).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): drop a residual branch per sample, rescale the kept ones. Off in eval."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class MLP(nn.Sequential):
    """Linear -> GELU -> Dropout -> Linear, hidden width ``ratio * dim``."""

    def __init__(self, dim: int, ratio: int, dropout: float):
        super().__init__(nn.Linear(dim, ratio * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ratio * dim, dim))


def key_padding_mask(mask: Tensor | None) -> Tensor | None:
    """(B, N) bool, True = valid key -> the (B, 1, 1, N) boolean ``attn_mask`` that SDPA broadcasts over
    heads/queries."""
    return None if mask is None else mask[:, None, None, :]


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out(h.transpose(1, 2).reshape(b, n, c))


class CrossAttention(nn.Module):
    """Multi-head cross-attention from ``dim_q`` queries to ``dim_kv`` context, inner width ``attention_dim``."""

    def __init__(self, dim_q: int, dim_kv: int, attention_dim: int, num_heads: int):
        super().__init__()
        if attention_dim % num_heads:
            raise ValueError(f"attention_dim={attention_dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.attention_dim = attention_dim
        self.q = nn.Linear(dim_q, attention_dim)
        self.kv = nn.Linear(dim_kv, 2 * attention_dim)
        self.out = nn.Linear(attention_dim, dim_q)

    def forward(self, x: Tensor, context: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        b, n, _ = x.shape
        m = context.shape[1]
        d = self.attention_dim // self.num_heads
        q = self.q(x).view(b, n, self.num_heads, d).transpose(1, 2)
        k, v = self.kv(context).view(b, m, 2, self.num_heads, d).permute(2, 0, 3, 1, 4).unbind(0)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out(h.transpose(1, 2).reshape(b, n, self.attention_dim))


class LayerScale(nn.Module):
    """A learned per-channel gain on a residual branch (CaiT, Touvron et al. 2021), initialised to ``init``."""

    def __init__(self, dim: int, init: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma.to(x.dtype)


class SelfAttentionBlock(nn.Module):
    """Pre-LN residual self-attention + MLP (RIN's "compute" layer on the latents); with ``layer_scale`` each
    residual branch has a :class:`LayerScale` starting at that value (the text model's text layers, init 0.1)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, dropout: float, drop_path: float,
                 layer_scale: float | None = None):
        super().__init__()
        self.norm_attn = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SelfAttention(dim, num_heads)
        self.norm_mlp = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, mlp_ratio, dropout)
        self.drop_path = DropPath(drop_path)
        scale = (lambda: LayerScale(dim, layer_scale)) if layer_scale is not None else nn.Identity
        self.scale_attn, self.scale_mlp = scale(), scale()

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        x = x + self.drop_path(self.scale_attn(self.attn(self.norm_attn(x), attn_mask)))
        return x + self.drop_path(self.scale_mlp(self.mlp(self.norm_mlp(x))))


class CrossAttentionBlock(nn.Module):
    """Pre-LN residual cross-attention + MLP (RIN's "read" and "write" layers).

    The attention width is ``min(dim_q, dim_kv)``, as in the authors' RIN.
    """

    def __init__(self, dim_q: int, dim_kv: int, num_heads: int, mlp_ratio: int, dropout: float, drop_path: float):
        super().__init__()
        self.norm_attn = nn.LayerNorm(dim_q, eps=1e-6)
        self.attn = CrossAttention(dim_q, dim_kv, min(dim_q, dim_kv), num_heads)
        self.norm_mlp = nn.LayerNorm(dim_q, eps=1e-6)
        self.mlp = MLP(dim_q, mlp_ratio, dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, context: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm_attn(x), context, attn_mask))
        return x + self.drop_path(self.mlp(self.norm_mlp(x)))
