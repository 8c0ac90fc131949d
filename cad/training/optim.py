"""The optimizer: LAMB (timm's ``Lamb``), as the CAD/RIN authors train, with weight decay on matrices only.

Parameters with no weight decay:
- every parameter with ``ndim <= 1``: biases, norm scales/shifts, scalar gates (LayerScale vectors included);
- names containing one of ``NO_DECAY_NAME_PATTERNS`` (``"pos_emb"``: positional embeddings, ``"null"``: the explicit
  null condition embedding). Decay would shrink them toward zero although they are tables of vectors, not linear maps;
  the null embedding in particular gets few or no gradients when CAD trains without label dropout, so decay alone would
  erase it;
- names listed by a timm-style ``no_weight_decay()`` method, on the model or any submodule (names relative to the module
  that defines the method; e.g. RIN's positional embedding ``data_pos`` is not caught by the name patterns, so the
  backbone should list it there).

timm's ``Lamb`` defaults are kept: ``eps=1e-6``, global gradient-norm clipping at ``max_grad_norm=1.0`` inside the
optimizer (so a Trainer ``gradient_clip_val`` would clip twice), and the trust ratio applied only to groups with weight
decay (``always_adapt=False``), i.e. no-decay parameters get plain Adam steps, as in the original LAMB recipe.
"""
from __future__ import annotations

import torch
from timm.optim import Lamb
from torch import nn

NO_DECAY_NAME_PATTERNS = ("pos_emb", "null")


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Names of the trainable parameters that are not decayed (rule in the module docstring)."""
    explicit = {
        f"{prefix}.{name}" if prefix else name
        for prefix, module in model.named_modules()
        if callable(getattr(module, "no_weight_decay", None))
        for name in module.no_weight_decay()
    }
    return {
        name
        for name, p in model.named_parameters()
        if p.requires_grad and (p.ndim <= 1 or name in explicit or any(pat in name for pat in NO_DECAY_NAME_PATTERNS))
    }


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups, ``"decay"`` then ``"no_decay"`` (``group_name`` key); empty groups are left out."""
    skip = no_weight_decay_names(model)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"group_name": "decay", "params": [p for n, p in named if n not in skip], "weight_decay": weight_decay},
        {"group_name": "no_decay", "params": [p for n, p in named if n in skip], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(
    model: nn.Module, *, lr: float, betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.01
) -> torch.optim.Optimizer:
    """LAMB over ``param_groups(model, weight_decay)``. Paper: lr 3e-3 (CIFAR-10), 2e-3 (ImageNet-64)."""
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    groups = param_groups(model, weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return Lamb(groups, lr=lr, betas=betas, weight_decay=weight_decay)
