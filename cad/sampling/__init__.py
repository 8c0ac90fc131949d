"""Samplers with one signature: ``sample(denoise, x_T, steps, *, schedule, generator, ..., progress) -> x0``.

Registry names: ``"ddim"`` (``eta`` option; eta = 0 deterministic) and ``"ddpm"`` (ancestral).
"""
from __future__ import annotations

from cad.sampling import ddim, ddpm
from cad.sampling.denoiser import DenoiseFn, NoiseSource, Sampler
from cad.sampling.rng import SeededGenerator

_SAMPLERS: dict[str, Sampler] = {"ddim": ddim.sample, "ddpm": ddpm.sample}


def available_samplers() -> list[str]:
    return sorted(_SAMPLERS)


def get_sampler(name: str) -> Sampler:
    if name not in _SAMPLERS:
        raise ValueError(f"unknown sampler '{name}'; available: {', '.join(available_samplers())}")
    return _SAMPLERS[name]


__all__ = ["DenoiseFn", "NoiseSource", "Sampler", "SeededGenerator", "available_samplers", "get_sampler"]
