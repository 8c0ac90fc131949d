"""Per-sample random streams (EDM's ``StackedRandomGenerator``).

One ``torch.Generator`` per sample, seeded by that sample's seed: sample i's noise depends only on seed i, never on the
batch size, the batch it lands in, or the number of devices. Note that CPU and CUDA generators draw different streams
for the same seed, so a seed reproduces a sample on the same device type.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


class SeededGenerator:
    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.seeds = [int(s) for s in seeds]
        self.generators = [torch.Generator(self.device).manual_seed(s) for s in self.seeds]

    @classmethod
    def _from_generators(
        cls, seeds: list[int], generators: list[torch.Generator], device: torch.device
    ) -> "SeededGenerator":
        out = cls.__new__(cls)
        out.device, out.seeds, out.generators = device, seeds, generators
        return out

    def __len__(self) -> int:
        return len(self.generators)

    def __getitem__(self, index: int | slice) -> "SeededGenerator":
        """A view over some samples. It shares their generators, so drawing from it advances the parent's streams."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return SeededGenerator._from_generators(self.seeds[index], self.generators[index], self.device)

    def split(self, chunk_size: int) -> list["SeededGenerator"]:
        """Consecutive views of at most ``chunk_size`` samples (to sample a long seed list in batches)."""
        return [self[i : i + chunk_size] for i in range(0, len(self), chunk_size)]

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """(B, *shape) standard normal noise, row i drawn from generator i."""
        return torch.stack([torch.randn(shape, generator=g, device=self.device, dtype=dtype) for g in self.generators])

    def randn_like(self, x: Tensor) -> Tensor:
        if x.shape[0] != len(self):
            raise ValueError(f"batch of {x.shape[0]} samples but {len(self)} seeds")
        return self.randn(*x.shape[1:], dtype=x.dtype).to(x.device)
