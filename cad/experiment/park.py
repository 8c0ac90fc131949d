"""What an unfinished experiment needs to go on on another machine: ``./reproduce.sh <experiment> --park``.

Weights, checkpoints and samples are not committed (``.gitignore``): a finished run renders from its small files alone.
An experiment spread over machines that do not share a disk (sessions on fresh cloud machines, a laptop and a cluster)
loses its unfinished runs' progress unless those files travel too. ``--park`` lists, one path per line, the fewest files
that let a later ``./reproduce.sh <experiment>`` go on where this one stopped:

- a run whose samples are drawn but not evaluated: ``samples.npz``;
- a trained run with sweep values left to sample: its EMA weights (``model_ema.pt`` or the step's snapshot);
- a run still training: its newest readable checkpoint (weights, optimiser, EMA and step; the data order and the
  randomness are functions of (seed, step), so it goes on as if never stopped);
- the task's long one-off trainings under ``cache_dir()`` (``LONG_CACHES``: the map task's base model, the text
  task's contrastive models; hours on a CPU), finished or as their loop snapshots (``*.partial.pt``).

Typical use: ``git add -f $(./reproduce.sh guidance_loss --park)``, commit; once the experiment has finished,
``--park`` lists nothing of it and the parked files can be dropped (``git rm --cached``).
"""
from __future__ import annotations

from pathlib import Path

from cad.experiment.checkpoints import latest_good_checkpoint
from cad.experiment.runs import RunDirs, is_done
from cad.paths import cache_dir

# The cache folders of the trainings that take hours at the cpu scale, per task (the rest of the cache: minutes).
LONG_CACHES = {"class": (), "text": ("contrastive",), "map": ("map_base",)}


def run_files(dirs: RunDirs, weights: Path, until: int) -> list[Path]:
    """The files one planned run (``dirs``) needs to go on: nothing once evaluated; its samples when they are drawn;
    else its EMA weights ``weights`` when trained, else the newest readable checkpoint at or before step ``until``."""
    if is_done(dirs.evaluate, "evaluate"):
        return []
    samples = dirs.sample / "samples.npz"
    if is_done(dirs.sample, "sample") and samples.is_file():
        return [samples]
    if weights.is_file():
        return [weights]
    newest = latest_good_checkpoint(dirs.train / "checkpoints", max_step=until)
    return [newest[0]] if newest else []


def long_cache_files(task: str, root: Path | None = None) -> list[Path]:
    """The task's long one-off trainings in the cache: finished weights and loop snapshots (both ``*.pt``)."""
    root = root or cache_dir()
    return sorted(p for folder in LONG_CACHES[task] for p in (root / folder).glob("*.pt"))


def park_list(task: str, runs: list[tuple[RunDirs, Path, int]], cache_root: Path | None = None) -> list[Path]:
    """The files of every unfinished run in ``runs`` ((dirs, EMA weights path, step the sampling reads at)), each
    once, in order (the runs of a sweep share one training), then the task's long caches."""
    files: list[Path] = []
    for dirs, weights, until in runs:
        files += [p for p in run_files(dirs, weights, until) if p not in files]
    return files + long_cache_files(task, cache_root)
