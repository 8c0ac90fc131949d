"""``./reproduce.sh <experiment> --status``: where each planned run stands, read from its files alone (done markers and
checkpoints; nothing runs, nothing is written). For experiments spread over sessions or machines: the training step
of the newest checkpoint, the wall time so far and the time left at that run's own pace, and per sweep value whether
it is sampled and evaluated.

The time left is an estimate from the run's own steps on the machines it ran on so far (another CPU or a GPU changes
it); it is left out where the checkpoint did not record the time from step 0 (written before ``_WallClock`` existed).
"""
from __future__ import annotations

from pathlib import Path

import torch

from cad.experiment.checkpoints import latest_good_checkpoint
from cad.experiment.runs import RunDirs, is_done, read_done, read_metrics, run_dirs, run_name, wall_from_step
from cad.experiment.stages import ema_weights, train_until


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min"


def _newest_checkpoint(directory: Path, until: int) -> tuple[int, float | None] | None:
    """(step, wall seconds from step 0 or None) of the newest readable checkpoint at or before ``until``."""
    found = latest_good_checkpoint(directory, max_step=until)
    if found is None:
        return None
    path, step = found
    saved = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    return step, saved.get("callbacks", {}).get("_WallClock", {}).get("wall_s")


def train_status(dirs: RunDirs, cfg, until: int | None = None) -> str:
    """One line: done (steps, wall, machine), or the newest checkpoint's step toward ``until`` (the furthest step the
    experiment needs from this run: a learning curve's last point, else the end) with the time so far and left."""
    total = cfg.train.total_steps
    until = train_until(cfg) if until is None else until
    if is_done(dirs.train, "train"):
        marker = read_done(dirs.train, "train")
        counted = wall_from_step(marker)
        wall = _minutes(marker["wall_s"]) + (f" from step {counted}" if counted else "") if "wall_s" in marker else ""
        line = f"done, {marker.get('steps', total)} steps" + (f", {wall}" if wall else "") + \
            (f" on {marker['machine']}" if "machine" in marker else "")
        if until == total and not ema_weights(dirs, total, total).is_file():  # committed markers travel without it
            line += "; its weights are not here: a stage that needs them trains it again"
        return line
    if until < total and ema_weights(dirs, until, total).is_file():
        return f"done to step {until}, the furthest this experiment needs (the run's schedule is {total} steps)"
    newest = _newest_checkpoint(dirs.train / "checkpoints", until)
    if newest is None:
        return (f"started, no checkpoint yet (one every {cfg.train.checkpoint_every} steps)"
                if (dirs.train / "config.yaml").is_file() else "not started")
    step, wall = newest
    line = f"step {step} of {until} (newest checkpoint)"
    if wall is not None and step > 0:
        line += f", {_minutes(wall)} so far, ~{_minutes(wall / step * (until - step))} left at its pace"
    return line


def _done(directory: Path, stage: str) -> str:
    return "done" if is_done(directory, stage) else "not yet"


def _value_line(run, dirs: RunDirs) -> str:
    """Sampled / evaluated (with the FID) for one sweep value; a learning-curve point also says if its snapshot is."""
    metrics = read_metrics(dirs.evaluate / "metrics.json") if is_done(dirs.evaluate, "evaluate") else {}
    fid = f" (FID {metrics['fid']:.2f})" if isinstance(metrics.get("fid"), (int, float)) else ""
    until, total = train_until(run.cfg), run.cfg.train.total_steps
    snapshot = "" if until == total else \
        f"weights at step {until} {'here' if ema_weights(dirs, until, total).is_file() else 'not yet'}, "
    value = "" if run.value is None else f"value {run.value:g}: " if isinstance(run.value, float) else \
        f"value {run.value}: "  # a number, or a name (fig6a's coherence maps)
    return f"  {value}{snapshot}sample {_sample_state(run.cfg, dirs)}, evaluate {_done(dirs.evaluate, 'evaluate')}{fid}"


def _sample_state(cfg, dirs: RunDirs) -> str:
    """Done, not yet, or how many of its batches a killed sample stage drew (cad.tasks.drawn_batches; in one process:
    another world size draws other batches)."""
    drawn = len(list((dirs.sample / "batches").glob("batch-*.pt")))
    if is_done(dirs.sample, "sample") or not drawn:
        return _done(dirs.sample, "sample")
    return f"{drawn} of {-(-cfg.sample.num_samples // cfg.sample.batch_size)} batches drawn"


def status_lines(experiment: str, planned: list, raw_root: Path) -> list[str]:
    """The report, a block per training run: its train line, then a sample / evaluate line per sweep value."""
    groups: dict[Path, list[tuple]] = {}  # training folder -> its (planned run, its folders), each looked up once
    for run in planned:
        dirs = run_dirs(run.cfg, experiment, raw_root)
        groups.setdefault(dirs.train, []).append((run, dirs))
    lines, left = [], 0
    for train_dir, runs in groups.items():
        first, dirs = runs[0]
        label = f"{first.dataset} | {first.method}" + (f" ({first.variant})" if first.variant else "")
        lines += [f"{label} | {train_dir.name}",
                  f"  train: {train_status(dirs, first.cfg, max(train_until(r.cfg) for r, _ in runs))}"]
        if first.source is not None:
            lines.append(f"  starts from {run_name(first.source)} (trained first where it is not): "
                         + train_status(run_dirs(first.source, experiment, raw_root), first.source))
        for run, each in runs:
            lines.append(_value_line(run, each))
            left += not is_done(each.evaluate, "evaluate")
    header = f"[{experiment}] {len(groups)} training run{'s' * (len(groups) != 1)}, {left} of {len(planned)} " \
             f"evaluation{'s' * (len(planned) != 1)} to go"
    return [header] + lines
