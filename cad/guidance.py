"""Guidance as wrappers that turn a model and a condition into a ``DenoiseFn`` (paper sec. 3.3).

Samplers never see guidance: a wrapper binds the condition and the scale and returns
``denoise(x_t, gamma, state) -> (eps_hat, state)``. Models follow the backbone contract
``model(x_t, gamma, cond, self_cond=None) -> (eps_hat, latents_or_None)``.

Guided sampling is ``guided(model, cond_pos, cond_neg, scale)``: eps_pos + w (eps_pos - eps_neg). The task that owns
the condition builds the pair (``guidance_pair`` gives the class-label pairs; a text task uses its own negative,
a random-character prompt at coherence 0, ``cacfg_prompt_pair``):

- ``"none"``: ``conditional``, the conditional prediction eps(x, y, c) as is.
- ``"cfg"``: eq. 3, positive ``cond``, negative the null condition ``cond.as_null()``.
- ``"cacfg"``: eq. 4, positive ``cond`` at coherence 1, negative ``cond`` at coherence 0.

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


def guided(model: nn.Module, cond_pos: Condition, cond_neg: Condition, scale: float) -> DenoiseFn:
    """eps_pos + scale (eps_pos - eps_neg), both branches in one forward, each with its own self-conditioning state."""

    def denoise(x_t: Tensor, gamma: Tensor, state: Any) -> tuple[Tensor, Any]:
        state_pos, state_neg = (None, None) if state is None else state
        if scale == 0:
            eps_pos, state_pos = model(x_t, gamma, cond_pos, self_cond=state_pos)
            return eps_pos, (state_pos, None)
        if (state_pos is None) != (state_neg is None):
            raise ValueError("guidance state has latents for one branch only; both branches must self-condition alike")
        self_cond = None if state_pos is None else torch.cat([state_pos, state_neg])
        eps, latents = model(torch.cat([x_t, x_t]), torch.cat([gamma, gamma]), Condition.cat([cond_pos, cond_neg]),
                             self_cond=self_cond)
        eps_pos, eps_neg = eps.chunk(2)
        state_pos, state_neg = (None, None) if latents is None else latents.chunk(2)
        return eps_pos + scale * (eps_pos - eps_neg), (state_pos, state_neg)

    return denoise


def multi_guided(model: nn.Module, cond_pos: Condition, negatives: list[tuple[Condition, float]]) -> DenoiseFn:
    """eps_pos + sum_k w_k (eps_pos - eps_k) over the (condition, w_k) ``negatives``: several guidance terms at once
    (the multi-level conditioning paper's own scale for control metadata, beside the label's), every branch in one
    batched forward, each with its own self-conditioning state (the state is the tuple of them)."""
    conds = [cond_pos] + [c for c, _ in negatives]
    weights = [w for _, w in negatives]
    n = len(conds)

    def denoise(x_t: Tensor, gamma: Tensor, state: Any) -> tuple[Tensor, Any]:
        states = [None] * n if state is None else list(state)
        if any(s is None for s in states) and not all(s is None for s in states):
            raise ValueError("guidance state has latents for some branches only; all must self-condition alike")
        self_cond = None if states[0] is None else torch.cat(states)
        eps, latents = model(torch.cat([x_t] * n), torch.cat([gamma] * n), Condition.cat(conds), self_cond=self_cond)
        parts = eps.chunk(n)
        out = parts[0] + sum(w * (parts[0] - p) for w, p in zip(weights, parts[1:]))
        return out, (None if latents is None else tuple(latents.chunk(n)))

    return denoise


def metadata_null(cond: Condition) -> Condition:
    """``cond`` with every sample's control metadata replaced by its learned null (the metadata guidance's negative)."""
    if cond.metadata is None:
        raise ValueError(
            "metadata guidance needs a condition with control metadata (a model trained with data.augment)"
        )
    return cond.replace(metadata_null=torch.ones(cond.batch_size, dtype=torch.bool, device=cond.metadata.device))


def cfg_pair(cond: Condition) -> tuple[Condition, Condition]:
    """Eq. 3's branches: ``cond`` and its null counterpart (coherence unchanged). Condition.cat needs the same fields
    in both halves, so an unset ``label_null`` becomes "no sample is null"."""
    cond_neg = cond.as_null()
    cond_pos = cond if cond.label_null is not None else cond.replace(label_null=torch.zeros_like(cond_neg.label_null))
    return cond_pos, cond_neg


def cacfg_pair(cond: Condition, coherence_pos: float = 1.0, coherence_neg: float = 0.0) -> tuple[Condition, Condition]:
    """Eq. 4's branches: the same condition at coherence 1 and at coherence 0 (the paper's values)."""
    return cond.with_coherence(coherence_pos), cond.with_coherence(coherence_neg)


def cacfg_prompt_pair(cond: Condition, negative: Condition) -> tuple[Condition, Condition]:
    """Eq. 4 as the paper samples text: the prompt at coherence 1 against ``negative`` (the task's random-character
    prompt, its tokens and mask in place of the prompt's) at coherence 0."""
    if negative.batch_size != cond.batch_size:
        raise ValueError(f"negative condition has {negative.batch_size} samples, the prompt {cond.batch_size}")
    return (cond.with_coherence(1.0),
            cond.replace(tokens=negative.tokens, token_mask=negative.token_mask).with_coherence(0.0))


def null_prompt_pair(cond: Condition) -> tuple[Condition, Condition]:
    """Eq. 3 for text: the prompt against the empty prompt, every text token masked out (the model then sees only its
    registers and the coherence token), as condition dropout trains it (cad.tasks.text_conditional)."""
    return cond, cond.replace(token_mask=torch.zeros_like(cond.token_mask))


def aligned_loss_pair(cond: Condition, guidance: str, name: str,
                      null_pair: Callable[[Condition], tuple[Condition, Condition]] = cfg_pair
                      ) -> tuple[Condition, Condition]:
    """The guidance-aligned loss's branches (cad.diffusion.guidance_loss) for method ``name`` with ``guidance``: the
    training condition as drawn against the task's null (``null_pair``: the null label, the empty prompt) for plain CFG,
    or against the same condition at coherence 0 for CAD. At sampling CA-CFG's positive is coherence 1; in training it
    is the sample's own coherence, our choice: the loss then teaches every coherence level the guided combination, as
    guided sampling at c < 1 uses it."""
    if guidance == "cfg":
        return null_pair(cond)
    if guidance == "cacfg":
        return cond, cond.with_coherence(0.0)
    raise ValueError(f"method '{name}' has no guided branch (guidance: none) for the guidance-aligned loss; valid: a "
                     f"method with guidance (cfg, cad)")


PAIRS: dict[str, Callable[[Condition], tuple[Condition, Condition]]] = {"cfg": cfg_pair, "cacfg": cacfg_pair}


def guidance_pair(cond: Condition, guidance: str) -> tuple[Condition, Condition]:
    """The (positive, negative) conditions of ``guidance`` ("cfg", "cacfg") for a condition without a task-specific
    negative (class labels, maps)."""
    if guidance not in PAIRS:
        raise ValueError(f"guidance '{guidance}' has no negative branch; valid: {', '.join(PAIRS)}")
    return PAIRS[guidance](cond)


def classifier_free(model: nn.Module, cond: Condition, scale: float) -> DenoiseFn:
    """Eq. 3: eps(x, y) + w (eps(x, y) - eps(x, null)); the null branch is ``cond.as_null()`` (coherence unchanged)."""
    return guided(model, *cfg_pair(cond), scale)


def coherence_aware(
    model: nn.Module, cond: Condition, scale: float, *, coherence_pos: float = 1.0, coherence_neg: float = 0.0
) -> DenoiseFn:
    """Eq. 4 (CA-CFG): eps(x, y, 1) + w (eps(x, y, 1) - eps(x, y, 0)), via ``cond.with_coherence``.

    ``coherence_pos``/``coherence_neg`` default to the paper's (1, 0); equal values collapse to the conditional branch.
    """
    return guided(model, *cacfg_pair(cond, coherence_pos, coherence_neg), scale)


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
