"""The wall time a finished run's stages took, read back from their done markers: an ablation's ``wall (min)`` column
and every other table's ``WALL_NOTE`` (training + sampling + evaluation minutes per run), with the machines they ran
on.

A stage that went on from an earlier session's work says so: a training resumed from a checkpoint that recorded no
time counts from its step (``from step k``), a sampling that found batches drawn before counts the rest only
(``k batches before``)."""
from __future__ import annotations

from collections import Counter

from cad.experiment.runs import is_done, read_done, wall_from_step

WALL_NOTE = "wall minutes, training + sampling + evaluation"  # a table note's name


def stage_markers(r) -> list[dict | None]:
    """A run's three done markers (None where a stage is not done)."""
    stages = ((r.dirs.train, "train"), (r.dirs.sample, "sample"), (r.dirs.evaluate, "evaluate"))
    return [read_done(directory, stage) if is_done(directory, stage) else None for directory, stage in stages]


def wall_seconds(r) -> float | None:
    """Training + sampling + evaluation wall time of a run, from its done markers (None where one is missing: a
    training finished by another experiment under the same hash is counted all the same)."""
    walls = [None if marker is None else marker.get("wall_s") for marker in stage_markers(r)]
    return None if None in walls else float(sum(walls))


def train_wall_from_step(r) -> int:
    return wall_from_step(read_done(r.dirs.train, "train") if is_done(r.dirs.train, "train") else {})


def wall_machines(results: list) -> str:
    """What the wall times were measured on: each machine its done markers name, with its count of stages (markers
    written before they named it: "not recorded")."""
    counts = Counter(marker.get("machine", "not recorded") for r in results for marker in stage_markers(r) if marker)
    return "; ".join(f"{name} ({n} stage{'s' * (n != 1)})" for name, n in sorted(counts.items())) or "-"


def stages_minutes(r) -> str:
    """``train + sample + evaluate`` minutes of one run ("?" for a stage whose marker has no time)."""
    train, sample, evaluate = stage_markers(r)
    cells = []
    for marker in (train, sample, evaluate):
        wall = None if marker is None else marker.get("wall_s")
        cells.append("?" if wall is None else f"{wall / 60:.0f}")
    if train and train.get("wall_s") is not None and wall_from_step(train):
        cells[0] += f" (from step {wall_from_step(train)})"
    if sample and sample.get("batches_drawn_before"):
        before = int(sample["batches_drawn_before"])
        cells[1] += f" ({before} batch{'es' * (before != 1)} before)"
    return " + ".join(cells)


def wall_note(results: list) -> str:
    """One table block's wall times: each run's ``train + sample + evaluate`` minutes, by its row's label."""
    return ", ".join(f"{r.label} {stages_minutes(r)}" for r in results)
