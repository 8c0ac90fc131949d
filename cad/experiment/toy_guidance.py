"""The guidance-aligned loss (issue 14, "Bridging the Gap") where training is not the bottleneck: the mechanism
check's 2-D problem (cad.experiment.toy: 8 Gaussian clusters on a circle, noisy labels by the classifier protocol,
the cpu-scale ablation's, and by the authors' entropy protocol, where the coherence spans [0, 1] and c = 1 is seen in
training; an MLP denoiser trained to convergence) with plain CFG and CAD, each trained with the plain and the aligned
loss (w ~ U(0, 3), as the cpu-scale ablation's ``aligned`` variant), then sampled at each guidance scale (DDIM 50,
x0 clipped to [-1, 1], where the mixture lies, as in the mechanism check).

Measured per point: accuracy (share of samples nearest their requested cluster) and, standing in for FID, the sliced
Wasserstein-1 distance between the samples (classes balanced) and as many fresh points of the mixture (64 random
directions; the mixture's own two independent draws give its noise floor, in the table); and the spread, the
samples' RMS distance to their nearest centre over the mixture's own (1: the clusters' width; below 1: sharpened).

    python -m cad.experiment.toy_guidance   # results/tables/toy_guidance.{md,csv}, results/figures/toy_guidance.png
"""
from __future__ import annotations

import functools
import time

import torch

from cad.experiment.toy import (STD, mixture, noisy_labels, save_figure, spread, toy_arguments, train_toy,
                                write_table)
from cad.guidance import guidance_pair
from cad.paths import results_dir
from cad.tasks.class_task import label_condition
from cad.tasks.generate import generate

METHODS = {"cfg": ("baseline", False, 0.1, "cfg"), "cad": ("cad", True, 0.0, "cacfg")}  # toy method, coherence,
LOSSES = {"plain": None, "aligned": {"w": 0.0, "w_max": 3.0}}                           # dropout, guidance
SCALES = (0.0, 1.0, 3.0, 10.0)
PROTOCOLS = ("classifier", "authors_entropy")


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, directions: int = 64, seed: int = 0) -> float:
    """Mean over random unit directions of the 1-D Wasserstein-1 distance of the projections (equal sizes)."""
    theta = torch.randn(directions, a.shape[1], generator=torch.Generator().manual_seed(seed))
    theta = theta / theta.norm(dim=1, keepdim=True)
    pa, pb = (x @ theta.T for x in (a, b))
    return float((pa.sort(0).values - pb.sort(0).values).abs().mean())


def sample(model, centres, *, method: str, scale: float, per_class: int,
           steps: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """(samples, requested classes): classes in turn, `per_class` each, at coherence 1."""
    _, use_coherence, _, guidance = METHODS[method]
    k = len(centres)
    requests = [i % k for i in range(k * per_class)]
    return generate(model, requests, list(range(len(requests))),
                    condition=functools.partial(label_condition, use_coherence=use_coherence, coherence=1.0),
                    pair=functools.partial(guidance_pair, guidance=guidance), image_shape=(2,), sampler="ddim",
                    steps=steps, schedule={"name": "cosine"}, guidance_scale=scale, eta=0.0, clip_x0=True,
                    batch_size=len(requests), progress=False), torch.tensor(requests)


def run(k: int = 8, n: int = 20_000, std: float = STD, steps: int = 3000, per_class: int = 250,
        protocols=PROTOCOLS, methods=tuple(METHODS), losses=tuple(LOSSES), scales=SCALES) -> tuple[list[dict], dict]:
    points, clean, centres = mixture(k, n, std)
    fresh, _, _ = mixture(k, k * per_class, std, seed=1)
    floor_draw, _, _ = mixture(k, k * per_class, std, seed=2)
    reference = {"sw_floor": sliced_wasserstein(fresh, floor_draw), "spread": spread(fresh, centres)}
    rows = []
    for protocol, method in ((p, m) for p in protocols for m in methods):
        noisy, coherence = noisy_labels(protocol, points, clean, centres, std)
        reference[protocol] = float((noisy == clean).double().mean())  # its relabelling accuracy
        toy_method, use_coherence, dropout, guidance = METHODS[method]
        for loss in losses:
            start = time.time()
            model = train_toy(points, noisy, coherence, k=k, method=toy_method, steps=steps,
                              use_coherence=use_coherence, cond_dropout=dropout, guidance=guidance,
                              guidance_loss=LOSSES[loss])
            train_s = time.time() - start
            for scale in scales:
                x0, requests = sample(model, centres, method=method, scale=scale, per_class=per_class)
                rows.append({"protocol": protocol, "method": method, "loss": loss, "guidance_scale": scale,
                             "accuracy": float((torch.cdist(x0, centres).argmin(1) == requests).double().mean()),
                             "sliced_w1": sliced_wasserstein(x0, fresh),
                             "spread": spread(x0, centres) / reference["spread"], "train_s": round(train_s, 1)})
                print(rows[-1], flush=True)
    return rows, reference


def render(rows: list[dict], reference: dict, k: int, steps: int) -> str:
    lines = [f"## The guidance-aligned loss on the mechanism check's problem: {k} clusters, MLP denoiser, {steps} "
             "steps (converged)", "",
             "Noisy labels: " + ", ".join(f"{p} protocol (relabelling accuracy {reference[p]:.3f})"
                                          for p in dict.fromkeys(r["protocol"] for r in rows)) + ". Plain CFG "
             "(dropout 0.1, null label) and CAD (CA-CFG), each trained with the plain loss and the aligned loss "
             "(w ~ U(0, 3)), sampled with DDIM 50 at coherence 1. Accuracy: share of samples nearest their requested "
             f"cluster (chance {1 / k:.3f}). Sliced W1: to fresh mixture points (the stand-in for FID; two draws of "
             f"the mixture itself: {reference['sw_floor']:.4f}). Spread: RMS distance to the nearest centre over the "
             "mixture's own (below 1: sharpened). Generated by `python -m cad.experiment.toy_guidance`.", "",
             "| protocol | method | loss | guidance scale | accuracy | sliced W1 | spread |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['protocol']} | {r['method']} | {r['loss']} | {r['guidance_scale']:.1f} | "
                     f"{r['accuracy']:.3f} | {r['sliced_w1']:.4f} | {r['spread']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], k: int, sw_floor: float, path) -> None:
    """Per protocol (a row of panels): accuracy and sliced W1 (log scale) against the guidance scale, a line per
    (method, loss); chance and the mixture's own W1 dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    fig, axes = plt.subplots(len(protocols), 2, figsize=(10, 3.6 * len(protocols)), squeeze=False)
    for row_axes, protocol in zip(axes, protocols):
        for key, ax, label in (("accuracy", row_axes[0], "accuracy"), ("sliced_w1", row_axes[1], "sliced W1")):
            for method, loss in dict.fromkeys((r["method"], r["loss"]) for r in rows):
                line = [r for r in rows if (r["protocol"], r["method"], r["loss"]) == (protocol, method, loss)]
                ax.plot([r["guidance_scale"] for r in line], [r[key] for r in line], marker="o",
                        linestyle="-" if loss == "plain" else "--", label=f"{method} ({loss} loss)")
            ax.set_xlabel("guidance scale at sampling")
            ax.set_ylabel(label)
            ax.set_title(f"{protocol} protocol", fontsize=9)
        row_axes[0].axhline(1 / k, linestyle=":", color="grey")
        row_axes[1].axhline(sw_floor, linestyle=":", color="grey")
        row_axes[1].set_yscale("log")
        row_axes[0].legend(fontsize=7)
    fig.suptitle(f"Guidance-aligned loss on the converged 2-D toy ({k} clusters, noisy labels)")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    args = toy_arguments(__doc__, argv)
    rows, reference = run(k=args.k, steps=args.steps)
    text = render(rows, reference, args.k, args.steps)
    write_table("toy_guidance", text, rows, list(rows[0]))
    plot(rows, args.k, reference["sw_floor"], results_dir() / "figures" / "toy_guidance.png")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
