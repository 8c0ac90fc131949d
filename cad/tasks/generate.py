"""Class-conditional generation from a trained denoiser: seeds and labels in, images out.

A sample depends only on its seed, label and the sampling config (never on the batch it was drawn in), because the
initial noise and every ancestral noise come from a per-sample generator (cad.sampling.rng.SeededGenerator).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from cad import hardware
from cad.conditioning import Condition
from cad.diffusion.schedules import get_schedule
from cad.guidance import get_guidance
from cad.sampling import get_sampler
from cad.sampling.rng import SeededGenerator


def make_denoiser(model: nn.Module, cond: Condition, guidance: str, scale: float, precision: str = "32-true"):
    """The denoise function for one guidance choice (paper eq. 3 for 'cfg', eq. 4 for 'cacfg'); scale 0 is the
    plain conditional branch whatever the method. With ``bf16-mixed`` the network runs under bf16 autocast and its
    prediction comes back in fp32, so the sampler's update stays in fp32."""
    denoise = get_guidance("none" if scale == 0.0 else guidance)(model, cond, scale)
    if precision == "32-true":
        return denoise

    def autocast_denoise(x_t: Tensor, gamma: Tensor, state):
        with hardware.autocast(x_t.device, precision):
            eps_hat, state = denoise(x_t, gamma, state)
        return eps_hat.float(), state

    return autocast_denoise


@torch.no_grad()
def generate(model: nn.Module, labels: Sequence[int], seeds: Sequence[int], *, image_shape: tuple[int, int, int],
             use_coherence: bool, coherence: float, sampler: str, steps: int, schedule: dict, guidance: str,
             guidance_scale: float, eta: float, clip_x0: bool, batch_size: int, progress: bool = True,
             device: str | torch.device = "cpu", precision: str = "32-true") -> Tensor:
    """Images in [-1, 1], (N, C, H, W), one per (label, seed) pair; the network in ``precision`` on ``device``."""
    if len(labels) != len(seeds):
        raise ValueError(f"generate: {len(labels)} labels but {len(seeds)} seeds")
    model.eval()
    sample_fn = get_sampler(sampler)
    gamma_fn = get_schedule(**schedule)
    sampler_kwargs = {"eta": eta} if sampler == "ddim" else {}
    out = []
    starts = range(0, len(seeds), batch_size)
    for start in tqdm(starts, desc="sampling", unit="batch", disable=not progress or len(starts) == 1):
        batch_seeds = list(seeds[start:start + batch_size])
        batch_labels = torch.as_tensor(list(labels[start:start + batch_size]), dtype=torch.long, device=device)
        cond = Condition(label=batch_labels, label_null=torch.zeros_like(batch_labels, dtype=torch.bool))
        if use_coherence:
            cond = cond.with_coherence(coherence)
        generator = SeededGenerator(batch_seeds, device=device)
        x_T = generator.randn(*image_shape)
        denoise = make_denoiser(model, cond, guidance, guidance_scale, precision)
        x0 = sample_fn(denoise, x_T, steps, schedule=gamma_fn, generator=generator, clip_x0=clip_x0,
                       progress=progress and len(starts) == 1, **sampler_kwargs)
        out.append(x0.float().cpu())
    return torch.cat(out)


def to_uint8(images: Tensor) -> np.ndarray:
    """[-1, 1] NCHW floats -> uint8 NHWC, the on-disk sample format."""
    x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def balanced_labels(num_samples: int, num_classes: int) -> list[int]:
    """Requested labels for evaluation: classes in turn, so every class is asked for equally often."""
    return [i % num_classes for i in range(num_samples)]


def generate_distributed(model: nn.Module, labels: Sequence[int], seeds: Sequence[int], **kwargs) -> Tensor:
    """``generate`` split across the processes of an initialised torch.distributed group: rank r draws samples
    r, r + R, r + 2R, ... and every rank gets all of them back in the original order. Since a sample depends only on
    its seed and label, the result is the same for any number of processes (tests/test_distributed_sampling.py)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return generate(model, labels, seeds, **kwargs)
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = generate(model, list(labels)[rank::world], list(seeds)[rank::world], **kwargs)
    gathered: list = [None] * world
    dist.all_gather_object(gathered, mine)
    out = torch.empty((len(seeds), *mine.shape[1:]), dtype=mine.dtype)
    for r, part in enumerate(gathered):
        out[r::world] = part
    return out
