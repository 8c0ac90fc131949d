"""A small convolutional U-Net behind the RIN interface, for quick CPU runs on 28x28 data.

In the style of DDPM / improved DDPM (Ho et al. 2020; Nichol & Dhariwal 2021): residual blocks with GroupNorm and
SiLU, the conditioning vector entering every block as a scale-shift of the second normalisation, self-attention at the
lowest resolution only. Unlike DDPM, no convolution is zero-initialised: the suite trains with LAMB (the authors'
optimizer), whose trust ratio scales each step to the weight's norm, so a zero-initialised weight matrix grows only
geometrically (0.3% per step at lr 3e-3) and the network barely learns in a short run. PyTorch's default init is used
throughout (tests/test_class_conditional.py checks that the U-Net learns under LAMB).
The conditioning vector is the sum of the time, label and coherence embeddings plus the masked mean of the
projected text tokens; spatial maps (and the coherence map) are extra input channels. No self-conditioning:
``forward`` ignores ``self_cond`` and returns ``(eps_hat, None)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cad.conditioning.condition import Condition
from cad.conditioning.embedders import ConditionEmbedder, ConditioningSpec, append_condition_maps, masked_mean


class ResBlock(nn.Module):
    """GN -> SiLU -> conv -> GN * (1 + scale) + shift -> SiLU -> dropout -> conv, plus a (1x1) skip."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, num_groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2 = nn.GroupNorm(num_groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """GN -> multi-head self-attention over the H*W positions (SDPA) -> 1x1 projection, residual."""

    def __init__(self, channels: int, num_heads: int, num_groups: int):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels={channels} is not divisible by attention_heads={num_heads}")
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(num_groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # (B, heads, HW, d)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Stage(nn.Module):
    """One residual block, optionally followed by self-attention: the unit the U-Net stacks at each resolution."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, num_groups: int, dropout: float,
                 attention_heads: int | None):
        super().__init__()
        self.res = ResBlock(in_channels, out_channels, emb_dim, num_groups, dropout)
        self.attn = AttentionBlock(out_channels, attention_heads, num_groups) if attention_heads else None

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        x = self.res(x, emb)
        return x if self.attn is None else self.attn(x)


class Downsample(nn.Conv2d):
    def __init__(self, channels: int):
        super().__init__(channels, channels, 3, stride=2, padding=1)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """Convolutional U-Net denoiser: ``forward(x_t, gamma, cond, self_cond=None) -> (eps_hat, None)``.

    Resolutions halve once per entry of ``channel_mults`` after the first (28 -> 14 -> 7 for three entries);
    ``num_res_blocks`` residual blocks per resolution on the way down, one more on the way up (skip connections);
    with ``attention``, every block at the lowest resolution and the middle is followed by self-attention.
    """

    uses_self_conditioning = False
    channels_last = True  # its weights are stored NHWC (cad.tasks.base): faster oneDNN convolutions

    def __init__(
        self,
        *,
        image_size: int,
        in_channels: int,
        num_classes: int | None,
        use_coherence: bool,
        token_dim: int | None = None,
        map_channels: int | None = None,
        mix_labels_and_confidence: bool = False,
        metadata_dim: int | None = None,
        coherence_as_metadata: bool = False,
        metadata_gate: str = "gamma",
        base_channels: int,
        channel_mults: tuple[int, ...],
        num_res_blocks: int,
        attention: bool,
        attention_heads: int,
        num_groups: int,
        dropout: float = 0.0,
    ):
        super().__init__()
        if image_size % 2 ** (len(channel_mults) - 1):
            raise ValueError(f"image_size={image_size} cannot be halved {len(channel_mults) - 1} times")
        self.spec = ConditioningSpec(num_classes, use_coherence, token_dim, map_channels,
                                     mix_label_coherence=mix_labels_and_confidence, metadata_dim=metadata_dim,
                                     coherence_as_metadata=coherence_as_metadata, metadata_gate=metadata_gate)
        self.image_size = image_size
        self.in_channels = in_channels
        emb_dim = 4 * base_channels
        self.condition = ConditionEmbedder(self.spec, emb_dim, sinusoid_dim=base_channels)

        channels = [base_channels * m for m in channel_mults]
        lowest = len(channels) - 1
        self.conv_in = nn.Conv2d(in_channels + self.spec.extra_channels, channels[0], 3, padding=1)

        # Every entry of `down` yields one skip; every Stage of `up` consumes one.
        self.down = nn.ModuleList()
        skip_channels = [channels[0]]
        ch = channels[0]
        for level, out_ch in enumerate(channels):
            heads = attention_heads if attention and level == lowest else None
            for _ in range(num_res_blocks):
                self.down.append(Stage(ch, out_ch, emb_dim, num_groups, dropout, heads))
                ch = out_ch
                skip_channels.append(ch)
            if level != lowest:
                self.down.append(Downsample(ch))
                skip_channels.append(ch)

        self.mid = nn.ModuleList([
            Stage(ch, ch, emb_dim, num_groups, dropout, attention_heads if attention else None),
            Stage(ch, ch, emb_dim, num_groups, dropout, None),
        ])

        self.up = nn.ModuleList()
        for level in reversed(range(len(channels))):
            heads = attention_heads if attention and level == lowest else None
            for _ in range(num_res_blocks + 1):
                self.up.append(Stage(ch + skip_channels.pop(), channels[level], emb_dim, num_groups, dropout, heads))
                ch = channels[level]
            if level != 0:
                self.up.append(Upsample(ch))

        self.out_norm = nn.GroupNorm(num_groups, ch)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, padding=1)

    def forward(
        self, x_t: Tensor, gamma: Tensor, cond: Condition, self_cond: Tensor | None = None
    ) -> tuple[Tensor, None]:
        """x_t (B, C, H, W), gamma (B,) in [0, 1] -> (eps_hat (B, C, H, W), None); ``self_cond`` is ignored."""
        h, skips, vector = self.encode(x_t, gamma, cond)
        return self.decode(h, skips, vector), None

    def embed(self, gamma: Tensor, cond: Condition) -> Tensor:
        """The conditioning vector every residual block receives."""
        emb = self.condition(gamma, cond)
        vector = emb.vectors.sum(dim=1)
        if emb.tokens is not None:
            vector = vector + masked_mean(emb.tokens, emb.token_mask)
        return vector

    def encode(self, x_t: Tensor, gamma: Tensor, cond: Condition, hint: Tensor | None = None
               ) -> tuple[Tensor, list[Tensor], Tensor]:
        """Down path and middle: (middle features, skip features, conditioning vector). ``hint`` (features of the
        first layer's width) is added after ``conv_in``: how a ControlNet feeds its control image
        (cad.backbones.controlnet)."""
        self.spec.check(cond, x_t.shape[0])
        vector = self.embed(gamma, cond)
        h = self.conv_in(append_condition_maps(x_t, cond, self.spec))
        if hint is not None:
            h = h + hint
        skips = [h]
        for layer in self.down:
            h = layer(h, vector) if isinstance(layer, Stage) else layer(h)
            skips.append(h)
        for stage in self.mid:
            h = stage(h, vector)
        return h, skips, vector

    def decode(self, h: Tensor, skips: list[Tensor], vector: Tensor) -> Tensor:
        skips = list(skips)
        for layer in self.up:
            h = layer(torch.cat([h, skips.pop()], dim=1), vector) if isinstance(layer, Stage) else layer(h)
        return self.conv_out(F.silu(self.out_norm(h)))
