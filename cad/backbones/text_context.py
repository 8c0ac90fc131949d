"""The text model's condition tower (the CAD authors' text-to-image RIN, issue 11): the frozen encoder's token states,
projected to the latent width, with the coherence token and ``num_registers`` learned register tokens prepended,
through ``num_layers`` self-attention layers with LayerScale (init 0.1). In every RIN block the latents cross-attend
to the result before reading the image (``RINBlock(context=...)``)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from cad.backbones.layers import SelfAttentionBlock, key_padding_mask

LAYER_SCALE_INIT = 0.1


class TextContext(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, *, num_layers: int = 2, num_registers: int = 16,
                 coherence: bool = True):
        super().__init__()
        self.num_prefix = int(coherence) + num_registers
        self.registers = nn.Parameter(torch.zeros(num_registers, dim))
        nn.init.trunc_normal_(self.registers, std=0.02, a=-0.04, b=0.04)
        self.layers = nn.ModuleList(SelfAttentionBlock(dim, num_heads, mlp_ratio, 0.0, 0.0, LAYER_SCALE_INIT)
                                    for _ in range(num_layers))
        self.coherence = coherence

    def no_weight_decay(self) -> set[str]:
        """The register tokens are learned vectors like RIN's latents: not decayed (cad.training.optim)."""
        return {"registers"}

    def forward(self, tokens: Tensor, token_mask: Tensor | None, coherence: Tensor | None) -> tuple[Tensor, Tensor]:
        """tokens (B, L, D) projected text states, token_mask (B, L) bool (True = valid), coherence (B, D) or None ->
        (context (B, prefix + L, D), mask (B, prefix + L) bool); the prefix tokens are always valid."""
        b = tokens.shape[0]
        if (coherence is not None) != self.coherence:
            raise ValueError(f"TextContext built with coherence={self.coherence} got "
                             f"{'a' if coherence is not None else 'no'} coherence vector")
        prefix = [coherence[:, None]] if coherence is not None else []
        prefix.append(self.registers.to(tokens.dtype).expand(b, -1, -1))
        context = torch.cat(prefix + [tokens], dim=1)
        valid = torch.ones(b, self.num_prefix, dtype=torch.bool, device=tokens.device)
        mask = torch.cat([valid, token_mask if token_mask is not None else torch.ones_like(tokens[..., 0]).bool()], 1)
        for layer in self.layers:
            context = layer(context, key_padding_mask(mask))
        return context, mask
