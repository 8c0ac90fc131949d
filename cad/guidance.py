"""Guidance as wrappers that turn a model and a condition into a ``DenoiseFn`` (paper sec. 3.3).

Samplers never see guidance: a wrapper binds the condition and the scale and returns
``denoise(x_t, gamma, state) -> (eps_hat, state)``. Models follow the backbone contract
``model(x_t, gamma, cond, self_cond=None) -> (eps_hat, latents_or_None)``.

Registry names (``get_guidance``):

- ``"none"``: ``conditional``, the conditional prediction eps(x, y, c) as is.
- ``"cfg"``: ``classifier_free``, eq. 3: eps(x, y) + w (eps(x, y) - eps(x, null)).
- ``"cacfg"``: ``coherence_aware``, eq. 4: eps(x, y, 1) + w (eps(x, y, 1) - eps(x, y, 0)).

Self-conditioning: each branch carries its own latents from one step to the next; the guided state is the pair
``(state_pos, state_neg)``. (The authors' first release dropped the latents whenever guidance was on; we keep them.)
With ``scale == 0`` the negative branch is skipped (``state_neg`` stays None); otherwise both branches run in one
batched forward (positive half first).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from cad.conditioning import Condition
from cad.sampling.denoiser import DenoiseFn


def conditional(model: nn.Module, cond: Condition, scale: float = 0.0) -> DenoiseFn:
    """No guidance: the model's prediction for ``cond``; the state is the model's self-conditioning latents.

    ``scale`` exists only so that every registry entry shares one signature; anything but 0 is refused.
    """
    if scale != 0:
        raise ValueError(f"guidance 'none' takes no scale, got {scale}; use 'cfg' or 'cacfg' to guide")

    def denoise(x_t: Tensor, gamma: Tensor, state: Any) -> tuple[Tensor, Any]:
        return model(x_t, gamma, cond, self_cond=state)

    return denoise


def _guided(model: nn.Module, cond_pos: Condition, cond_neg: Condition, scale: float) -> DenoiseFn:
    """eps_pos + scale (eps_pos - eps_neg), both branches in one forward, each with its own self-conditioning state."""

    def denoise(x_t: Tensor, gamma: Tensor, state: Any) -> tuple[Tensor, Any]:
        state_pos, state_neg = (None, None) if state is None else state
        if scale == 0:
            eps_pos, state_pos = model(x_t, gamma, cond_pos, self_cond=state_pos)
            return eps_pos, (state_pos, None)
        if (state_pos is None) != (state_neg is None):
            raise ValueError("guidance state has latents for one branch only; both branches must self-condition alike")
        self_cond = None if state_pos is None else torch.cat([state_pos, state_neg])
        eps, latents = model(torch.cat([x_t, x_t]), torch.cat([gamma, gamma]), Condition.cat([cond_pos, cond_neg]), self_cond=self_cond)
        eps_pos, eps_neg = eps.chunk(2)
        state_pos, state_neg = (None, None) if latents is None else latents.chunk(2)
        return eps_pos + scale * (eps_pos - eps_neg), (state_pos, state_neg)

    return denoise


def classifier_free(model: nn.Module, cond: Condition, scale: float) -> DenoiseFn:
    """Eq. 3: eps(x, y) + w (eps(x, y) - eps(x, null)); the null branch is ``cond.as_null()`` (coherence unchanged)."""
    cond_neg = cond.as_null()
    # Condition.cat needs the same fields in both halves: an unset label_null means "no sample is null".
    cond_pos = cond if cond.label_null is not None else cond.replace(label_null=torch.zeros_like(cond_neg.label_null))
    return _guided(model, cond_pos, cond_neg, scale)


def coherence_aware(
    model: nn.Module, cond: Condition, scale: float, *, coherence_pos: float = 1.0, coherence_neg: float = 0.0
) -> DenoiseFn:
    """Eq. 4 (CA-CFG): eps(x, y, 1) + w (eps(x, y, 1) - eps(x, y, 0)), via ``cond.with_coherence``.

    ``coherence_pos``/``coherence_neg`` default to the paper's (1, 0); equal values collapse to the conditional branch.
    """
    return _guided(model, cond.with_coherence(coherence_pos), cond.with_coherence(coherence_neg), scale)


_GUIDANCE: dict[str, Callable[[nn.Module, Condition, float], DenoiseFn]] = {
    "none": conditional,
    "cfg": classifier_free,
    "cacfg": coherence_aware,
}


def available_guidance() -> list[str]:
    return sorted(_GUIDANCE)


def get_guidance(name: str) -> Callable[[nn.Module, Condition, float], DenoiseFn]:
    """The wrapper ``(model, cond, scale) -> DenoiseFn`` registered as ``name`` ("none", "cfg", "cacfg")."""
    if name not in _GUIDANCE:
        raise ValueError(f"unknown guidance '{name}'; available: {', '.join(available_guidance())}")
    return _GUIDANCE[name]
