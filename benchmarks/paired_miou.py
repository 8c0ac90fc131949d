"""Is one semantic-map run's mIoU above another's by more than the sampling noise? A paired bootstrap over the
generated samples (cpu scale; Figure 6(b)'s Baseline and CAD draw the same requested maps with the same seeds).

    python -m benchmarks.paired_miou [fig6b] [--methods baseline cad] [--resamples 2000] [--seed 0]

The mIoU is torchmetrics' macro Jaccard index pooled over the samples (``benchmarks.metrics.mean_iou``); here from
per-sample intersection and union counts, so that a resample of the samples is a sum. Prints each run's mIoU, the
difference (second method minus first) and its 95% percentile interval; the samples must be on disk (parked in git
or drawn by the experiment), the eval segmenter is loaded from the cache (trained there first if missing).
"""
from __future__ import annotations

import argparse

import numpy as np


def per_sample_counts(pred: np.ndarray, target: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) intersections and unions of each sample's predicted and target label maps (N, H, W), per class."""
    classes = np.arange(num_classes)[None, :, None]
    p = pred.reshape(len(pred), 1, -1) == classes
    t = target.reshape(len(target), 1, -1) == classes
    return (p & t).sum(-1), (p | t).sum(-1)


def pooled_miou(intersections: np.ndarray, unions: np.ndarray) -> float:
    """Macro mIoU of the pooled counts; a class absent from every map is left out (as torchmetrics does)."""
    inter, union = intersections.sum(0), unions.sum(0)
    present = union > 0
    return float((inter[present] / union[present]).mean())


def paired_bootstrap(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], *, resamples: int = 2000,
                     seed: int = 0) -> dict:
    """mIoU of ``a`` and ``b`` (per-sample counts of the same requests) and the bootstrap of ``b - a`` over samples
    drawn with replacement, the same indices for both."""
    n = len(a[0])
    if len(b[0]) != n:
        raise ValueError(f"paired runs need the same samples: {n} against {len(b[0])}")
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    for i in range(resamples):
        idx = rng.integers(0, n, n)
        diffs[i] = pooled_miou(b[0][idx], b[1][idx]) - pooled_miou(a[0][idx], a[1][idx])
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {"miou_a": pooled_miou(*a), "miou_b": pooled_miou(*b), "diff": pooled_miou(*b) - pooled_miou(*a),
            "low": float(low), "high": float(high), "share_above_zero": float((diffs > 0).mean())}


def _run_counts(cfg, samples_path) -> tuple[np.ndarray, np.ndarray, list[int]]:
    import torch

    from cad.data.canvases import VOCABULARIES
    from cad.data.map_data import load_segmenter, map_canvases
    from cad.data.registry import dataset_splits
    from cad.tasks.map_task import requested_maps, segment
    from benchmarks.samples import load_samples

    samples = load_samples(samples_path)
    requests = samples["requests"].tolist()
    splits = dataset_splits(cfg.dataset)
    segmenter = load_segmenter("eval", cfg.dataset, cfg.scale, map_canvases(splits["train"], cfg.dataset, cfg.scale))
    pred = segment(segmenter, torch.from_numpy(samples["images"]).permute(0, 3, 1, 2))
    inter, union = per_sample_counts(pred, requested_maps(cfg, requests), len(VOCABULARIES[cfg.dataset]) + 1)
    return inter, union, requests


def main(argv: list[str] | None = None) -> int:
    from cad.experiment import cli
    from cad.experiment.config import ConfigError, load_experiment
    from cad.paths import results_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", nargs="?", default="fig6b")
    parser.add_argument("--methods", nargs=2, default=["baseline", "cad"])
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    experiment = load_experiment(args.experiment)
    _, shown = cli.experiment_datasets(experiment, "cpu", None)
    try:
        configs = cli._configs(experiment, "cpu", shown, args.methods, [],
                               argparse.Namespace(accelerator="cpu", devices=1))
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    found = {r.method: r for r in cli.finished_results(experiment, configs, results_dir())}
    runs = []
    for method in args.methods:
        if method not in found:
            raise SystemExit(f"error: no finished {args.experiment} run of '{method}' at the cpu scale; "
                             f"run ./reproduce.sh {args.experiment} --methods {method} first")
        runs.append(_run_counts(found[method].cfg, found[method].dirs.sample / "samples.npz"))
    if runs[0][2] != runs[1][2]:
        raise SystemExit("error: the two runs asked for different maps: a paired bootstrap needs the same requests")
    out = paired_bootstrap(runs[0][:2], runs[1][:2], resamples=args.resamples, seed=args.seed)
    a, b = args.methods
    print(f"{args.experiment}: mIoU {a} {100 * out['miou_a']:.2f}, {b} {100 * out['miou_b']:.2f}; "
          f"{b} - {a} = {100 * out['diff']:+.2f} points, 95% interval [{100 * out['low']:+.2f}, "
          f"{100 * out['high']:+.2f}] ({args.resamples} paired resamples of the {len(runs[0][2])} samples; "
          f"{b} above in {100 * out['share_above_zero']:.0f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
