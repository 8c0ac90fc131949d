"""Generation from a trained denoiser, for any task: per-sample requests and seeds in, images out.

A request is whatever the task turns into a condition (a class label, a caption, a map); ``condition`` builds the
batch's ``Condition`` from a slice of requests, ``pair`` the (positive, negative) conditions guidance needs. A sample
depends only on its seed, request and the sampling config (never on the batch it was drawn in), because the initial
noise and every ancestral noise come from a per-sample generator (cad.sampling.rng.SeededGenerator).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from cad import hardware
from cad.conditioning import Condition
from cad.diffusion.schedules import get_schedule
from cad.guidance import conditional, guided, metadata_null, multi_guided
from cad.sampling import get_sampler
from cad.sampling.rng import SeededGenerator
from cad.tasks.drawn_batches import DrawnBatches

ConditionFn = Callable[[list, torch.device], Condition]
PairFn = Callable[[Condition], tuple[Condition, Condition]]


def make_denoiser(model: nn.Module, cond: Condition, scale: float, pair: PairFn | None = None,
                  precision: str = "32-true", metadata_scale: float = 0.0):
    """The denoise function: the conditional branch at scale 0, else ``guided`` over ``pair(cond)`` (eq. 3 or 4, as
    the task built it); with ``metadata_scale`` a further term against the null control metadata (``multi_guided``).
    With ``bf16-mixed`` the network runs under bf16 autocast and its prediction comes back in fp32, so the sampler's
    update stays in fp32."""
    if metadata_scale != 0.0:
        if scale != 0.0 and pair is None:
            raise ValueError(f"guidance scale {scale} needs a (positive, negative) condition pair; this run has none")
        pos, neg = pair(cond) if scale != 0.0 else (cond, None)
        negatives = ([(neg, scale)] if neg is not None else []) + [(metadata_null(pos), metadata_scale)]
        denoise = multi_guided(model, pos, negatives)
    elif scale == 0.0:
        denoise = conditional(model, cond)
    elif pair is None:
        raise ValueError(f"guidance scale {scale} needs a (positive, negative) condition pair; this run has none")
    else:
        denoise = guided(model, *pair(cond), scale)
    if precision == "32-true":
        return denoise

    def autocast_denoise(x_t: Tensor, gamma: Tensor, state):
        with hardware.autocast(x_t.device, precision):
            eps_hat, state = denoise(x_t, gamma, state)
        return eps_hat.float(), state

    return autocast_denoise


@torch.no_grad()
def generate(model: nn.Module, requests: Sequence, seeds: Sequence[int], *, condition: ConditionFn,
             pair: PairFn | None, image_shape: tuple[int, int, int], sampler: str, steps: int, schedule: dict,
             guidance_scale: float, eta: float, clip_x0: bool, batch_size: int, progress: bool = True,
             device: str | torch.device = "cpu", precision: str = "32-true", metadata_scale: float = 0.0,
             to_images: Callable[[Tensor], Tensor] | None = None, store: DrawnBatches | None = None) -> Tensor:
    """Images in [-1, 1], (N, C, H, W), one per (request, seed) pair; the network in ``precision`` on ``device``.
    ``image_shape`` is the shape the sampler draws in; ``to_images`` (a module's ``to_images``; None: the identity)
    maps each batch of sampler outputs to images on ``device``, e.g. a latent-space task's VAE decoder. With a
    ``store`` (cad.tasks.drawn_batches) each batch is kept once drawn and a batch it holds is not drawn again."""
    if len(requests) != len(seeds):
        raise ValueError(f"generate: {len(requests)} requests but {len(seeds)} seeds")
    model.eval()
    device = torch.device(device)
    sample_fn = get_sampler(sampler)
    gamma_fn = get_schedule(**schedule)
    sampler_kwargs = {"eta": eta} if sampler == "ddim" else {}
    out = []
    starts = range(0, len(seeds), batch_size)
    for start in tqdm(starts, desc="sampling", unit="batch", disable=not progress or len(starts) == 1):
        batch_seeds, batch_requests = list(seeds[start:start + batch_size]), list(requests[start:start + batch_size])
        kept = store.load(batch_seeds, batch_requests) if store is not None else None
        if kept is not None:
            out.append(kept)
            continue
        cond = condition(batch_requests, device)
        generator = SeededGenerator(batch_seeds, device=device)
        x_T = generator.randn(*image_shape)
        denoise = make_denoiser(model, cond, guidance_scale, pair, precision, metadata_scale)
        x0 = sample_fn(denoise, x_T, steps, schedule=gamma_fn, generator=generator, clip_x0=clip_x0,
                       progress=progress and len(starts) == 1, **sampler_kwargs)
        if to_images is not None:
            x0 = to_images(x0)
        out.append(x0.float().cpu())
        if store is not None:
            store.save(batch_seeds, batch_requests, out[-1])
    return torch.cat(out)


def to_uint8(images: Tensor) -> np.ndarray:
    """[-1, 1] NCHW floats -> uint8 NHWC, the on-disk sample format."""
    x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def generate_distributed(model: nn.Module, requests: Sequence, seeds: Sequence[int], **kwargs) -> Tensor:
    """``generate`` split across the processes of an initialised torch.distributed group: rank r draws samples
    r, r + R, r + 2R, ... and every rank gets all of them back in the original order. Since a sample depends only on
    its seed and request, the result is the same for any number of processes (tests/test_distributed_sampling.py)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return generate(model, requests, seeds, **kwargs)
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = generate(model, list(requests)[rank::world], list(seeds)[rank::world], **kwargs)
    gathered: list = [None] * world
    dist.all_gather_object(gathered, mine)
    out = torch.empty((len(seeds), *mine.shape[1:]), dtype=mine.dtype)
    for r, part in enumerate(gathered):
        out[r::world] = part
    return out
