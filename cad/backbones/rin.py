"""Recurrent Interface Network (RIN; Jabri, Fleet & Chen, ICML 2023) as the CAD authors use it (paper sec. 4.1).

The image is cut into patches, the *data tokens*. A smaller set of *latent tokens* does most of the computation:
each block reads the data into the latents (cross-attention), processes the latents (self-attention layers) and
writes back into the data (cross-attention). The latent set is

    [learned latents | time token | label token | coherence token | projected text tokens]

so conditions steer the computation from inside the latent branch: CAD adds its coherence token "in the latent
branch of RIN, similar to the class token". Following the authors, ``num_latents`` counts the learned latents *and*
the time/label/coherence tokens (``num_learned = num_latents - num_condition_tokens``); text tokens come on top and
are masked with ``token_mask`` wherever they are attention keys.

The text model (``text_layers > 0``, the CAD authors' text-to-image RIN): the latents are [learned | time token]; the
text tokens, with the coherence token and learned registers prepended, go through their own self-attention layers
(cad.backbones.text_context) and every block's latents cross-attend to them before the read; only the learned latents
self-condition. ``image_size`` may be (H, W): the text stand-in's canvases are 32x64.

Latent self-conditioning (RIN sec. 3.4): the previous call's final latents ``z'`` enter as
``z <- z + LayerNorm_0(z' + MLP(LayerNorm(z')))``, where ``LayerNorm_0`` has its gain and bias initialised to zero,
so the path has no effect at initialisation. That is the authors' formulation (``ln_previous`` zero-filled); without
previous latents ``z' = 0``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from cad.backbones.layers import MLP, CrossAttentionBlock, SelfAttentionBlock, key_padding_mask
from cad.backbones.text_context import TextContext
from cad.conditioning.condition import Condition
from cad.conditioning.embedders import ConditionEmbedder, ConditioningSpec, append_condition_maps


class RINBlock(nn.Module):
    """read (latents <- data) -> ``num_layers`` latent self-attention layers -> write (data <- latents)."""

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        num_layers: int,
        read_write_heads: int,
        compute_heads: int,
        latent_mlp_ratio: int,
        data_mlp_ratio: int,
        dropout: float,
        drop_path: float,
        read_write_dropout: float,
        read_write_drop_path: float,
        context: bool = False,
    ):
        super().__init__()
        # The text model: the latents cross-attend to the text context before each read.
        self.context = CrossAttentionBlock(
            latent_dim, latent_dim, compute_heads, latent_mlp_ratio, dropout, drop_path
        ) if context else None
        self.read = CrossAttentionBlock(
            latent_dim, data_dim, read_write_heads, latent_mlp_ratio, read_write_dropout, read_write_drop_path
        )
        self.compute = nn.ModuleList(
            SelfAttentionBlock(latent_dim, compute_heads, latent_mlp_ratio, dropout, drop_path)
            for _ in range(num_layers)
        )
        self.write = CrossAttentionBlock(
            data_dim, latent_dim, read_write_heads, data_mlp_ratio, read_write_dropout, read_write_drop_path
        )

    def forward(self, x: Tensor, z: Tensor, latent_mask: Tensor | None, context: Tensor | None = None,
                context_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.context is not None:
            z = self.context(z, context, key_padding_mask(context_mask))
        z = self.read(z, x)
        for layer in self.compute:
            z = layer(z, latent_mask)
        x = self.write(x, z, latent_mask)
        return x, z


class LatentSelfConditioning(nn.Module):
    """``z'`` -> ``LayerNorm_0(z' + MLP(LayerNorm(z')))``, to be added to the initial latents (RIN sec. 3.4).

    ``LayerNorm_0``'s gain and bias start at zero (the authors' ``ln_previous``), so this is exactly zero at init.
    """

    def __init__(self, dim: int, mlp_ratio: int):
        super().__init__()
        self.norm_in = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, mlp_ratio, 0.0)
        self.norm_out = nn.LayerNorm(dim, eps=1e-6)

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.norm_out.weight)
        nn.init.zeros_(self.norm_out.bias)

    def forward(self, z_prev: Tensor) -> Tensor:
        return self.norm_out(z_prev + self.mlp(self.norm_in(z_prev)))


class RIN(nn.Module):
    """RIN denoiser: ``forward(x_t, gamma, cond, self_cond) -> (eps_hat, latents)``.

    Spatial maps (and the coherence map) are extra patch channels; see :class:`ConditioningSpec` for the rule.
    Dropout/stochastic depth: ``dropout``/``drop_path`` act in the latent self-attention ("compute") layers,
    ``read_write_*`` in the read and write layers (the authors' CIFAR-10 config: 0.1 compute, 0 read/write).
    """

    uses_self_conditioning = True

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
        patch_size: int,
        data_dim: int,
        num_latents: int,
        latent_dim: int,
        num_blocks: int,
        num_layers_per_block: int,
        read_write_heads: int,
        compute_heads: int,
        latent_mlp_ratio: int,
        data_mlp_ratio: int,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        read_write_dropout: float = 0.0,
        read_write_drop_path: float = 0.0,
        text_layers: int = 0,
        num_registers: int = 16,
    ):
        super().__init__()
        height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if height % patch_size or width % patch_size:
            raise ValueError(f"image_size={image_size} is not divisible by patch_size={patch_size}")
        self.spec = ConditioningSpec(num_classes, use_coherence, token_dim, map_channels,
                                     mix_label_coherence=mix_labels_and_confidence, metadata_dim=metadata_dim,
                                     coherence_as_metadata=coherence_as_metadata, metadata_gate=metadata_gate)
        self.image_size = image_size
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.num_latents = num_latents
        self.latent_dim = latent_dim
        # The text model (text_layers > 0): the text tokens and the coherence token live in a text context the
        # latents cross-attend to (cad.backbones.text_context), not among the latents.
        self.text_mode = text_layers > 0
        if self.text_mode and (token_dim is None or mix_labels_and_confidence):
            raise ValueError("text_layers > 0 needs token_dim (the text encoder's width) and no label-coherence mix")
        self.coherence_in_context = self.text_mode and self.spec.coherence_token
        num_learned = num_latents - self.spec.num_vectors + int(self.coherence_in_context)
        self.num_learned = num_learned
        if num_learned < 1:
            raise ValueError(
                f"num_latents={num_latents} leaves no learned latent beside {self.spec.num_vectors} condition tokens"
            )

        self.grid = (height // patch_size, width // patch_size)  # the patch grid data_pos covers, row-major
        num_patches = self.grid[0] * self.grid[1]
        patch_in = (in_channels + self.spec.extra_channels) * patch_size**2
        self.patch_embed = nn.Linear(patch_in, data_dim)
        self.data_norm = nn.LayerNorm(data_dim, eps=1e-6)
        self.data_pos = nn.Parameter(torch.zeros(num_patches, data_dim))

        self.latents = nn.Parameter(torch.zeros(num_learned, latent_dim))
        self.condition = ConditionEmbedder(self.spec, latent_dim, sinusoid_dim=latent_dim // 4)
        self.self_conditioning = LatentSelfConditioning(latent_dim, latent_mlp_ratio)
        self.text = TextContext(latent_dim, compute_heads, latent_mlp_ratio, num_layers=text_layers,
                                num_registers=num_registers, coherence=self.spec.coherence_token) \
            if self.text_mode else None

        self.blocks = nn.ModuleList(
            RINBlock(
                data_dim, latent_dim, num_layers_per_block, read_write_heads, compute_heads, latent_mlp_ratio,
                data_mlp_ratio, dropout, drop_path, read_write_dropout, read_write_drop_path, context=self.text_mode,
            )
            for _ in range(num_blocks)
        )
        self.out_norm = nn.LayerNorm(data_dim, eps=1e-6)
        self.out = nn.Linear(data_dim, in_channels * patch_size**2)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The authors' init: Xavier-uniform weights and zero biases for every linear map, truncated-normal (0.02)
        latents and positional embedding, zeroed output LayerNorm of the self-conditioning path."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.latents, std=0.02, a=-0.04, b=0.04)
        nn.init.trunc_normal_(self.data_pos, std=0.02, a=-0.04, b=0.04)
        self.self_conditioning.reset_parameters()

    def no_weight_decay(self) -> set[str]:
        """Parameters the optimizer should not decay (timm convention, read by ``cad.training.optim``): the learned
        positional embedding and the learned latent tokens, which are tables of vectors like timm's ``pos_embed``
        and ``cls_token``. (The authors decay everything but LayerNorms and biases.)"""
        return {"data_pos", "latents"}

    def patchify(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, H/p * W/p, C * p * p), channels fastest within a patch."""
        b, c, h, w = x.shape
        p = self.patch_size
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, (h // p) * (w // p), p * p * c)

    def unpatchify(self, x: Tensor, h: int, w: int) -> Tensor:
        b = x.shape[0]
        p, c = self.patch_size, self.in_channels
        x = x.reshape(b, h // p, w // p, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, c, h, w)

    def forward(
        self, x_t: Tensor, gamma: Tensor, cond: Condition, self_cond: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """x_t (B, C, H, W), gamma (B,) in [0, 1] -> (eps_hat (B, C, H, W), latents (B, num_latents [+ L], D))."""
        b, _, h, w = x_t.shape
        self.spec.check(cond, b)
        x = self.patch_embed(self.patchify(append_condition_maps(x_t, cond, self.spec)))
        x = self.data_norm(x) + self.data_pos

        emb = self.condition(gamma, cond)
        if self.text_mode:
            return self._forward_text(x, emb, self_cond, h, w)
        parts = [self.latents.expand(b, -1, -1), emb.vectors]
        latent_mask = None
        if emb.tokens is not None:
            parts.append(emb.tokens)
            if emb.token_mask is not None:
                valid = emb.token_mask.new_ones(b, self.num_latents)
                latent_mask = key_padding_mask(torch.cat([valid, emb.token_mask], dim=1))
        z = torch.cat(parts, dim=1)
        z = z + self._self_conditioning(z, self_cond)
        for block in self.blocks:
            x, z = block(x, z, latent_mask)
        eps_hat = self.unpatchify(self.out(self.out_norm(x)), h, w)
        return eps_hat, z

    def _self_conditioning(self, z: Tensor, self_cond: Tensor | None) -> Tensor:
        if self_cond is None:
            # z' = 0 gives the same vector for every token: compute it once and broadcast.
            return self.self_conditioning(z.new_zeros(1, 1, self.latent_dim))
        if self_cond.shape != z.shape:
            raise ValueError(f"self_cond has shape {tuple(self_cond.shape)}, expected the latents' {tuple(z.shape)}")
        return self.self_conditioning(self_cond)

    def _forward_text(self, x: Tensor, emb, self_cond: Tensor | None, h: int, w: int) -> tuple[Tensor, Tensor]:
        """The text model: latents [learned | time (| label)], the coherence token in the text context; only the
        learned latents carry self-conditioning (returned as the latents)."""
        b = x.shape[0]
        vectors = emb.vectors[:, :-1] if self.coherence_in_context else emb.vectors
        coherence = emb.vectors[:, -1] if self.coherence_in_context else None
        context, context_mask = self.text(emb.tokens, emb.token_mask, coherence)
        learned = self.latents.expand(b, -1, -1)
        learned = learned + self._self_conditioning(learned, self_cond)
        z = torch.cat([learned, vectors], dim=1)
        for block in self.blocks:
            x, z = block(x, z, None, context, context_mask)
        eps_hat = self.unpatchify(self.out(self.out_norm(x)), h, w)
        return eps_hat, z[:, :self.num_learned]
