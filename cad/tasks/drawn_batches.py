"""The batches a sampling stage has drawn, kept on disk until its samples file is written, so that a stage killed
mid-way (a session's end, a pre-empted job) goes on from the batches it has instead of from the first (its cpu-scale
1000 samples take up to an hour on one core).

A batch is filed under a hash of its seeds and requests and of ``tag`` (the sampling stage passes its weights' hash):
a batch of other weights, or of another split of the samples into batches (another world size, another batch size),
is never taken for this one, and ``begin`` drops the batches of other weights. Since the batches are the uninterrupted
run's, a resumed stage writes the same samples bit for bit (tests/test_drawn_batches.py). Each file is written
atomically. The batches are kept as drawn (float32): four times the samples file's size while the stage runs (about
8 GB for 10,000 samples at 256 px).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from cad.io import atomic_path


class DrawnBatches:
    """Batches of sampler outputs (float, on the CPU) under ``folder``, keyed by (``tag``, seeds, requests)."""

    def __init__(self, folder: Path, tag: str = ""):
        self.folder, self.tag = Path(folder), tag

    def path(self, seeds: Sequence[int], requests: Sequence) -> Path:
        key = json.dumps([self.tag, [int(s) for s in seeds], list(requests)], default=str)
        return self.folder / f"batch-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"

    def load(self, seeds: Sequence[int], requests: Sequence) -> Tensor | None:
        """The batch drawn earlier for these seeds and requests, or None (also for an unreadable file)."""
        path = self.path(seeds, requests)
        if not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 -- a damaged file: draw the batch again
            return None

    def save(self, seeds: Sequence[int], requests: Sequence, images: Tensor) -> None:
        with atomic_path(self.path(seeds, requests)) as tmp:
            torch.save(images.detach().cpu(), tmp)

    def begin(self) -> int:
        """Drop the folder's batches if another ``tag`` drew them (a retrained model); the number of batches kept."""
        tag_file = self.folder / "tag.txt"
        if self.folder.is_dir() and (not tag_file.is_file() or tag_file.read_text() != self.tag):
            self.clear()
        self.folder.mkdir(parents=True, exist_ok=True)
        tag_file.write_text(self.tag)
        return len(self.files())

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("batch-*.pt")) if self.folder.is_dir() else []

    def clear(self) -> None:
        """Remove the folder: once the samples file is written, its batches are not needed."""
        shutil.rmtree(self.folder, ignore_errors=True)
