"""Find the newest checkpoint that loads: a run killed while writing one resumes from the one before."""
from __future__ import annotations

import re
from pathlib import Path

import torch

_STEP = re.compile(r"step=(\d+)")


def checkpoint_step(path: Path) -> int:
    match = _STEP.search(path.name)
    return int(match.group(1)) if match else -1


def latest_good_checkpoint(directory: Path, max_step: int | None = None) -> tuple[Path, int] | None:
    """(path, global step) of the newest checkpoint that torch can read (at or before ``max_step`` when given), or
    None. Unreadable ones (a file truncated by a killed run) are reported and skipped."""
    paths = sorted(directory.glob("*.ckpt"), key=checkpoint_step, reverse=True)
    for path in (p for p in paths if max_step is None or checkpoint_step(p) <= max_step):
        try:
            step = torch.load(path, map_location="cpu", weights_only=False, mmap=True)["global_step"]
        except Exception as err:
            print(f"[train] skipping unreadable checkpoint {path.name}: {type(err).__name__}")
            continue
        return path, int(step)
    return None
