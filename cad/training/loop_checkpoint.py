"""Resumable plain training loops: the one-off models the suite trains outside Lightning (the map task's base
pre-training, 2.5 h on one core of an Intel Xeon with AVX512-BF16; the text task's contrastive models, ~1 h there)
snapshot their progress so that a killed session goes on from the last snapshot instead of step 0.

A snapshot holds the model, the optimiser, the step, the loop's random generators (numpy ``Generator`` and torch
``Generator`` states, and torch's global state for dropout) and what the loop has logged, written atomically to
``<weights>.partial.pt`` beside the cache file the loop is training for, every ``every`` steps.
``load_or_train`` (cad.data.classifier_training) removes it once the finished weights are cached. A snapshot made
with other settings (``meta``) is ignored and the loop starts over. Resumed, the loop ends on the uninterrupted
loop's weights bit for bit (tests/test_loop_checkpoint.py). Snapshots carry the loop's wall time per machine
(``clock``, cad.training.wall_clock), so the cache entry's ``train_seconds`` covers every segment of a resumed loop.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cad.io import atomic_path
from cad.training.wall_clock import WallClock

log = logging.getLogger(__name__)


def partial_path(weights_path: str | Path) -> Path:
    """Where the loop training the cache file ``weights_path`` keeps its snapshot."""
    weights_path = Path(weights_path)
    return weights_path.with_name(weights_path.stem + ".partial.pt")


class LoopCheckpoint:
    """Snapshots of one loop at ``path`` every ``every`` steps. Besides the model and optimiser, ``resume`` and
    ``maybe_save`` take the loop's ``numpy`` generator, its ``torch_gen`` and ``logged`` (a list it appends to)."""

    def __init__(self, path: Path, meta: dict, every: int):
        if every < 1:
            raise ValueError(f"every must be >= 1 step, got {every}")
        self.path, self.meta, self.every = path, meta, every
        self.clock, self.resumed_from = WallClock(), 0  # made just before the loop: its segment is the loop's

    def resume(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, numpy: np.random.Generator,
               torch_gen: torch.Generator | None = None, logged: list | None = None) -> int:
        """Restore the snapshot into the given objects and return its step (0 when there is none to use)."""
        if not self.path.is_file():
            return 0
        try:
            snap = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001 -- unreadable: start over rather than fail
            log.warning("snapshot %s is unreadable (%s); starting over", self.path, err)
            return 0
        if snap.get("meta") != self.meta:
            log.warning("snapshot %s was made with other settings; starting over", self.path)
            return 0
        model.load_state_dict(snap["model"])
        optimizer.load_state_dict(snap["optimizer"])
        numpy.bit_generator.state = snap["numpy"]
        if torch_gen is not None:
            torch_gen.set_state(snap["torch"])
        torch.set_rng_state(snap["torch_global"])
        if logged is not None:
            logged[:] = snap["logged"]
        self.clock.restore(snap.get("clock"))  # a snapshot without one: time before it not recorded
        self.resumed_from = int(snap["step"])
        print(f"[resume] {self.path.name}: from step {self.resumed_from}")
        return self.resumed_from

    def timing(self) -> dict:
        """A cache entry's time fields: ``train_seconds`` (every segment; from ``train_seconds_from_step`` where an
        older snapshot did not record its time) and ``train_machines`` (seconds per machine)."""
        segment = self.clock.segment()  # read once: the total and the per-machine seconds agree
        total = self.clock.total(segment)
        fields = {"train_seconds": round(segment if total is None else total, 1),
                  "train_machines": {name: round(s, 1) for name, s in self.clock.machines(segment).items()}}
        if total is None:
            fields["train_seconds_from_step"] = self.resumed_from
        return fields

    def maybe_save(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                   numpy: np.random.Generator, torch_gen: torch.Generator | None = None,
                   logged: list | None = None) -> None:
        """After ``step`` steps are done: a snapshot when ``step`` is a multiple of ``every``."""
        if step % self.every:
            return
        snap = {"meta": self.meta, "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "numpy": numpy.bit_generator.state, "torch": None if torch_gen is None else torch_gen.get_state(),
                "torch_global": torch.get_rng_state(), "logged": list(logged or []), "clock": self.clock.state()}
        with atomic_path(self.path) as tmp:
            torch.save(snap, tmp)
