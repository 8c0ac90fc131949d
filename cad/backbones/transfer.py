"""Resolution transfer (the multi-level conditioning paper's pre-training strategy; issue 14): a denoiser trained at
one resolution continues at another. The U-Net is convolutional and loads as it is; RIN's learned data-token positional
embedding (``data_pos``, one row per patch) is resized as the (rows, cols, D) grid it is, by bicubic interpolation
(ViT / DeiT's practice). Pair it with a schedule shift (cad.diffusion.schedules.shift_schedule)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

POSITIONAL = "data_pos"


def interpolate_grid(pos: Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> Tensor:
    """(old_rows * old_cols, D) -> (new_rows * new_cols, D), bicubic over the 2-D patch grid (align_corners=False)."""
    if pos.shape[0] != old_grid[0] * old_grid[1]:
        raise ValueError(f"positional embedding has {pos.shape[0]} rows, not the {old_grid} grid's")
    grid = pos.T.reshape(1, pos.shape[1], *old_grid).float()
    resized = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False)
    return resized.reshape(pos.shape[1], -1).T.to(pos.dtype)


def load_at_resolution(model: nn.Module, state: dict[str, Tensor], old_grid: tuple[int, int] | None = None) -> None:
    """Load ``state`` (weights of the same architecture at another resolution) into ``model``: every tensor as is,
    RIN's ``data_pos`` resized to the model's patch grid (``old_grid`` defaults to a square one)."""
    state = dict(state)
    if POSITIONAL in state and hasattr(model, POSITIONAL):
        old, new = state[POSITIONAL], getattr(model, POSITIONAL)
        if old.shape != new.shape:
            side = int(round(old.shape[0] ** 0.5))
            old_grid = old_grid or (side, side)
            new_grid = model.grid
            state[POSITIONAL] = interpolate_grid(old, old_grid, new_grid)
    model.load_state_dict(state)
