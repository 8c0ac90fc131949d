"""An ablation's table (an experiment with ``variants``): a row per (dataset, method, variant, swept value) with its
metrics, its FID change against the first variant in the experiment's order with a run at the same dataset, method,
value and image side (an FID is measured against real images at the run's own side, so two sides are never compared),
the wall time its stages took (from their done markers), and what the seed paper reports for that piece (``context``
in the experiment's file) beside it: context, never a target.

    results/tables/<stem>.md, <stem>.csv      (the figure of the same runs: results/figures/<stem>.{png,csv})
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from cad.data.registry import pretty_name
from cad.experiment.runs import RUN_PREFIX, run_name
from cad.experiment.wall_times import train_wall_from_step, wall_machines, wall_seconds
from cad.io import atomic_write_text
from cad.tasks.registry import get_task

# (metrics.json key, column): the class task's; a column no row has is left out (the text task has no accuracy).
METRICS = (("fid", "FID"), ("accuracy", "Acc"), ("precision", "P"), ("recall", "R"), ("density", "D"),
           ("coverage", "C"), ("clip_score", "CLIPScore"))


def image_side(r) -> int:
    """The width, in pixels, of the images a run generates and is measured against (its task's image shape: the class
    task's ``data.resolution`` where set, else the dataset's own)."""
    return int(get_task(r.cfg.task).image_shape(r.cfg)[-1])


def _sorted(experiment, results: list) -> list:
    order = list(experiment.variants or {})
    return sorted(results, key=lambda r: (r.dataset, r.method, order.index(r.variant) if r.variant in order else
                                          len(order), r.sweep_value if r.sweep_value is not None else 0))


def references(experiment, results: list) -> dict[int, str]:
    """Per image side, the variant each row's FID change is measured against: the first variant in the experiment's
    order that has a finished run at that side (the experiment's first variant at the dataset's own side, once it has
    one). The table names it, so a reference that a later run will replace is never hidden."""
    return _first_per_side((image_side(r), r.variant) for r in _sorted(experiment, results))


def _first_per_side(sides_and_variants) -> dict[int, str]:
    found: dict[int, str] = {}
    for side, variant in sides_and_variants:
        found.setdefault(side, variant)
    return found


def ablation_rows(experiment, results: list) -> list[dict]:
    """The rows in the experiment's variant order, each with ``fid_change`` (%, against the reference variant's run
    (``references``) at the same dataset, method, swept value and image side; None where that run is not finished)
    and ``wall_s``."""
    results = _sorted(experiment, results)
    sides = [image_side(r) for r in results]  # each run's task is asked once
    per_side = _first_per_side((side, r.variant) for side, r in zip(sides, results))
    reference = {(r.dataset, r.method, r.sweep_value, side): r.metrics.get("fid") for side, r in zip(sides, results)
                 if r.variant == per_side[side]}
    rows = []
    for side, r in zip(sides, results):
        base, fid = reference.get((r.dataset, r.method, r.sweep_value, side)), r.metrics.get("fid")
        change = None if base in (None, 0) or fid is None else 100.0 * (fid - base) / base
        rows.append({"dataset": pretty_name(r.dataset), "method": r.method, "variant": r.variant,
                     "value": r.sweep_value, "side": side, "fid_change": change, "wall_s": wall_seconds(r),
                     "wall_from_step": train_wall_from_step(r),
                     "context": (experiment.context or {}).get(r.variant, ""),
                     **{key: r.metrics.get(key) for key, _ in METRICS}})
    return rows


def _cell(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _wall_cell(r: dict) -> str:
    if r["wall_s"] is None:
        return "-"
    return f"{r['wall_s'] / 60:.0f}" + (f" (from step {r['wall_from_step']})" if r["wall_from_step"] else "")


def reference_header(per_side: dict[int, str]) -> tuple[str, dict[str, str]]:
    """The FID change column's header, and the note that names each side's reference where there are several."""
    if len(per_side) == 1:
        return f"FID vs {next(iter(per_side.values()))}", {}
    named = "; ".join(f"{side} px: {variant}" for side, variant in sorted(per_side.items()))
    return "FID vs reference", {"FID vs reference": f"per image side, {named} (the first variant in the ablation's "
                                "order with a run at that side: an FID is measured against real images at the run's "
                                "own side, so rows of two sides are never compared)"}


def render_markdown(experiment, rows: list[dict], notes: dict[str, str]) -> str:
    """The table from ``ablation_rows``' rows; each side's reference is the first row's variant at that side (the
    rows come in the experiment's order, as ``references`` reads it)."""
    per_side = _first_per_side((r["side"], r["variant"]) for r in rows)
    metrics = [(k, label) for k, label in METRICS if any(isinstance(r[k], (int, float)) for r in rows)]
    key = experiment.sweep_key.split(".")[-1] if experiment.sweep_key else "value"
    change_header, change_note = reference_header(per_side)
    notes = {**change_note, **notes}
    head = ["dataset", "method", "variant", key] + [label for _, label in metrics] + [
        change_header, "wall (min)", "seed paper (context, not a target)"]
    lines = [f"## {experiment.name}: the ablation, a row per run", "", "| " + " | ".join(head) + " |",
             "|" + "|".join("---" if i < 4 or i == len(head) - 1 else "---:" for i in range(len(head))) + "|"]
    seen = set()
    for r in rows:
        block = (r["dataset"], r["method"], r["variant"])  # the seed paper's line once per variant's block of rows
        context = "" if block in seen else r["context"]
        seen.add(block)
        cells = [r["dataset"], r["method"], r["variant"], _cell(r["value"], 1)]
        cells += [_cell(r[k], 2 if k in ("fid", "clip_score") else 3) for k, _ in metrics]
        cells += ["-" if r["fid_change"] is None else f"{r['fid_change']:+.1f}%",
                  _wall_cell(r), context]
        lines.append("| " + " | ".join(cells) + " |")
    if any(r["wall_s"] is not None and r["wall_from_step"] for r in rows):
        notes = {**notes, "wall (min) from step k": "the training was resumed at step k from a checkpoint that did not "
                 "record the time before it; the minutes count from there"}
    lines += [""] + [f"- {k}: {v}" for k, v in notes.items()]
    return "\n".join(lines) + "\n"


def training_steps_note(results: list) -> str | None:
    """Each variant's training steps, where they differ between the rows or a row continues another run's weights
    (``train.init_from``): a row is read against its own budget, and its wall time counts its own training only."""
    by_name = {run_name(r.cfg): r for r in results}
    budgets: dict[str, list[str]] = {}
    for r in results:
        steps, init = r.cfg.train.total_steps, r.cfg.train.get("init_from")
        if init is not None:
            source = by_name.get(str(init).removeprefix(RUN_PREFIX))
            steps = f"{steps} after {source.cfg.train.total_steps} of {source.variant}" if source is not None \
                else f"{steps} after those of the run it starts from"
        variants = budgets.setdefault(str(steps), [])
        if r.variant not in variants:
            variants.append(r.variant)
    continued = any(r.cfg.train.get("init_from") for r in results)
    if len(budgets) == 1 and not continued:
        return None
    return "; ".join(f"{steps}: {', '.join(map(str, variants))}" for steps, variants in budgets.items()) + \
        (" (a row that continues another run's weights counts its own steps and wall time only)" if continued else "")


def write_ablation(experiment, results: list, notes: dict[str, str], directory: Path, stem: str) -> str:
    """Write ``<stem>.md`` and ``<stem>.csv`` under ``directory``; returns the Markdown."""
    rows = ablation_rows(experiment, results)
    steps = training_steps_note(results)
    notes = {**notes, **({"training steps per variant": steps} if steps else {})}
    text = render_markdown(experiment, rows, {**notes, "wall time measured on": wall_machines(results)})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(directory / f"{stem}.md", text)
    atomic_write_text(directory / f"{stem}.csv", out.getvalue())
    return text
