"""ControlNet over a frozen Stable Diffusion UNet: the semantic-map task's paper-scale model (paper sec. 4.1, Figure 6;
issue 12), with diffusers' ``ControlNetModel.from_unet``.

The paper conditions a pre-trained text-to-image Stable Diffusion with ControlNet fed "both semantic and coherence maps
concatenated". Here:

- the base is SD's ``UNet2DConditionModel``, loaded offline from a local SD folder (``subfolder="unet"``) and frozen;
- the ControlNet is ``ControlNetModel.from_unet(unet, conditioning_channels=K or K + 1)``: a trainable copy of the
  UNet's encoder whose outputs enter the UNet through zero-initialised convolutions, so at initialisation the
  controlled model is exactly the base; only its parameters train (AdamW, cad.tasks.map_conditional);
- the control image is the one-hot class map (K channels, ``cond.spatial_map``) for the Baseline, with the per-pixel
  coherence map (``cond.coherence_map``, 1 channel) concatenated after it for CAD;
- the text condition is ``cond.tokens`` (B, L, D): caption states from SD's own text encoder (cad.conditioning.sd_text,
  or precomputed with it), passed as ``encoder_hidden_states``; without a caption (``cond.tokens`` None) the model uses
  its ``null_tokens`` buffer, the empty caption's states (zeros unless given; cad.tasks.map_conditional gives SD's
  encoding of "", SD's unconditional input).
  ``cond.token_mask`` is not used: SD reads all 77 CLIP states, padding included, as it was trained to.

Shapes: the model works in SD's VAE latent space (cad.backbones.latent_vae): ``x_t`` is (B, 4, H/8, W/8) while the
control image stays at the *image* resolution (B, K(+1), H, W): ControlNet's conditioning embedding downsamples it by
8 itself (three stride-2 convolutions of ``conditioning_embedding_out_channels``), as in the original ControlNet.

Time: the suite's noise level ``gamma`` becomes SD's fractional timestep of the same alpha_bar
(cad.diffusion.sd_schedule.timestep_from_gamma); the paper scale trains and samples with ``sd_scaled_linear``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from cad.backbones.controlnet import stack_control_maps
from cad.conditioning import Condition
from cad.diffusion.sd_schedule import SD_BETA_END, SD_BETA_START, SD_TRAIN_TIMESTEPS, timestep_from_gamma

if TYPE_CHECKING:  # diffusers is imported where a model is built: it takes seconds, and the cpu scale never needs it
    from diffusers import UNet2DConditionModel

SD_CONTROLNET = "sd_controlnet"  # the map task's backbone name for this model (MapConditionalDiffusion)
LATENT_FACTOR = 8  # SD's VAE and ControlNet's conditioning embedding both downsample by 8
SD_HELP = ("provide a local Stable Diffusion 1.x folder in the diffusers layout (unet/, vae/, text_encoder/, "
           "tokenizer/, scheduler/), e.g. made on a machine with internet by `huggingface-cli download "
           "stable-diffusion-v1-5/stable-diffusion-v1-5 --local-dir DIR` and copied here")
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin")


def load_sd_unet(path: str | Path) -> UNet2DConditionModel:
    """SD's UNet from the local folder ``path`` (``path/unet``), offline; a clear error names what is missing and
    checks that the folder's scheduler is the schedule the suite maps gamma onto (epsilon prediction)."""
    root = Path(path)
    unet_dir = root / "unet"
    if not (unet_dir / "config.json").is_file():
        raise FileNotFoundError(f"Stable Diffusion UNet not found: {unet_dir / 'config.json'} is missing; {SD_HELP}")
    weights = [name for name in WEIGHT_FILES if (unet_dir / name).is_file()]
    if not weights:
        raise FileNotFoundError(f"Stable Diffusion UNet weights not found in {unet_dir} (one of "
                                f"{', '.join(WEIGHT_FILES)}); {SD_HELP}")
    _check_scheduler(root / "scheduler" / "scheduler_config.json")
    from diffusers import UNet2DConditionModel

    variant = "fp16" if ".fp16." in weights[0] else None
    return UNet2DConditionModel.from_pretrained(root, subfolder="unet", local_files_only=True, variant=variant)


def _check_scheduler(config_path: Path) -> None:
    """SD 1.x: scaled_linear betas 0.00085 -> 0.012 over 1000 steps, epsilon prediction (no scheduler file: assumed)."""
    if not config_path.is_file():
        return
    config = json.loads(config_path.read_text())
    expected = {"beta_schedule": "scaled_linear", "beta_start": SD_BETA_START, "beta_end": SD_BETA_END,
                "num_train_timesteps": SD_TRAIN_TIMESTEPS, "prediction_type": "epsilon"}
    wrong = {k: config[k] for k, v in expected.items() if k in config and config[k] != v}
    if wrong:
        raise ValueError(f"{config_path}: {wrong} differ from the schedule the suite maps gamma onto ({expected}); "
                         f"use a Stable Diffusion 1.x folder (epsilon prediction, scaled_linear)")


class SDControlNet(nn.Module):
    """``forward(x_t (B, 4, h, w), gamma (B,), cond) -> (eps_hat, None)`` with ``cond.spatial_map`` (B, K, 8h, 8w),
    for CAD ``cond.coherence_map`` (B, 1, 8h, 8w), and optional ``cond.tokens`` (B, L, D)."""

    uses_self_conditioning = False

    def __init__(self, unet: UNet2DConditionModel, map_channels: int, use_coherence: bool,
                 null_tokens: Tensor | None = None,
                 conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256)):
        super().__init__()
        if len(conditioning_embedding_out_channels) != 4:
            raise ValueError("conditioning_embedding_out_channels needs 4 entries (3 stride-2 convolutions: the "
                             f"control image at 8x the latent resolution), got {conditioning_embedding_out_channels}")
        from diffusers import ControlNetModel

        self.map_channels, self.use_coherence = map_channels, use_coherence
        self.control = ControlNetModel.from_unet(
            unet, conditioning_channels=map_channels + int(use_coherence),
            conditioning_embedding_out_channels=tuple(conditioning_embedding_out_channels)).requires_grad_(True)
        self.base = unet.requires_grad_(False)
        width = unet.config.cross_attention_dim
        if null_tokens is None:
            null_tokens = torch.zeros(1, 77, width)
        if null_tokens.ndim != 3 or null_tokens.shape[0] != 1 or null_tokens.shape[2] != width:
            raise ValueError(f"null_tokens must be (1, L, {width}) (the empty caption's text-encoder states), got "
                             f"{tuple(null_tokens.shape)}")
        self.register_buffer("null_tokens", null_tokens.detach().clone())

    @classmethod
    def tiny(cls, map_channels: int, use_coherence: bool, seed: int = 0, latent_size: int = 8) -> "SDControlNet":
        """A randomly initialised tiny model for tests (seconds on CPU): 2-level UNet of widths 32 / 64,
        cross-attention width 32, a narrow conditioning embedding (8, 8, 16, 16; the same 8x downsampling as SD's
        (16, 32, 96, 256)), images of ``8 * latent_size`` pixels."""
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return cls(tiny_unet(seed, latent_size), map_channels, use_coherence,
                       conditioning_embedding_out_channels=(8, 8, 16, 16))

    def train(self, mode: bool = True) -> "SDControlNet":
        super().train(mode)
        self.base.eval()  # frozen
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.control.parameters() if p.requires_grad]

    def control_image(self, cond: Condition, latent_hw: tuple[int, int]) -> Tensor:
        """(B, K(+1), 8h, 8w): the one-hot map, then the coherence map for CAD, at the image resolution."""
        image = stack_control_maps(cond, self.map_channels, self.use_coherence)
        expected = (latent_hw[0] * LATENT_FACTOR, latent_hw[1] * LATENT_FACTOR)
        if tuple(image.shape[2:]) != expected:
            raise ValueError(f"the control image must be at the image resolution {expected} (8x the latent "
                             f"{tuple(latent_hw)}), got {tuple(image.shape[2:])}: give the maps at image size")
        return image.to(self.control.dtype)

    def text_states(self, cond: Condition, batch_size: int) -> Tensor:
        if cond.tokens is None:
            return self.null_tokens.expand(batch_size, -1, -1)
        if cond.tokens.shape[-1] != self.null_tokens.shape[-1]:
            raise ValueError(f"Condition.tokens has width {cond.tokens.shape[-1]}, the UNet cross-attends to "
                             f"{self.null_tokens.shape[-1]}: encode captions with the SD folder's text encoder")
        return cond.tokens

    def forward(self, x_t: Tensor, gamma: Tensor, cond: Condition, self_cond: Tensor | None = None
                ) -> tuple[Tensor, None]:
        timestep = timestep_from_gamma(gamma.float())
        sample = x_t.to(self.base.dtype)
        states = self.text_states(cond, x_t.shape[0]).to(self.base.dtype)
        down, mid = self.control(sample, timestep, states, self.control_image(cond, tuple(x_t.shape[2:])),
                                 return_dict=False)
        eps_hat = self.base(sample, timestep, states, down_block_additional_residuals=down,
                            mid_block_additional_residual=mid, return_dict=False)[0]
        return eps_hat.to(x_t.dtype), None


def tiny_unet(seed: int = 0, latent_size: int = 8, cross_attention_dim: int = 32) -> UNet2DConditionModel:
    """A randomly initialised 2-level SD-style UNet (4 latent channels, cross-attention in the first level)."""
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return UNet2DConditionModel(
            sample_size=latent_size, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=cross_attention_dim,
            attention_head_dim=4, norm_num_groups=16)
