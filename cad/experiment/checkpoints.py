"""Find the newest checkpoint that loads: a run killed while writing one resumes from the one before."""
from __future__ import annotations

import re
from pathlib import Path

import torch

_STEP = re.compile(r"step=(\d+)")


def checkpoint_step(path: Path) -> int:
    match = _STEP.search(path.name)
    return int(match.group(1)) if match else -1


def latest_good_checkpoint(directory: Path) -> Path | None:
    """The checkpoint with the highest step that torch can read, or None. Unreadable ones are reported and skipped."""
    for path in sorted(directory.glob("*.ckpt"), key=checkpoint_step, reverse=True):
        try:
            torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # a truncated file from a killed run
            print(f"[train] skipping unreadable checkpoint {path.name}: {type(err).__name__}")
            continue
        return path
    return None
