"""The batch of conditions a denoiser sees.

One dataclass carries every kind of condition the three tasks of the paper need, so that backbones, guidance and
samplers share one interface and a new task plugs in without touching them:

- ``label``/``label_null``: class conditioning; ``label_null[i] = True`` selects the explicit null embedding
  (classifier-free guidance dropout and the unconditional branch of eq. 3).
- ``coherence``: one score per sample in [0, 1] (paper sec. 3.2); its own token in RIN (sec. 4.1).
- ``tokens``/``token_mask``: a sequence of condition tokens (text encoder states), ``True`` marks a valid token.
- ``spatial_map``/``coherence_map``: a dense condition (a one-hot semantic map) and its per-pixel coherence.
- ``metadata``/``metadata_null``: control metadata (augmentation flags, crop box, resolution; the multi-level
  conditioning paper's second level), entering on the time path; ``metadata_null[i]`` selects its learned null.

Fields a task does not use stay ``None``. All tensors share the batch dimension.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable

import torch
from torch import Tensor


@dataclass(frozen=True)
class Condition:
    label: Tensor | None = None  # (B,) int64 class index
    label_null: Tensor | None = None  # (B,) bool: use the null label embedding instead of `label`
    coherence: Tensor | None = None  # (B,) float in [0, 1]
    tokens: Tensor | None = None  # (B, L, D) condition token states
    token_mask: Tensor | None = None  # (B, L) bool, True = valid token
    spatial_map: Tensor | None = None  # (B, C, H, W)
    coherence_map: Tensor | None = None  # (B, 1, H, W) in [0, 1]
    metadata: Tensor | None = None  # (B, M) float control metadata
    metadata_null: Tensor | None = None  # (B,) bool: use the null metadata embedding instead of `metadata`

    def _map(self, fn: Callable[[Tensor], Tensor]) -> "Condition":
        return Condition(
            **{f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name)) for f in fields(self)}
        )

    @property
    def batch_size(self) -> int | None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                return value.shape[0]
        return None

    def replace(self, **changes) -> "Condition":
        return replace(self, **changes)

    def to(self, device: torch.device | str) -> "Condition":
        return self._map(lambda t: t.to(device))

    def __getitem__(self, index) -> "Condition":
        """Select samples along the batch dimension (an int keeps the dimension)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return self._map(lambda t: t[index])

    @staticmethod
    def cat(conditions: list["Condition"]) -> "Condition":
        """Concatenate along the batch; every condition must have the same fields set."""
        out = {}
        for f in fields(Condition):
            values = [getattr(c, f.name) for c in conditions]
            present = [v is not None for v in values]
            if any(present) and not all(present):
                raise ValueError(f"Condition.cat: field '{f.name}' is set in some conditions and None in others")
            out[f.name] = torch.cat(values) if all(present) else None
        return Condition(**out)

    def with_coherence(self, value: float) -> "Condition":
        """The same condition with every sample's coherence (and coherence map) set to ``value``."""
        batch = self.batch_size
        if batch is None:
            raise ValueError("with_coherence needs at least one field set to know the batch size")
        device = next(getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None).device
        changes = {"coherence": torch.full((batch,), float(value), device=device)}
        if self.coherence_map is not None:
            changes["coherence_map"] = torch.full_like(self.coherence_map, float(value))
        return self.replace(**changes)

    def as_null(self) -> "Condition":
        """The unconditional counterpart used by plain CFG (eq. 3): every label replaced by the null embedding."""
        if self.label is None:
            raise ValueError("as_null needs a label to null out")
        return self.replace(label_null=torch.ones_like(self.label, dtype=torch.bool))
