"""A training data order that is a pure function of (seed, step), so a resumed run sees the batches an uninterrupted
run would have seen, whatever the number of devices.

Step s of the run uses the global batch s of a sequence of seeded permutations of the dataset (one permutation per
pass); with R ranks, rank r takes every R-th item of that global batch. Lightning's resume restores the step count but
restarts a plain sampler from the beginning of its epoch; this sampler starts at ``start_step`` instead.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


class StepBatchSampler(Sampler[list[int]]):
    def __init__(self, num_items: int, global_batch_size: int, total_steps: int, *, seed: int, rank: int = 0,
                 world_size: int = 1):
        if global_batch_size % world_size:
            raise ValueError(f"global batch {global_batch_size} must be divisible by the {world_size} devices")
        if num_items < global_batch_size:
            raise ValueError(f"dataset of {num_items} items is smaller than one global batch ({global_batch_size})")
        self.num_items, self.global_batch_size, self.total_steps = num_items, global_batch_size, total_steps
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.steps_per_pass = num_items // global_batch_size  # the incomplete last batch of a pass is dropped
        self.start_step = 0

    def _permutation(self, pass_index: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 7919 + pass_index)
        return torch.randperm(self.num_items, generator=generator)

    def global_batch(self, step: int) -> list[int]:
        pass_index, position = divmod(step, self.steps_per_pass)
        start = position * self.global_batch_size
        return self._permutation(pass_index)[start:start + self.global_batch_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        permutation, current_pass = None, -1
        for step in range(self.start_step, self.total_steps):
            pass_index, position = divmod(step, self.steps_per_pass)
            if pass_index != current_pass:
                permutation, current_pass = self._permutation(pass_index), pass_index
            start = position * self.global_batch_size
            yield permutation[start:start + self.global_batch_size][self.rank::self.world_size].tolist()

    def __len__(self) -> int:
        return self.total_steps - self.start_step
