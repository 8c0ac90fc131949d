"""A training data order that is a pure function of (seed, step), so a resumed run sees the batches an uninterrupted
run would have seen, whatever the number of devices.

Step s of the run uses the global batch s of a sequence of seeded permutations of the dataset (one permutation per
pass); with R ranks, rank r takes every R-th item of that global batch. Lightning's resume restores the step count but
restarts a plain sampler from the beginning of its epoch; this sampler starts at ``start_step`` instead.
``StepDataLoader`` tells Lightning so (it is "stateful"): its checkpointed state is the order's identity, checked on
resume; the position is the step the checkpoint restores, not part of that state.
The test of record is tests/test_pipeline.py: a training killed mid-way resumes to bit-identical weights.
"""
from __future__ import annotations

from typing import Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler


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

    def __iter__(self) -> Iterator[list[int]]:
        permutation, current_pass = None, -1
        for step in range(self.start_step, self.total_steps):
            pass_index, position = divmod(step, self.steps_per_pass)
            if pass_index != current_pass:
                permutation, current_pass = self._permutation(pass_index), pass_index
            start = position * self.global_batch_size
            yield permutation[start:start + self.global_batch_size][self.rank::self.world_size].tolist()

    def __len__(self) -> int:
        """The whole run is one epoch for Lightning. A resumed Lightning restores its batch index within that epoch
        (start_step), so the length stays total_steps: it then ends the epoch exactly when the iterator does."""
        return self.total_steps

    def order(self) -> dict:
        """What fixes the global data order (not the rank split, not the position)."""
        return {"num_items": self.num_items, "global_batch_size": self.global_batch_size, "seed": self.seed}


class StepDataLoader(DataLoader):
    """A DataLoader over a ``StepBatchSampler`` that Lightning treats as resumable (it has ``state_dict`` /
    ``load_state_dict``), so a mid-run resume neither warns of an unreliable order nor silently changes it: the
    checkpoint carries the order's identity, and a resume under another one is refused."""

    def state_dict(self) -> dict:
        return {"order": self.batch_sampler.order()}

    def load_state_dict(self, state: dict) -> None:
        saved, now = state.get("order", {}), self.batch_sampler.order()
        changed = [f"{key} {saved[key]} -> {now[key]}" for key in now if key in saved and saved[key] != now[key]]
        if changed:
            raise ValueError(f"this checkpoint was trained on another data order ({', '.join(changed)}); resuming "
                             f"would not continue its batches. Resume with the data it was trained on, or delete "
                             f"the run's checkpoints to train it afresh")


class StepDataModule(L.LightningDataModule):
    """Wraps a dataset module (``cad.data.build_datamodule``) so that training batches follow ``StepBatchSampler``.

    ``global_batch_size`` is split across the R devices (each loads 1/R of it), so the optimisation does not depend
    on the device count. ``start_step`` is the step a resumed run starts at.
    """

    def __init__(self, inner: L.LightningDataModule, *, global_batch_size: int, total_steps: int, seed: int,
                 start_step: int = 0, pin_memory: bool = False):
        super().__init__()
        self.pin_memory = pin_memory
        self.inner, self.global_batch_size, self.total_steps = inner, global_batch_size, total_steps
        self.seed, self.start_step = seed, start_step

    def prepare_data(self) -> None:
        self.inner.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        self.inner.setup(stage)

    def train_dataloader(self) -> DataLoader:
        self.inner.setup("fit")
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        sampler = StepBatchSampler(len(self.inner.train_set), self.global_batch_size, self.total_steps,
                                   seed=self.seed, rank=rank, world_size=world)
        sampler.start_step = self.start_step
        workers = self.inner.num_workers
        return StepDataLoader(self.inner.train_set, batch_sampler=sampler, num_workers=workers,
                              pin_memory=self.pin_memory, persistent_workers=workers > 0)
