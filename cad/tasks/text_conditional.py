"""Text-to-image diffusion with misaligned captions (paper Figure 3): the Figure 3(a) variants over the shared step.

A batch's condition is its caption's token states from the frozen encoder (cad.data.text_data) and, for CAD, the
pair's coherence level (8 quantile bins of an image-text similarity). Condition dropout (the CFG-trained baselines)
masks every text token of the sample: the empty prompt, the model then sees only its registers (and coherence token).
Our choice: the paper's null prompt is an encoded empty string; ours has no token at all, which needs no encoder at
sampling and is the same for every encoder. Weighted is a loss reduction, Filtered a view of the data (the method
file, cad.tasks.methods).

Latent space (``latent_vae``: a VAE folder, the paper scale; None: pixel space, the cpu/smoke scales): the authors
train the text-to-image RIN on Stable Diffusion VAE latents (their cad_256 config: 256x256 images, 4x32x32 latents).
``prepare`` encodes the training images with the frozen codec (cad.backbones.latent_vae, the posterior mean x
``scaling_factor``) before noising, the backbone is built on the latent shape (``sample_shape``) and ``to_images``
decodes samples back to ``image_shape``. The codec is kept out of the module's registered children (a plain attribute),
so it is in no optimiser, no EMA and no checkpoint (its weights are the VAE folder's); it follows the batch's device.
In latent space the paper scale still clips x0_hat to [-1, 1] (``sample.clip_x0: true``), as the authors' samplers
do although scaled latents can exceed it; ``false`` is the unclamped deviation.
"""
from __future__ import annotations

import torch
from torch import nn

from cad.backbones import build_backbone
from cad.backbones.latent_vae import load_vae
from cad.conditioning import Condition
from cad.guidance import aligned_loss_pair, null_prompt_pair
from cad.tasks.base import DiffusionModule
from cad.tasks.methods import Method


class TextConditionalDiffusion(DiffusionModule):
    def __init__(self, *, backbone: str, image_shape: tuple[int, int, int], token_dim: int, method: dict,
                 latent_vae: str | None = None, text_encoder: str | None = None, **train):
        """``token_dim``: the text encoder's width; ``image_shape``: the images' (C, H, W), in pixels also in latent
        space; ``latent_vae``: a VAE folder (latent space) or None (pixel space); ``text_encoder``: the frozen encoder
        that turns a batch's ``caption`` into ``tokens`` in the step (the paper scale's shards; canvases bring their
        tokens); ``train``: the shared step's settings (``DiffusionModule``)."""
        super().__init__(**train, loss=Method(**method).loss)

    def build_model(self) -> nn.Module:
        hp = self.hparams
        self.method = Method(**hp.method)
        self.set_latent_codec(load_vae(hp.latent_vae) if hp.get("latent_vae") else None)  # not a submodule
        channels, height, width = self.sample_shape(hp.image_shape)
        return build_backbone(hp.backbone, image_size=(height, width), in_channels=channels, num_classes=None,
                              token_dim=hp.token_dim, use_coherence=self.method.use_coherence)

    def prepare(self, batch: dict, generator: torch.Generator) -> dict:
        """Captions without tokens are encoded here, on the batch's device, by the frozen ``text_encoder``; in latent
        space the training images become their scaled VAE latents (deterministic: the posterior mean)."""
        if "tokens" not in batch:
            if "caption" not in batch:
                raise KeyError("a text batch needs 'tokens' and 'token_mask', or 'caption' (encoded in the step)")
            tokens, mask = self.caption_encoder(batch["image"].device)(list(batch["caption"]))
            batch = {**batch, "tokens": tokens, "token_mask": mask}
        if self.latent_codec is None:
            return batch
        return {**batch, "image": self.latent_codec.encode(batch["image"])}

    def caption_encoder(self, device: torch.device):
        """The frozen text encoder on ``device``, loaded on first use and kept out of the state dict (as the codec)."""
        encoder = self.__dict__.get("text_encoder_model")
        if encoder is None:
            if not self.hparams.get("text_encoder"):
                raise ValueError("the batch brings captions but the module has no text_encoder to encode them")
            from cad.conditioning.text_encoders import load_text_encoder

            encoder = self.__dict__["text_encoder_model"] = load_text_encoder(self.hparams.text_encoder)
        return encoder.to(device)

    def condition(self, batch: dict, generator: torch.Generator | None = None) -> Condition:
        mask = batch["token_mask"]
        drop = torch.rand(mask.shape[0], device=mask.device, generator=generator) < self.method.cond_dropout
        coherence = batch["coherence"].float() if self.method.use_coherence else None
        return Condition(tokens=batch["tokens"].float(), token_mask=mask & ~drop[:, None], coherence=coherence)

    def training_pair(self, cond: Condition) -> tuple[Condition, Condition]:
        """The guidance-aligned loss's branches: the empty prompt for CFG or, for CAD, the same caption at coherence 0
        (at sampling CA-CFG's negative is a random-character prompt; in training the sample's own caption, our choice,
        so that no prompt has to be encoded inside the step)."""
        return aligned_loss_pair(cond, self.method.guidance, self.method.name, null_prompt_pair)
