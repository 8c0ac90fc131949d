"""A frozen Stable Diffusion VAE as the latent codec of the paper-scale text-to-image RIN.

The CAD paper (sec. 4.1) gives its text-to-image RIN's size (188M parameters) but names neither the VAE nor the
resolution; the authors' released configs do: cad/configs/overrides/cad_256.yaml trains on 256x256 images as 32x32
latents of the Stable Diffusion 1.5 VAE (model/use_ldm, model/postprocessing/sd_1_5_vae.yaml: AutoencoderKL of a
Stable Diffusion folder, ``subfolder="vae"``), scaled by 0.18215. With that VAE (4 latent channels, downsampling
factor f = 8) a 256x256 RGB image becomes a 4x32x32 latent: the shape of the ``rin_text_latent256`` preset.

``encode`` maps images in [-1, 1] to *scaled* latents ``(mean - shift_factor) * scaling_factor`` (SD: scaling 0.18215,
no shift), so that the diffusion sees roughly unit-variance data, as latent diffusion does. The latent distribution's
**mean**, not a sample, as the authors' default (``vae_sample: false`` in their SDLatentPreconditioning); it makes
encoding deterministic (all of a training step's randomness stays in the step's seeded generator, cad.tasks.base, so
resumed runs match, and latents could be cached), and the SD VAE's posterior standard deviation is small next to the
scaled latents' spread, so a sample would add little but noise.
``decode`` inverts the scaling and clamps the images to [-1, 1].

Our choice for one-channel data (the suite's grayscale stand-in canvases): ``encode`` repeats a single channel to the
VAE's three and ``decode(z, channels=1)`` averages the three back, so the latent path also runs at the cpu scale.

The codec is frozen (no parameter requires grad, always in eval mode) and follows its input's device, so a task can
keep it out of its registered submodules (no optimiser, no checkpoint) and still compute wherever its batch lives.
Weights load offline only (``local_files_only``); a missing folder raises ``VAEWeightsNotFoundError`` saying how to
provide it.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

SD_VAE_HINT = ("provide a Stable Diffusion VAE offline: a folder holding config.json and "
               "diffusion_pytorch_model.safetensors (e.g. stabilityai/sd-vae-ft-ema), or a Stable Diffusion folder "
               "with a vae/ subfolder (the authors': benjamin-paine/stable-diffusion-v1-5), downloaded on a machine "
               "with internet access with `huggingface-cli download <repo> --local-dir <folder>` and copied here; "
               "then set backbone.latent_vae=<folder>")


class VAEWeightsNotFoundError(FileNotFoundError):
    """The VAE's config or weights are not on this machine; the message names what is missing and how to get it."""


class LatentCodec(nn.Module):
    """A frozen ``AutoencoderKL``: images in [-1, 1] <-> scaled latents (see the module docstring)."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        cfg = vae.config
        self.scaling_factor = float(cfg.scaling_factor)
        self.shift_factor = float(cfg.shift_factor or 0.0)
        self.latent_channels = int(cfg.latent_channels)
        self.image_channels = int(cfg.in_channels)
        self.factor = 2 ** (len(cfg.block_out_channels) - 1)
        self.eval()

    def train(self, mode: bool = True) -> "LatentCodec":
        """Always eval: the codec is frozen (its dropout and norms never switch to training behaviour)."""
        return super().train(False)

    def _follow(self, x: Tensor) -> None:
        """Move the VAE to the input's device (a no-op when it is there already)."""
        if next(self.vae.parameters()).device != x.device:
            self.vae.to(x.device)

    def latent_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C, H, W) of an image -> (latent channels, H / f, W / f) of its latent."""
        channels, height, width = image_shape
        if channels not in (1, self.image_channels):
            raise ValueError(f"image with {channels} channels: the VAE encodes {self.image_channels}-channel (or "
                             f"1-channel, repeated) images")
        if height % self.factor or width % self.factor:
            raise ValueError(f"image size {height}x{width} is not a multiple of the VAE's downsampling factor "
                             f"{self.factor}; valid: sizes divisible by {self.factor}")
        return (self.latent_channels, height // self.factor, width // self.factor)

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """(B, C, H, W) images in [-1, 1] -> (B, latent C, H/f, W/f) scaled latents (the posterior mean)."""
        self.latent_shape(tuple(x.shape[1:]))
        self._follow(x)
        if x.shape[1] == 1 and self.image_channels != 1:
            x = x.expand(-1, self.image_channels, -1, -1)
        dtype = next(self.vae.parameters()).dtype
        mean = self.vae.encode(x.to(dtype)).latent_dist.mean
        return ((mean - self.shift_factor) * self.scaling_factor).to(x.dtype)

    @torch.no_grad()
    def decode(self, z: Tensor, channels: int | None = None) -> Tensor:
        """(B, latent C, h, w) scaled latents -> (B, C, h f, w f) images clamped to [-1, 1]; ``channels=1`` averages
        the VAE's colour channels into one (the grayscale path)."""
        if z.ndim != 4 or z.shape[1] != self.latent_channels:
            raise ValueError(f"decode expects (B, {self.latent_channels}, h, w) latents, got {tuple(z.shape)}")
        self._follow(z)
        dtype = next(self.vae.parameters()).dtype
        images = self.vae.decode((z / self.scaling_factor + self.shift_factor).to(dtype)).sample.float()
        if channels == 1 and images.shape[1] != 1:
            images = images.mean(dim=1, keepdim=True)
        return images.clamp(-1.0, 1.0)

    @classmethod
    def tiny(cls, seed: int = 0, factor: int = 2) -> "LatentCodec":
        """A tiny randomly initialised AutoencoderKL (4 latent channels, downsampling ``factor`` = 2, 4 or 8 as SD's;
        ~40k parameters at f = 2) for tests."""
        from diffusers import AutoencoderKL

        if factor not in (2, 4, 8):
            raise ValueError(f"factor={factor}: valid 2, 4 or 8 (one stride-2 block per factor of 2)")
        blocks = factor.bit_length()  # f = 2 -> 2 blocks, 4 -> 3, 8 -> 4: the last block does not downsample
        torch.manual_seed(seed)
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * blocks,
                            up_block_types=("UpDecoderBlock2D",) * blocks, block_out_channels=(8, 16, 16, 16)[:blocks],
                            layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=16)
        return cls(vae)


def _vae_folder(path: Path) -> tuple[Path, str | None]:
    """(folder, subfolder) of the VAE: the folder itself, or its vae/ subfolder (a Stable Diffusion folder)."""
    if (path / "config.json").is_file():
        return path, None
    if (path / "vae" / "config.json").is_file():
        return path, "vae"
    raise VAEWeightsNotFoundError(f"no VAE config in {path}: expected {path / 'config.json'} or "
                                  f"{path / 'vae' / 'config.json'}; {SD_VAE_HINT}")


def load_vae(path_or_name: str) -> LatentCodec:
    """The frozen codec of a local VAE folder, a local Stable Diffusion folder (its ``vae/``), or a hub name already
    in the local Hugging Face cache; never downloads."""
    from diffusers import AutoencoderKL

    path = Path(path_or_name).expanduser()
    if path.exists():
        folder, subfolder = _vae_folder(path)
        source = str(folder)
    elif path.is_absolute() or path_or_name.startswith((".", "~")) or path_or_name.count("/") != 1:
        raise VAEWeightsNotFoundError(f"VAE folder {path} does not exist; {SD_VAE_HINT}")
    else:  # owner/name: only from the local Hugging Face cache, a VAE repository or a Stable Diffusion one
        source, subfolder = path_or_name, None
    errors = []
    for sub in ([subfolder] if path.exists() else [None, "vae"]):
        try:
            return LatentCodec(AutoencoderKL.from_pretrained(source, subfolder=sub, local_files_only=True))
        except (OSError, ValueError) as err:
            errors.append(f"{source}/{sub}: {err}" if sub else f"{source}: {err}")
    raise VAEWeightsNotFoundError(f"cannot load the VAE weights offline ({'; '.join(errors)}); {SD_VAE_HINT}")


__all__ = ["LatentCodec", "VAEWeightsNotFoundError", "load_vae"]
