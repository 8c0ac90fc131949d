"""Turn finished runs into the paper's table (an experiment without a sweep, rendered by its task) or figure (a sweep,
plotted as its experiment file's ``figure`` says): files under results/tables or results/figures, written
atomically, and the text printed at the end of the command."""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import DictConfig

from cad.data.registry import pretty_name
from cad.diffusion.guidance_loss import GuidanceLoss
from cad.experiment.ablation import write_ablation
from cad.experiment.config import EXECUTION_KEYS, Experiment, scale_value
from cad.experiment.runs import VARIANT_PREFIX, RunDirs
from cad.experiment.wall_times import WALL_NOTE, wall_machines, wall_note
from cad.io import atomic_path, atomic_write_text
from cad.tasks.registry import get_task


@dataclass(frozen=True)
class RunResult:
    dataset: str
    method: str
    sweep_value: float | None
    cfg: DictConfig
    dirs: RunDirs
    metrics: dict
    variant: str | None = None  # an ablation's variant (experiment file ``variants``)

    @property
    def label(self) -> str:
        name = get_task(self.cfg.task).method_label(self.method) if self.cfg is not None else pretty_method(self.method)
        return name + (f" ({self.variant})" if self.variant else "")


def _noise_note(train_dirs: list[Path]) -> str | None:
    """The noise line of a dataset, from the ``noise.json`` its noisy-label runs wrote (None: no such run here)."""
    for directory in train_dirs:
        path = directory / "noise.json"
        if path.is_file():
            info = json.loads(path.read_text())
            temperature = info.get("temperature")
            return (f"{info['protocol']}" + (f", temperature {temperature:.3g}" if temperature is not None else "")
                    + f", {info.get('accuracy_label', 'relabelling accuracy')} {info['relabel_accuracy']:.3f}"
                    + (f" ({info['detail']})" if info.get("detail") else ""))
    return None


def _run_notes(r: RunResult, request_note: str, per_row: str | None = None) -> dict[str, str]:
    """The note lines one run supports, from its files: its config (whose identity fields are those of the run that
    made the files: the run was found by their hash) and its metrics' ``meta``; ``per_row``: a key whose value
    differs between the rows (a table of a sweep's best values), left to the table's column."""
    cfg, s, meta = r.cfg, r.cfg.sample, r.metrics.get("meta", {})
    if s.get("null_label"):  # the class task's unconditional model: the requests' labels are not given to it
        request_note = ("the learned null label for every request (the unconditional model; Acc is against labels it "
                        "was not given)")
    notes = {"scale": cfg.scale,
             "precision": f"training {cfg.train.precision}, sampling {s.precision}, features {cfg.evaluate.precision}",
             "samples": (f"{s.num_samples} generated vs {meta.get('num_reference', cfg.evaluate.reference_size)}"
                         f" real test images per row (paper: {get_task(cfg.task).paper_samples})"),
             "sampler": (f"{s.sampler}, {s.steps} steps, eta {s.eta}; guidance scale "
                         + (f"{s.guidance_scale}" if per_row != "sample.guidance_scale" else "per row") + "; "
                         f"coherence {s.coherence:g}" + (f", {request_note}" if request_note else "")),
             "backbone": (f"{cfg.backbone.preset}" + (", label and coherence embeddings mixed by an MLP"
                                                       if cfg.backbone.mix_labels_and_confidence else "")
                          + f", {cfg.train.total_steps} training steps"),
             "features": ", ".join(f"{k}: {v}" for k, v in meta.get("extractors", {}).items())}
    if "clip_score_model" in meta:
        notes["CLIPScore"] = meta["clip_score_model"]
    if "coherence_model" in meta:
        notes["coherence scorer"] = meta["coherence_model"]
    if "classifier" in meta:
        notes["accuracy"] = (f"{meta['classifier']} (test accuracy {meta.get('eval_classifier_test_accuracy', 0):.4f});"
                             " not the network that made the noise")
    return notes


def table_notes(results: list[RunResult], request_note: str = "", per_row: str | None = None,
                walls: bool = True) -> dict[str, str]:
    """Notes per block: a line shared by every dataset's runs is written once, else once per dataset, each from that
    dataset's own runs (its classifier, its noise, its protocol, with ``walls`` each run's stage minutes; an
    ablation's table has them as a column instead)."""
    datasets = list(dict.fromkeys(r.dataset for r in results))
    per_dataset = {d: _run_notes(next(r for r in results if r.dataset == d), request_note, per_row) for d in datasets}
    for d in datasets:
        noise = _noise_note([r.dirs.train for r in results if r.dataset == d])
        if noise is not None:
            per_dataset[d]["noise"] = noise
        if walls:
            per_dataset[d][WALL_NOTE] = wall_note([r for r in results if r.dataset == d])
    notes: dict[str, str] = {}
    order = ["scale", "precision", "noise"]
    keys = dict.fromkeys(order + [k for d in datasets for k in per_dataset[d]])
    for key in (k for k in keys if any(k in per_dataset[d] for d in datasets)):
        values = {d: per_dataset[d][key] for d in datasets if key in per_dataset[d]}
        if len(set(values.values())) == 1 and len(values) == len(datasets) and key != "noise":
            notes[key] = next(iter(values.values()))
        else:
            notes.update({f"{key} ({pretty_name(d)})": v for d, v in values.items()})
    return {**notes, "wall time measured on": wall_machines(results)} if walls else notes


def sweep_csv(results: list[RunResult], key: str) -> str:
    columns = sorted({k for r in results for k, v in r.metrics.items() if isinstance(v, (int, float))})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    variants = any(r.variant for r in results)
    writer.writerow(["dataset", "method"] + (["variant"] if variants else []) + [key] + columns)
    for r in results:
        writer.writerow([r.dataset, r.method] + ([r.variant] if variants else []) + [r.sweep_value]
                        + [r.metrics.get(c, "") for c in columns])
    return out.getvalue()


def plot_sweep(results: list[RunResult], experiment: Experiment, path: Path) -> None:
    """One panel per dataset, as ``experiment.figure`` says: ``x: sweep`` plots the metrics ``y`` (the second on a twin
    axis) against the swept value; ``x: <metric>`` plots ``y[0]`` against that metric, each point annotated with
    ``<annotate>=<swept value>``. With several methods: one panel per dataset and metric, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = experiment.figure or {"x": "sweep", "y": ["fid"]}
    x_key, y_keys = figure["x"], list(figure["y"])
    datasets = sorted({r.dataset for r in results})
    methods = list(dict.fromkeys(r.label for r in results))
    if len(methods) > 1:
        _plot_methods(results, experiment, datasets, methods, path)
        return
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        rows = [r for r in results if r.dataset == dataset]
        values = [r.sweep_value for r in rows]
        if x_key == "sweep":
            colours = ("tab:blue", "tab:red")
            for axis, key, colour, style in zip((ax, ax.twinx() if len(y_keys) > 1 else None), y_keys, colours,
                                                ("o-", "s--")):
                axis.plot(values, [r.metrics.get(key) for r in rows], style, color=colour, label=key)
                axis.set_ylabel(key if key != "fid" else "FID", color=colour)
            ax.set_xlabel(figure.get("x_label", experiment.sweep_key))
        else:
            xs, ys = [r.metrics.get(x_key) for r in rows], [r.metrics.get(y_keys[0]) for r in rows]
            ax.plot(xs, ys, "o-")
            for v, a, f in zip(values, xs, ys):
                ax.annotate(f"{figure.get('annotate', experiment.sweep_key)}={v:g}", (a, f),
                            textcoords="offset points", xytext=(4, 4), fontsize=8)
            ax.set_xlabel(x_key)
            ax.set_ylabel(y_keys[0] if y_keys[0] != "fid" else "FID")
        _title(ax, rows[0].cfg)
    fig.suptitle(f"{experiment.name}: {methods[0]}, {rows[0].cfg.sample.num_samples} samples per point")
    _save(fig, path)


def _plot_methods(results: list[RunResult], experiment: Experiment, datasets: list[str], methods: list[str],
                  path: Path) -> None:
    """A panel per (dataset, metric of ``figure.y``), a line per method (and variant) over the swept value, or, with
    ``x: <metric>``, over that metric, each point annotated with its swept value (Figure 3(c): FID against CLIPScore
    as the guidance scale grows)."""
    import matplotlib.pyplot as plt

    figure = experiment.figure or {"y": ["fid"]}
    y_keys, x_key = list(figure["y"]), figure.get("x", "sweep")
    fig, axes = plt.subplots(len(datasets), len(y_keys), figsize=(max(6.5, 5 * len(y_keys)), 4 * len(datasets)),
                             squeeze=False)
    for row, dataset in zip(axes, datasets):
        for ax, key in zip(row, y_keys):
            for label in methods:
                rows = sorted((r for r in results if r.dataset == dataset and r.label == label),
                              key=lambda r: r.sweep_value)
                xs = [r.sweep_value if x_key == "sweep" else r.metrics.get(x_key) for r in rows]
                ax.plot(xs, [r.metrics.get(key) for r in rows], "o-", label=label)
                if x_key != "sweep":
                    for r, x in zip(rows, xs):
                        ax.annotate(f"{figure.get('annotate', experiment.sweep_key)}={r.sweep_value:g}",
                                    (x, r.metrics.get(key)), textcoords="offset points", xytext=(3, 3), fontsize=7)
            ax.set_xlabel(figure.get("x_label", experiment.sweep_key if x_key == "sweep" else x_key))
            ax.set_ylabel(key if key != "fid" else "FID")
            ax.legend()
            _title(ax, next(r.cfg for r in results if r.dataset == dataset))
    cfg = results[0].cfg
    noise = get_task(cfg.task).noise_label(cfg)
    fig.suptitle(f"{experiment.name}: {', '.join(methods)}\n{noise}; {cfg.backbone.preset}; "
                 f"{cfg.sample.num_samples} samples per point", fontsize=10)
    _save(fig, path)


def _title(ax, cfg: DictConfig) -> None:
    ax.set_title(get_task(cfg.task).dataset_label(cfg), fontsize=10)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def pretty_method(name: str) -> str:
    return {"cad": "CAD", "cfg": "CFG"}.get(name, name.capitalize())


def output_name(experiment: Experiment, results: list[RunResult]) -> str:
    """The file stem of an experiment's outputs: its name, plus each way its runs differ from the paper's protocol and
    the scale's own network or loss (``table5d-authors_entropy``, ``table5d-rin_cpu``, ``table5d-mix``,
    ``table5d-aligned``), so a variant never writes over the committed paper-protocol files (an ablation's own
    ``variants`` are lines of its figure instead)."""
    variants = []
    for r in results:
        cfg = r.cfg
        if cfg.data.noise.protocol != "classifier":
            variants.append(cfg.data.noise.protocol)
        if cfg.backbone.preset != scale_value(cfg.scale, "backbone.preset", cfg.task):
            variants.append(cfg.backbone.preset)
        if cfg.backbone.mix_labels_and_confidence:
            variants.append("mix")
        if experiment.variants is None and GuidanceLoss(**cfg.train.guidance_loss).enabled:
            variants.append("aligned")
        variants.extend(_unnamed_differences(experiment, r))
    return "-".join([experiment.name, *dict.fromkeys(variants)])


NAMED = ("data.noise.protocol", "backbone.preset", "backbone.mix_labels_and_confidence", "train.guidance_loss.")
# How a run goes or where its files are, not what it is: never in an output's name.
NOT_NAMED = ("train.precision", "sample.precision", "evaluate.precision") + EXECUTION_KEYS


def _leaves(node: DictConfig, prefix: str = "") -> dict:
    out = {}
    for key, value in node.items():
        path = f"{prefix}{key}"
        out.update(_leaves(value, path + ".") if isinstance(value, DictConfig) else {path: value})
    return out


def _unnamed_differences(experiment: Experiment, r: RunResult) -> list[str]:
    """``<key>-<value>`` for every value of the run that the experiment at its scale would not have (a user's override
    such as ``data.augment.hflip=true`` -> ``hflip-True``) and that ``output_name`` has no name for, so that no
    override writes over the files of the experiment as the paper runs it; precision and workers do not count."""
    from cad.experiment.config import resolve

    cfg = r.cfg
    overrides = experiment.overrides_at(cfg.scale) + [  # a variant's variant:<name> is the run the CLI made of it
        f"train.init_from={cfg.train.init_from}" if o.startswith(f"train.init_from={VARIANT_PREFIX}") else o
        for o in (experiment.variants or {}).get(r.variant, [])]
    if experiment.sweep_key is not None and r.sweep_value is not None:
        overrides.append(f"{experiment.sweep_key}={r.sweep_value}")
    plain = resolve(cfg.scale, cfg.dataset, cfg.method.name, overrides, task=cfg.task, accelerator="cpu")
    sections = ("data", "backbone", "train", "sample", "evaluate")
    ours = {k: v for s in sections for k, v in _leaves(cfg[s], f"{s}.").items()}
    theirs = {k: v for s in sections for k, v in _leaves(plain[s], f"{s}.").items()}
    return [f"{key.split('.')[-1]}-{re.sub(r'[^A-Za-z0-9_.]+', '', str(value))}" for key, value in ours.items()
            if theirs.get(key) != value and not key.startswith(NAMED) and key not in NOT_NAMED]


def best_of_sweep(results: list[RunResult], metric: str, sweep_key: str) -> list[RunResult]:
    """Per (dataset, method, variant), the run of the sweep with the lowest ``metric`` (the paper reports each
    text-to-image method at its best-FID guidance scale), the swept value added to its metrics under the key's last
    name (``sample.guidance_scale`` -> ``guidance_scale``)."""
    best: dict[tuple, RunResult] = {}
    for r in results:
        key = (r.dataset, r.method, r.variant)
        if key not in best or r.metrics[metric] < best[key].metrics[metric]:
            best[key] = r
    return [replace(r, metrics={**r.metrics, sweep_key.split(".")[-1]: r.sweep_value}) for r in best.values()]


def write(experiment: Experiment, scale: str, results: list[RunResult], root: Path) -> str:
    """Write the experiment's outputs under ``root`` and return the text to print: its task's table (of the best
    value of a sweep when the experiment says ``best_of``) or its sweep's figure and CSV."""
    stem = output_name(experiment, results)
    if experiment.sweep_key is None or experiment.best_of:
        task = get_task(experiment.task)
        rows = best_of_sweep(results, experiment.best_of, experiment.sweep_key) if experiment.best_of else results
        notes = table_notes(rows, task.request_note_at(scale), experiment.sweep_key if experiment.best_of else None)
        if experiment.best_of:
            atomic_write_text(root / "tables" / f"{stem}-sweep.csv", sweep_csv(results, experiment.sweep_key))
            notes["selection"] = (f"each method at the {experiment.sweep_key} of its lowest {experiment.best_of} over "
                                  f"{sorted({r.sweep_value for r in results})} (every value: {stem}-sweep.csv)")
        return task.write_table(experiment.name, rows, notes, root / "tables", output=stem)
    figures = root / "figures"
    text = sweep_csv(results, experiment.sweep_key)
    atomic_write_text(figures / f"{stem}.csv", text)
    plot_sweep(results, experiment, figures / f"{stem}.png")
    for path in get_task(experiment.task).write_sweep_figures(experiment, results, figures, stem):
        text += f"\nwrote {path}"
    if experiment.variants:  # an ablation: its table as well, with wall times and the seed paper's effect beside it
        notes = table_notes(results, get_task(experiment.task).request_note_at(scale), experiment.sweep_key,
                            walls=False)
        table = write_ablation(experiment, results, notes, root / "tables", stem)
        text = table + f"\nwrote {root / 'tables' / stem}.md and .csv"
    return text + f"\nwrote {figures / stem}.csv and .png"
