"""Denoiser backbones, in a registry keyed by preset name (DiT's model registry, STYLE habit 3).

Every backbone has the same interface::

    uses_self_conditioning: bool
    forward(x_t (B,C,H,W), gamma (B,), cond: Condition, self_cond=None) -> (eps_hat, latents | None)

``build_backbone("rin_cifar10")`` builds a preset; keyword overrides replace preset entries
(``build_backbone("rin_cifar10", use_coherence=False)`` is the paper's non-CAD baseline).
The paper-scale presets are CAD models (coherence token on); their parameter counts are the authors'.
"""
from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from cad.backbones.rin import RIN
from cad.backbones.unet import UNet

BACKBONES: dict[str, type[nn.Module]] = {
    "rin_cifar10": RIN,  # 31.3M parameters (authors' CIFAR-10 RIN + coherence token)
    "rin_imagenet64": RIN,  # 158.5M parameters (authors' ImageNet-64 RIN + coherence token)
    "rin_cpu": RIN,
    "rin_smoke": RIN,
    "rin_text_cpu": RIN,
    "rin_text_smoke": RIN,
    "rin_text_latent256": RIN,  # 331.5M parameters with FLAN-T5-XL tokens, as the authors' own cad_256 network
    "rin_text_latent_tiny": RIN,
    "unet_cpu": UNet,
    "unet_smoke": UNet,
}

PRESETS: dict[str, dict[str, Any]] = {
    # The authors' cad/configs/model/network/rin.yaml (CIFAR-10): RIN's CIFAR-10 configuration.
    "rin_cifar10": dict(
        image_size=32, in_channels=3, num_classes=10, use_coherence=True,
        patch_size=2, data_dim=256, num_latents=128, latent_dim=512, num_blocks=3, num_layers_per_block=2,
        read_write_heads=8, compute_heads=16, latent_mlp_ratio=4, data_mlp_ratio=2,
        dropout=0.1, drop_path=0.1,
    ),
    # The authors' overrides/imagenet_64_rin.yaml: no dropout, no stochastic depth.
    "rin_imagenet64": dict(
        image_size=64, in_channels=3, num_classes=1000, use_coherence=True,
        patch_size=8, data_dim=512, num_latents=128, latent_dim=768, num_blocks=4, num_layers_per_block=4,
        read_write_heads=16, compute_heads=16, latent_mlp_ratio=4, data_mlp_ratio=4,
        dropout=0.0, drop_path=0.0,
    ),
    # 28x28x1 (MNIST / Fashion-MNIST) for CPU runs: ~2M parameters; patch 4 (49 data tokens) keeps a training step
    # on 2 cores cheap (about 2x the throughput of patch 2).
    "rin_cpu": dict(
        image_size=28, in_channels=1, num_classes=10, use_coherence=True,
        patch_size=4, data_dim=64, num_latents=32, latent_dim=128, num_blocks=3, num_layers_per_block=2,
        read_write_heads=4, compute_heads=4, latent_mlp_ratio=4, data_mlp_ratio=2,
        dropout=0.0, drop_path=0.0,
    ),
    "rin_smoke": dict(
        image_size=28, in_channels=1, num_classes=10, use_coherence=True,
        patch_size=4, data_dim=32, num_latents=16, latent_dim=64, num_blocks=1, num_layers_per_block=1,
        read_write_heads=2, compute_heads=2, latent_mlp_ratio=2, data_mlp_ratio=2,
        dropout=0.0, drop_path=0.0,
    ),
    # The text task's RIN on the 32x64 captioned canvases (issue 11): the authors' text model (a text tower of 2
    # self-attention layers with the coherence token and 16 registers, cross-attended in every block) at rin_cpu's
    # width; patch 4 gives 8x16 = 128 data tokens. token_dim comes from the text encoder (MiniLM: 384).
    "rin_text_cpu": dict(
        image_size=(32, 64), in_channels=1, num_classes=None, use_coherence=True, text_layers=2, num_registers=16,
        patch_size=4, data_dim=64, num_latents=32, latent_dim=128, num_blocks=3, num_layers_per_block=2,
        read_write_heads=4, compute_heads=4, latent_mlp_ratio=4, data_mlp_ratio=2,
        dropout=0.0, drop_path=0.0,
    ),
    "rin_text_smoke": dict(
        image_size=(32, 64), in_channels=1, num_classes=None, use_coherence=True, text_layers=2, num_registers=4,
        patch_size=4, data_dim=32, num_latents=16, latent_dim=64, num_blocks=1, num_layers_per_block=1,
        read_write_heads=2, compute_heads=2, latent_mlp_ratio=2, data_mlp_ratio=2,
        dropout=0.0, drop_path=0.0,
    ),
    # The paper-scale text-to-image RIN in SD-VAE latent space (backbone.latent_vae, cad.backbones.latent_vae): the
    # authors' cad/configs/overrides/cad_256.yaml over model/network/cad_rin_text.yaml: 256x256 images, 4x32x32
    # latents, patch 2 (256 data tokens), 16 text registers; token_dim 2048 (FLAN-T5-XL). Our RIN counts 331,546,896
    # parameters; the authors' CADRINTextCond built from the same configs (cad-diffusion 1.2) counts 331,548,944
    # trainable (their 256 learned latents + time added to each vs our 255 + a time token; their 1024-d coherence
    # position embedding). The paper's 188M (sec. 4.1) matches their configs with latents_dim 768 (cc12m_64_rin_small:
    # 188.5M), not the released cad_256 model (its pretrained CAD_256 weights load into the 331.5M network).
    "rin_text_latent256": dict(
        image_size=32, in_channels=4, num_classes=None, use_coherence=True, text_layers=2, num_registers=16,
        patch_size=2, data_dim=256, num_latents=256, latent_dim=1024, num_blocks=4, num_layers_per_block=4,
        read_write_heads=16, compute_heads=16, latent_mlp_ratio=4, data_mlp_ratio=4,
        dropout=0.0, drop_path=0.0,
    ),
    # Tests: rin_text_smoke's width on 4-channel latents (the tiny VAE of LatentCodec.tiny halves 16x32 images).
    "rin_text_latent_tiny": dict(
        image_size=(8, 16), in_channels=4, num_classes=None, use_coherence=True, text_layers=1, num_registers=4,
        patch_size=2, data_dim=32, num_latents=16, latent_dim=64, num_blocks=1, num_layers_per_block=1,
        read_write_heads=2, compute_heads=2, latent_mlp_ratio=2, data_mlp_ratio=2,
        dropout=0.0, drop_path=0.0,
    ),
    # ~0.93M parameters, 28 -> 14 -> 7 with attention at 7x7.
    "unet_cpu": dict(
        image_size=28, in_channels=1, num_classes=10, use_coherence=True,
        base_channels=28, channel_mults=(1, 2, 2), num_res_blocks=1, attention=True, attention_heads=4,
        num_groups=4, dropout=0.0,
    ),
    "unet_smoke": dict(
        image_size=28, in_channels=1, num_classes=10, use_coherence=True,
        base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=1, attention=True, attention_heads=2,
        num_groups=4, dropout=0.0,
    ),
}


def build_backbone(preset: str, **overrides: Any) -> nn.Module:
    """The backbone of ``preset`` with ``overrides`` replacing its constructor arguments."""
    if preset not in PRESETS:
        raise ValueError(f"unknown backbone preset '{preset}'; valid presets: {', '.join(sorted(PRESETS))}")
    cls = BACKBONES[preset]
    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        raise ValueError(f"{cls.__name__} has no argument(s) {unknown}; accepted: {', '.join(sorted(accepted))}")
    return cls(**{**PRESETS[preset], **overrides})


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (works on models built on the ``meta`` device)."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["BACKBONES", "PRESETS", "RIN", "UNet", "build_backbone", "count_parameters"]
