"""Figure 6(a) as the paper draws it: the same requested maps sampled with each kind of coherence map. On top the
requested maps and their real canvases; below, per kind, a row of coherence maps (black: 0, white: 1) above the row of
samples drawn with them."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.samples import load_samples
from cad.io import atomic_path


def coherence_sweep_rows(maps_shown: np.ndarray, real: np.ndarray,
                         kinds: list[tuple[str, np.ndarray, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    """(label, (N, H, W) uint8) rows: the maps, the real canvases, then per (kind, coherence maps in [0, 1], samples)
    its coherence row and its samples row."""
    rows = [("requested map", maps_shown), ("real canvas", real)]
    for name, coherence, samples in kinds:
        rows += [(f"{name}: coherence", np.round(np.clip(coherence, 0, 1) * 255).astype(np.uint8)),
                 (f"{name}: samples", samples)]
    return rows


def save_coherence_sweep_grid(path: Path, rows: list[tuple[str, np.ndarray]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(rows[0][1])
    fig, axes = plt.subplots(len(rows), n, figsize=(1.6 * n + 1.4, 0.9 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(n):
            axes[r][c].imshow(images[c], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            axes[r][c].set_xticks([])
            axes[r][c].set_yticks([])
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_coherence_sweep_grid(path: Path, runs: list, maps_shown: np.ndarray, real: np.ndarray,
                               coherence_fn: Callable) -> None:
    """The grid of ``runs`` (a sweep's runs, one per kind of coherence map): the first N samples of each run, which
    ask for the N maps shown (sample i asks for test canvas i's map), under ``coherence_fn(run cfg)``, its maps."""
    n, kinds = len(maps_shown), []
    for r in runs:
        samples = load_samples(r.dirs.sample / "samples.npz")
        if samples["requests"][:n].tolist() != list(range(n)):
            raise ValueError(f"{r.dirs.sample}: the first samples ask for canvases {samples['requests'][:n].tolist()}, "
                             f"not 0..{n - 1}")
        kinds.append((str(r.sweep_value), coherence_fn(r.cfg), samples["images"][:n, ..., 0]))
    save_coherence_sweep_grid(path, coherence_sweep_rows(maps_shown, real, kinds))
