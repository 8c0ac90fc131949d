"""Noise schedules gamma(t) on continuous time (paper sec. 3.1).

``x_t = sqrt(gamma(t)) x0 + sqrt(1 - gamma(t)) eps`` with ``t in [0, 1]``: gamma(0) = 1 (clean data) and
gamma(1) = 0 (pure noise), monotone decreasing in between. A schedule is a pure function ``t -> gamma`` and lives in a
registry keyed by name. A committed schedule is never changed: a variant gets a new name (guided-diffusion's rule),
so a checkpoint's schedule name keeps meaning the same thing.

Every schedule clips gamma to ``[clip_min, 1 - clip_min]`` with ``clip_min = CLIP_MIN = 1e-9`` (the authors' value) so
that ``sqrt(gamma)`` and the division by it in ``x0_from_eps`` stay finite at t = 1. The upper bound ``1 - 1e-9`` only
bites in float64 (in float32 it rounds to 1.0); samplers never divide by ``sqrt(1 - gamma(0))`` because their last
step returns ``x0_hat`` instead of evaluating t = 0.
"""
from __future__ import annotations

import functools
import inspect
import math
from typing import Callable

import torch
from torch import Tensor

Schedule = Callable[[Tensor], Tensor]

CLIP_MIN = 1e-9

_SCHEDULES: dict[str, Callable[..., Tensor]] = {}


def register_schedule(name: str) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Add a schedule under ``name``; a name is registered once and never replaced."""

    def decorator(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        if name in _SCHEDULES:
            raise ValueError(
                f"schedule '{name}' is already registered; a committed schedule never changes, pick a new name"
            )
        _SCHEDULES[name] = fn
        return fn

    return decorator


def available_schedules() -> list[str]:
    return sorted(_SCHEDULES)


def get_schedule(name: str, shift: float = 1.0, **params: float) -> Schedule:
    """The schedule ``name`` as a function ``t -> gamma(t)``, with its keyword parameters overridden by ``params``;
    ``shift`` != 1 applies :func:`shift_schedule` (a resolution-dependent shift for resolution transfer)."""
    if shift <= 0:
        raise ValueError(f"schedule shift must be > 0, got {shift}")
    if name not in _SCHEDULES:
        raise ValueError(f"unknown schedule '{name}'; available: {', '.join(available_schedules())}")
    fn = _SCHEDULES[name]
    allowed = [p.name for p in inspect.signature(fn).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"schedule '{name}' has no parameter(s) {unknown}; allowed: {allowed}")
    schedule = functools.partial(fn, **params)
    return schedule if shift == 1.0 else functools.partial(shift_schedule, schedule, shift=shift)


def shift_schedule(schedule: Schedule, t: Tensor, *, shift: float) -> Tensor:
    """The schedule with its signal-to-noise ratio divided by ``shift**2`` at every t: logit(gamma) - 2 log(shift).

    Resolution transfer (the multi-level conditioning paper's schedule scaling; "simple diffusion", Hoogeboom et al.
    2023): an image with ``shift`` times the side of the training one has ``shift**2`` as many pixels averaging the same
    noise, so the same gamma destroys less of it; shifting by the side ratio keeps the noise level per area. Our choice
    of the form (the seed paper's could not be read offline)."""
    gamma = schedule(t).double()
    shifted = torch.sigmoid(torch.logit(gamma) - 2.0 * math.log(shift))
    return _clip(shifted, CLIP_MIN).to(torch.as_tensor(t).dtype if torch.is_tensor(t) else torch.float32)


def _clip(gamma: Tensor, clip_min: float) -> Tensor:
    return gamma.clamp(min=clip_min, max=1.0 - clip_min)


@register_schedule("linear")
def linear(t: Tensor, *, clip_min: float = CLIP_MIN) -> Tensor:
    """gamma(t) = 1 - t. Used to train ImageNet-64."""
    t = torch.as_tensor(t)
    return _clip(1.0 - t, clip_min)


@register_schedule("cosine")
def cosine(t: Tensor, *, clip_min: float = CLIP_MIN) -> Tensor:
    """gamma(t) = cos^2(((t + 2e-4) / (1 + 2.5e-4)) pi / 2), the authors' exact form. Used for sampling."""
    t = torch.as_tensor(t)
    return _clip(torch.cos(((t + 2e-4) / (1 + 2.5e-4)) * math.pi / 2) ** 2, clip_min)


@register_schedule("sigmoid")
def sigmoid(
    t: Tensor, *, start: float = -3.0, end: float = 3.0, tau: float = 0.9, clip_min: float = CLIP_MIN
) -> Tensor:
    """gamma(t) = (s(end/tau) - s((t (end - start) + start)/tau)) / (s(end/tau) - s(start/tau)), s the logistic.

    Used to train CIFAR-10 (start -3, end 3, tau 0.9).
    """
    if not start < end:
        raise ValueError(f"sigmoid schedule needs start < end, got start={start}, end={end}")
    if tau <= 0:
        raise ValueError(f"sigmoid schedule needs tau > 0, got {tau}")
    t = torch.as_tensor(t)

    def s(v: float) -> float:
        return 1.0 / (1.0 + math.exp(-v))

    v_start, v_end = s(start / tau), s(end / tau)
    gamma = (v_end - torch.sigmoid((t * (end - start) + start) / tau)) / (v_end - v_start)
    return _clip(gamma, clip_min)
