"""Turn finished runs into the paper's table (table5d) or figure (fig5a, fig5b): files under results/tables or
results/figures, written atomically, and the text printed at the end of the command."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from cad.experiment import adapters
from cad.experiment.config import Experiment
from cad.experiment.runs import RunDirs
from cad.io import atomic_path, atomic_write_text


@dataclass(frozen=True)
class RunResult:
    dataset: str
    method: str
    sweep_value: float | None
    cfg: DictConfig
    dirs: RunDirs
    metrics: dict


def context(scale: str, results: list[RunResult]) -> dict:
    """What the table must say about how its numbers were made (stand-ins, noise, protocol)."""
    first = results[0].cfg
    datasets = {}
    for r in results:
        noise = adapters.noise_summary(r.cfg)
        datasets[r.dataset] = {"stands_in_for": r.cfg.stands_in_for, **noise}
    return {
        "scale": scale,
        "datasets": datasets,
        "num_samples": first.sample.num_samples,
        "reference_size": first.evaluate.reference_size,
        "sampler": f"{first.sample.sampler}, {first.sample.steps} steps, eta {first.sample.eta}",
        "guidance_scale": first.sample.guidance_scale,
        "backbone": first.backbone.preset,
        "train_steps": first.train.total_steps,
    }


def sweep_csv(results: list[RunResult], key: str) -> str:
    columns = sorted({k for r in results for k, v in r.metrics.items() if isinstance(v, (int, float))})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["dataset", key] + columns)
    for r in results:
        writer.writerow([r.dataset, r.sweep_value] + [r.metrics.get(c, "") for c in columns])
    return out.getvalue()


def plot_sweep(results: list[RunResult], experiment: Experiment, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r.dataset for r in results})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        rows = [r for r in results if r.dataset == dataset]
        fid = [r.metrics.get("fid") for r in rows]
        acc = [r.metrics.get("accuracy") for r in rows]
        values = [r.sweep_value for r in rows]
        if experiment.name == "fig5a":
            ax.plot(values, acc, "o-", color="tab:blue", label="accuracy")
            ax.set_xlabel("coherence fed at sampling")
            ax.set_ylabel("accuracy", color="tab:blue")
            twin = ax.twinx()
            twin.plot(values, fid, "s--", color="tab:red", label="FID")
            twin.set_ylabel("FID", color="tab:red")
        else:
            ax.plot(acc, fid, "o-")
            for v, a, f in zip(values, acc, fid):
                ax.annotate(f"w={v:g}", (a, f), textcoords="offset points", xytext=(4, 4), fontsize=8)
            ax.set_xlabel("accuracy")
            ax.set_ylabel("FID")
        stand_in = rows[0].cfg.stands_in_for
        ax.set_title(dataset + (f" (stand-in for {stand_in})" if stand_in else ""))
    fig.suptitle(f"{experiment.name}: CAD, {rows[0].cfg.sample.num_samples} samples per point")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def write(experiment: Experiment, scale: str, results: list[RunResult], root: Path) -> str:
    """Write the experiment's outputs under ``root`` and return the text to print."""
    if experiment.sweep_key is None:
        return adapters.write_table(experiment.name, results, context(scale, results), root / "tables")
    figures = root / "figures"
    text = sweep_csv(results, experiment.sweep_key)
    atomic_write_text(figures / f"{experiment.name}.csv", text)
    plot_sweep(results, experiment, figures / f"{experiment.name}.png")
    return text + f"\nwrote {figures / experiment.name}.csv and .png"
