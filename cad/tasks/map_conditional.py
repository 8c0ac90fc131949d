"""Semantic-map-conditioned diffusion (paper Figure 6): a ControlNet over a frozen, pre-trained base denoiser, fed the
(noisy) map and, for CAD, its per-pixel coherence map.

Two backbones:

- a suite U-Net preset (``unet_cpu``, ``unet_smoke``; cad.backbones.controlnet) at the cpu and smoke scales, whose
  pre-trained base is a state-dict file (``base_weights``), on images;
- ``sd_controlnet`` (cad.backbones.sd_controlnet) at the paper scale: diffusers' ControlNet over Stable Diffusion's
  UNet, ``base_weights`` the local SD folder. It runs in SD's VAE latent space: ``prepare`` encodes the batch's images
  with the frozen VAE of ``vae_weights`` (cad.backbones.latent_vae.load_vae) before noising, while the maps stay at
  the image resolution; captions become text states with SD's frozen text encoder (cad.conditioning.sd_text), the
  empty caption's being the null text. Train and sample it with the schedule ``sd_scaled_linear`` (SD's own noise
  levels) and ``sample.clip_x0: false`` (latents are not in [-1, 1]); sampling draws latents (``sample_shape``) and
  decodes them (``to_images``).

Batches: ``map`` is either the one-hot (B, K, H, W) float map (canvases) or the (B, H, W) integer classes (ADE20K,
cad.data.ade20k), one-hot on the device here; ``tokens`` (B, L, D), when present, are precomputed caption embeddings.

Only the ControlNet trains, with AdamW (ControlNet's optimiser: its zero-initialised convolutions barely move under
LAMB's trust ratio) and the shared warmup-cosine schedule. Condition dropout, where a method has it, zeroes the whole
map (and sets the coherence map to 0) and replaces the caption by the model's empty caption: the null condition of
plain CFG.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cad.backbones import build_backbone
from cad.backbones.controlnet import ControlledUNet
from cad.backbones.sd_controlnet import SD_CONTROLNET, SDControlNet, load_sd_unet
from cad.conditioning import Condition
from cad.conditioning.sd_text import SDTextEncoder, load_sd_text_encoder
from cad.tasks.base import DiffusionModule
from cad.tasks.methods import Method
from cad.training.lr_schedule import build_scheduler


def build_base(preset: str, image_shape: tuple[int, int, int]) -> nn.Module:
    """The unconditional base denoiser of ``preset`` (no label, no coherence) for images of ``image_shape``."""
    channels, height, _ = image_shape
    return build_backbone(preset, image_size=height, in_channels=channels, num_classes=None, use_coherence=False)


class MapConditionalDiffusion(DiffusionModule):
    def __init__(self, *, backbone: str, image_shape: tuple[int, int, int], map_channels: int, method: dict,
                 base_weights: str, vae_weights: str | None = None, **train):
        """``backbone``: the base's preset or ``sd_controlnet``; ``base_weights``: the base's pre-trained state dict
        (a file) or, for ``sd_controlnet``, the local Stable Diffusion folder; ``vae_weights``: the folder
        ``load_vae`` reads the latent codec from (``sd_controlnet`` only); ``map_channels``: the control map's
        classes (+ background / no class); ``train``: the shared step's settings (``DiffusionModule``)."""
        if (vae_weights is not None) != (backbone == SD_CONTROLNET):
            raise ValueError(f"vae_weights is {'missing' if vae_weights is None else 'given'} for backbone "
                             f"{backbone!r}: {SD_CONTROLNET} runs in SD's latent space and needs it, the others not")
        super().__init__(**train, loss=Method(**method).loss)

    def build_model(self) -> nn.Module:
        hp = self.hparams
        self.method = Method(**hp.method)
        if hp.backbone == SD_CONTROLNET:
            # the frozen VAE and text encoder stay out of the state dict, the checkpoints and the EMA
            self.set_latent_codec(self.build_codec())
            self._text_encoder = (load_sd_text_encoder(hp.base_weights),)
            null_tokens = self.text_encoder([""]).cpu()  # the empty caption: SD's unconditional text states
            return SDControlNet(load_sd_unet(hp.base_weights), hp.map_channels, self.method.use_coherence,
                                null_tokens=null_tokens)
        self._text_encoder = (None,)
        base = build_base(hp.backbone, tuple(hp.image_shape))
        base.load_state_dict(torch.load(hp.base_weights, map_location="cpu", weights_only=True))
        return ControlledUNet(base, hp.map_channels, use_coherence=self.method.use_coherence)

    def build_codec(self):
        """The frozen latent codec (``encode(x in [-1, 1]) -> latents``, ``decode``) or None (pixel space)."""
        if self.hparams.vae_weights is None:
            return None
        from cad.backbones.latent_vae import load_vae

        return load_vae(self.hparams.vae_weights)

    @property
    def text_encoder(self) -> SDTextEncoder | None:
        return self._text_encoder[0]

    @torch.no_grad()
    def prepare(self, batch: dict, generator: torch.Generator) -> dict:
        """In latent space, the images become their (scaled) VAE latents before noising (maps are left at the image
        resolution) and the captions (``caption``, a list of strings) their text states ``tokens``, unless the batch
        brings precomputed ``tokens``."""
        if self.latent_codec is None:
            return batch
        image = batch["image"]
        for frozen in (self.latent_codec, self.text_encoder):
            if hasattr(frozen, "to"):
                frozen.to(image.device)
        batch = {**batch, "image": self.latent_codec.encode(image).to(image.dtype)}
        if "tokens" not in batch and "caption" in batch:
            batch["tokens"] = self.text_encoder(list(batch["caption"]))
        return batch

    def condition(self, batch: dict, generator: torch.Generator | None = None) -> Condition:
        spatial = batch["map"]
        if not spatial.is_floating_point():  # (B, H, W) integer classes
            spatial = F.one_hot(spatial.long(), self.hparams.map_channels).permute(0, 3, 1, 2)
        spatial = spatial.float()
        keep = torch.rand(spatial.shape[0], device=spatial.device, generator=generator) >= self.method.cond_dropout
        keep = keep.float()[:, None, None, None]
        coherence_map = batch["coherence_map"].float() * keep if self.method.use_coherence else None
        tokens = batch.get("tokens")
        if tokens is not None:  # a dropped caption becomes the model's empty caption
            null = self.model.null_tokens.to(tokens.dtype).expand_as(tokens)
            tokens = torch.where(keep[:, :, 0].bool(), tokens, null)
        return Condition(spatial_map=spatial * keep, coherence_map=coherence_map, tokens=tokens)

    def configure_optimizers(self):
        hp = self.hparams
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        scheduler = build_scheduler(optimizer, warmup_steps=hp.warmup_steps, total_steps=hp.total_steps,
                                    rate=hp.lr_rate)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
