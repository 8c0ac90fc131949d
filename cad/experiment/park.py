"""What an unfinished experiment needs to go on on another machine: ``./reproduce.sh <experiment> --park``.

Weights, checkpoints and samples are not committed (``.gitignore``): a finished run renders from its small files alone.
An experiment spread over machines that do not share a disk (sessions on fresh cloud machines, a laptop and a cluster)
loses its unfinished runs' progress unless those files travel too. ``--park`` lists, one path per line, the fewest files
that let a later ``./reproduce.sh <experiment>`` go on where this one stopped:

- a run whose samples are drawn but not evaluated: ``samples.npz``;
- a trained run with sweep values left to sample: its EMA weights (``model_ema.pt`` or the step's snapshot), and the
  batches a killed sample stage drew (``batches/``, cad.tasks.drawn_batches);
- a run still training: its newest readable checkpoint (weights, optimiser, EMA and step; the data order and the
  randomness are functions of (seed, step), so it goes on as if never stopped);
- while any run is unfinished, the cache files of the scale that its task cannot remake the same elsewhere
  (``PARKED_CACHES``): the class task's noisy labels and the noise classifier's logits they were drawn from (a noise
  classifier retrained on another CPU calibrates a slightly different temperature, so a run resumed there, or a
  sibling run started there, would train on other labels: 3.87 here against 3.93 and 3.84 on two earlier machines)
  and its evaluation classifier (so that every point of an experiment is measured by one network);
  the map task's base model and the text task's contrastive models (hours on a CPU), finished or as their loop
  snapshots (``*.partial.pt``).

Typical use: ``git add -f $(./reproduce.sh guidance_loss --park)``, commit; once the experiment has finished,
``--park`` lists nothing of it and the parked files can be dropped (``git rm --cached``).
"""
from __future__ import annotations

from pathlib import Path

from cad.experiment.checkpoints import latest_good_checkpoint
from cad.experiment.runs import RunDirs, is_done
from cad.paths import cache_dir

# Per task, the cache files (globs under cache_dir(), ``{scale}`` the run's) that another machine would not remake the
# same, or only in hours; the rest of the cache rebuilds in minutes to the same effect.
PARKED_CACHES = {
    "class": ("noisy_labels/*/*-{scale}/logits.npy", "noisy_labels/*/*-{scale}/*/*/labels.npz",
              "noisy_labels/*/*-{scale}/*/*/stats.json",  # the labels, and the logits they are drawn from
              "classifiers/*-eval-*-{scale}.pt", "classifiers/*-eval-*-{scale}.json"),  # what accuracy is measured by
    # finished (the weights and the metadata the cache checks them against: weights alone are retrained), or the loop's
    # snapshot
    "text": ("contrastive/*-{scale}.pt", "contrastive/*-{scale}.json", "contrastive/*-{scale}.partial.pt"),
    "map": ("map_base/*-{scale}.pt", "map_base/*-{scale}.json", "map_base/*-{scale}.partial.pt"),
}


def run_files(dirs: RunDirs, weights: Path, until: int) -> list[Path]:
    """The files one planned run (``dirs``) needs to go on: nothing once evaluated; its samples when they are drawn;
    else its EMA weights ``weights`` (and the batches drawn so far) when trained, else the newest readable checkpoint
    at or before step ``until``."""
    if is_done(dirs.evaluate, "evaluate"):
        return []
    samples = dirs.sample / "samples.npz"
    if is_done(dirs.sample, "sample") and samples.is_file():
        return [samples]
    if weights.is_file():
        drawn = dirs.sample / "batches"
        return [weights] + (sorted(drawn.iterdir()) if drawn.is_dir() else [])
    newest = latest_good_checkpoint(dirs.train / "checkpoints", max_step=until)
    return [newest[0]] if newest else []


def cache_files(task: str, scale: str, root: Path | None = None) -> list[Path]:
    """The task's ``PARKED_CACHES`` at ``scale`` that exist under ``root`` (default ``cache_dir()``)."""
    root = root or cache_dir()
    return sorted({p for pattern in PARKED_CACHES[task] for p in root.glob(pattern.format(scale=scale))})


def park_list(task: str, scale: str, runs: list[tuple[RunDirs, Path, int]],
              cache_root: Path | None = None) -> list[Path]:
    """The files of every unfinished run in ``runs`` ((dirs, EMA weights path, step the sampling reads at)), each
    once, in order (the runs of a sweep share one training), then, while any run is unfinished, the task's caches."""
    files: list[Path] = []
    for dirs, weights, until in runs:
        files += [p for p in run_files(dirs, weights, until) if p not in files]
    unfinished = any(not is_done(dirs.evaluate, "evaluate") for dirs, _, _ in runs)
    return files + (cache_files(task, scale, cache_root) if unfinished else [])
