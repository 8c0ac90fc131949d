"""The one interface between samplers and whatever predicts the noise.

A ``DenoiseFn`` maps ``(x_t, gamma, state)`` to ``(eps_hat, state)``. The state is opaque to samplers: it is ``None`` at
the first step and whatever the previous call returned afterwards. RIN's self-conditioning latents travel through
sampling this way; guidance wrappers (``cad.guidance``) bind the condition and the guidance scale, so samplers know
about neither.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence

from torch import Tensor


class DenoiseFn(Protocol):
    def __call__(self, x_t: Tensor, gamma: Tensor, state: Any) -> tuple[Tensor, Any]:
        """x_t: (B, ...); gamma: (B,); returns eps_hat shaped like x_t and the state for the next step."""
        ...


class NoiseSource(Protocol):
    """What samplers draw their noise from: ``SeededGenerator`` (one generator per sample)."""

    def __len__(self) -> int: ...

    def randn(self, *shape: int, dtype=...) -> Tensor: ...


class Sampler(Protocol):
    """The signature every sampler in ``cad.sampling`` shares (extra keyword options, such as DDIM's eta, allowed)."""

    def __call__(
        self, denoise: DenoiseFn, x_T: Tensor, steps: int, *, schedule, generator: NoiseSource, progress: bool = False
    ) -> Tensor: ...


__all__: Sequence[str] = ["DenoiseFn", "NoiseSource", "Sampler"]
