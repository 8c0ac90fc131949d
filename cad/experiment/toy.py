"""A mechanism check that runs in seconds: does CAD beat its baselines when training is not the bottleneck?

K Gaussian clusters on a circle (2-D points, class = cluster), an MLP denoiser trained to convergence on the shared
diffusion step (cad.tasks.base: eq. 1-2, LAMB + warmup-cosine, the loss reductions), then sampled with DDIM at
the requested class. Accuracy = the share of samples whose nearest cluster centre is the requested one. Noise
protocols: ``classifier`` (the Bayes posterior of the mixture re-sampled at the temperature giving 0.54 relabelling
accuracy, c = 1 - H(p)/log K: the cpu scale's protocol), ``authors_entropy`` and ``symmetric_entropy`` (coherence
independent of the point). Methods as Table 5(d); CAD is also sampled at coherence 0, where the paper says it acts
as an unconditional model (accuracy near 1/K).

The points lie in [-1, 1] (clusters of std 0.15 on a circle of radius 0.6) and DDIM clips x0 to it, as the image
tasks do. Without the clip (this module's first version, whose table was an artifact) the first step from t = 1
multiplies the network's error there by sqrt(gamma_s / gamma_t) ~ 400 and the samples' directions, hence the
accuracies, came from that error, not from the learned distribution: the Conditional model drew its requested
cluster 0.996 of the time, more than the data's own points are nearest their cluster's centre (0.874; with the clip it
draws 0.898).

    python -m cad.experiment.toy    # results/tables/toy_mechanism.{md,csv}, results/figures/toy_mechanism.png
"""
from __future__ import annotations

import argparse
import functools
import math
import time

import torch
from torch import nn

from cad.conditioning import Condition
from cad.data.entropy_noise import authors_entropy_labels
from cad.data.noise import find_temperature, resample_labels, symmetric_entropy_labels
from cad.guidance import aligned_loss_pair
from cad.io import atomic_write_text
from cad.paths import results_dir
from cad.tasks.base import DiffusionModule
from cad.tasks.class_task import label_condition
from cad.tasks.generate import generate

METHODS = {  # name: (labels, use_coherence, loss, filter_threshold)
    "conditional": ("clean", False, "mean", None), "baseline": ("noisy", False, "mean", None),
    "filtered": ("noisy", False, "mean", 0.5), "weighted": ("noisy", False, "weighted", None),
    "cad": ("noisy", True, "mean", None)}
PROTOCOLS = ("classifier", "authors_entropy", "symmetric_entropy")


RADIUS, STD = 0.6, 0.15  # the mixture inside [-1, 1], where DDIM's x0 clip holds it (std / radius = 1/4)


def mixture(k: int, n: int, std: float = STD, seed: int = 0,
            radius: float = RADIUS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(points (n, 2), labels (n,), centres (k, 2)): k clusters of std ``std`` on a circle of ``radius``."""
    g = torch.Generator().manual_seed(seed)
    angles = torch.arange(k) * 2 * math.pi / k
    centres = radius * torch.stack([angles.cos(), angles.sin()], 1)
    labels = torch.randint(0, k, (n,), generator=g)
    return centres[labels] + std * torch.randn(n, 2, generator=g), labels, centres


def noisy_labels(protocol: str, points, labels, centres, std: float) -> tuple[torch.Tensor, torch.Tensor]:
    g, k = torch.Generator().manual_seed(3407), len(centres)
    if protocol == "classifier":
        logits = -torch.cdist(points, centres).square() / (2 * std**2)  # the mixture's Bayes posterior
        return resample_labels(logits, find_temperature(logits, labels, 0.54), g)
    if protocol == "authors_entropy":
        return authors_entropy_labels(labels, k, g)
    return symmetric_entropy_labels(labels, k, g)


class ToyDenoiser(nn.Module):
    def __init__(self, k: int, use_coherence: bool, width: int = 256):
        super().__init__()
        self.use_coherence = use_coherence
        self.label = nn.Embedding(k + 1, width)  # index k: the null label
        self.coherence = nn.Linear(1, width) if use_coherence else None
        self.time = nn.Linear(1, width)
        self.net = nn.Sequential(nn.Linear(2 + width, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, 2))

    def forward(self, x_t, gamma, cond: Condition, self_cond=None):
        label = torch.where(cond.label_null, torch.full_like(cond.label, self.label.num_embeddings - 1), cond.label)
        h = self.label(label) + self.time(gamma[:, None].float())
        if self.coherence is not None:
            h = h + self.coherence(cond.coherence[:, None].float())
        return self.net(torch.cat([x_t, torch.nn.functional.silu(h)], 1)), None


class ToyModule(DiffusionModule):
    def __init__(self, *, k: int, use_coherence: bool, cond_dropout: float = 0.0, guidance: str = "none", **train):
        """``cond_dropout``: the share of labels dropped to the null (plain CFG); ``guidance``: the pair the
        guidance-aligned loss trains (cad.guidance.aligned_loss_pair; cad.experiment.toy_guidance)."""
        super().__init__(**train)

    def build_model(self):
        return ToyDenoiser(self.hparams.k, self.hparams.use_coherence)

    def condition(self, batch, generator=None):
        label, p = batch["label"], self.hparams.cond_dropout
        coherence = batch["coherence"].float() if self.hparams.use_coherence else None
        # drawn only with dropout on, so the mechanism check's runs keep their randomness
        drop = torch.rand(label.shape, generator=generator) < p if p else torch.zeros_like(label, dtype=torch.bool)
        return Condition(label=label, label_null=drop, coherence=coherence)

    def training_pair(self, cond: Condition) -> tuple[Condition, Condition]:
        return aligned_loss_pair(cond, self.hparams.guidance, self.hparams.guidance)


def train_toy(points, labels, coherence, *, k: int, method: str, steps: int, batch: int = 512, seed: int = 0,
              use_coherence: bool | None = None, **options):
    """The toy denoiser trained on (points, labels, coherence) as ``method`` trains (METHODS); ``options``: more of
    ``ToyModule``'s settings (cond_dropout, guidance, guidance_loss), ``use_coherence`` overriding the method's."""
    _, method_coherence, loss, threshold = METHODS[method]
    if threshold is not None:
        keep = coherence >= threshold
        points, labels, coherence = points[keep], labels[keep], coherence[keep]
    torch.manual_seed(seed)
    module = ToyModule(k=k, use_coherence=method_coherence if use_coherence is None else use_coherence,
                       schedule={"name": "cosine"}, lr=3e-3, betas=(0.9, 0.999), weight_decay=0.0,
                       warmup_steps=steps // 20, total_steps=steps, lr_rate=1.0, ema_decay=0.999, ema_warmup=10,
                       seed=seed, loss=loss, **options)
    optimizers = module.configure_optimizers()
    optimizer, scheduler = optimizers["optimizer"], optimizers["lr_scheduler"]["scheduler"]
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        rows = torch.randint(0, len(points), (batch,), generator=g)
        data = {"image": points[rows], "label": labels[rows], "coherence": coherence[rows]}
        loss_value, _ = module.model_step(data, torch.Generator().manual_seed(seed * 1_000_003 + step))
        optimizer.zero_grad()
        loss_value.backward()
        optimizer.step()
        scheduler.step()
    return module.model.eval()


def spread(points: torch.Tensor, centres: torch.Tensor) -> float:
    """RMS distance of ``points`` to their nearest centre."""
    return float(torch.cdist(points, centres).min(1).values.square().mean().sqrt())


def accuracy(model, centres, *, use_coherence: bool, coherence: float, per_class: int = 200,
             steps: int = 50) -> tuple[float, float]:
    """(accuracy, spread): the share of samples nearest their requested centre, and the samples' RMS distance to the
    nearest centre over the mixture's (1: as wide as the data; far above 1: off the data, where the accuracy only
    says in which direction)."""
    k = len(centres)
    requests = [i % k for i in range(k * per_class)]
    condition = functools.partial(label_condition, use_coherence=use_coherence, coherence=coherence)
    x0 = generate(model, requests, list(range(len(requests))), condition=condition, pair=None, image_shape=(2,),
                  sampler="ddim", steps=steps, schedule={"name": "cosine"}, guidance_scale=0.0, eta=0.0,
                  clip_x0=True, batch_size=len(requests), progress=False)
    nearest = torch.cdist(x0, centres).argmin(1)
    data, _, _ = mixture(k, len(requests), seed=1)
    return float((nearest == torch.tensor(requests)).double().mean()), spread(x0, centres) / spread(data, centres)


def run(k: int = 8, n: int = 20_000, std: float = STD, steps: int = 3000, protocols=PROTOCOLS,
        methods=tuple(METHODS)) -> list[dict]:
    points, clean, centres = mixture(k, n, std)
    rows = []
    for protocol in protocols:
        noisy, coherence = noisy_labels(protocol, points, clean, centres, std)
        for method in methods:
            labels_kind, use_coherence, _, _ = METHODS[method]
            labels = clean if labels_kind == "clean" else noisy
            start = time.time()
            model = train_toy(points, labels, coherence, k=k, method=method, steps=steps)
            acc, width = accuracy(model, centres, use_coherence=use_coherence, coherence=1.0)
            row = {"protocol": protocol, "method": method, "relabel_accuracy": float((noisy == clean).double().mean()),
                   "accuracy": acc, "spread": width}
            if use_coherence:
                row["accuracy_at_coherence_0"] = accuracy(model, centres, use_coherence=True, coherence=0.0)[0]
            row["seconds"] = round(time.time() - start, 1)
            rows.append(row)
            print(row, flush=True)
    return rows


def render(rows: list[dict], k: int, steps: int) -> str:
    lines = [f"## Mechanism check: {k} Gaussian clusters on a circle, MLP denoiser, {steps} steps (converged)", "",
             "Accuracy: share of samples (DDIM 50 steps, coherence 1) nearest their requested cluster; chance "
             f"{1 / k:.3f}. Generated by `python -m cad.experiment.toy`.", "",
             "Spread: the samples' RMS distance to the nearest centre over the data's (1: as wide as the data; far "
             "above 1: off the data, the accuracy then only a direction).", "",
             "| protocol | relabelling accuracy | method | accuracy | spread | accuracy at coherence 0 |",
             "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        at_zero = f"{r['accuracy_at_coherence_0']:.3f}" if "accuracy_at_coherence_0" in r else ""
        lines.append(f"| {r['protocol']} | {r['relabel_accuracy']:.3f} | {r['method']} | {r['accuracy']:.3f} "
                     f"| {r['spread']:.2f} | {at_zero} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], k: int, path) -> None:
    """Accuracy per method, one group of bars per protocol; CAD at coherence 0 hatched; chance dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / (len(methods) + 1)
    for i, method in enumerate(methods):
        values = [next(r["accuracy"] for r in rows if r["protocol"] == p and r["method"] == method) for p in protocols]
        ax.bar([j + i * width for j in range(len(protocols))], values, width, label=method)
    at_zero = [next((r.get("accuracy_at_coherence_0") for r in rows if r["protocol"] == p and r["method"] == "cad"), 0)
               for p in protocols]
    ax.bar([j + len(methods) * width for j in range(len(protocols))], at_zero, width, label="cad at c = 0",
           hatch="//", fill=False)
    ax.axhline(1 / k, linestyle="--", color="grey", label="chance")
    ax.set_xticks([j + 0.4 for j in range(len(protocols))], protocols)
    ax.set_ylabel("accuracy (nearest cluster = requested)")
    ax.set_ylim(0, 1.3)
    ax.set_title(f"Mechanism check: {k} clusters on a circle, converged MLP denoiser")
    ax.legend(fontsize=7, ncol=4)
    save_figure(fig, path)


def save_figure(fig, path) -> None:
    """A toy figure as a PNG, written atomically, then closed."""
    import matplotlib.pyplot as plt

    from cad.io import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def toy_arguments(doc: str, argv: list[str] | None) -> argparse.Namespace:
    """A toy command's options: the number of clusters and the training steps."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3000)
    return parser.parse_args(argv)


def write_table(stem: str, text: str, rows: list[dict], columns: list[str]) -> None:
    """``results/tables/<stem>.md`` (``text``) and ``<stem>.csv`` (``columns`` of ``rows``, blank where missing)."""
    csv = "\n".join([",".join(columns)] + [",".join(str(r.get(c, "")) for c in columns) for r in rows]) + "\n"
    atomic_write_text(results_dir() / "tables" / f"{stem}.md", text)
    atomic_write_text(results_dir() / "tables" / f"{stem}.csv", csv)


def main(argv: list[str] | None = None) -> int:
    args = toy_arguments(__doc__, argv)
    rows = run(k=args.k, steps=args.steps)
    text = render(rows, args.k, args.steps)
    write_table("toy_mechanism", text, rows,
                ["protocol", "method", "relabel_accuracy", "accuracy", "spread", "accuracy_at_coherence_0", "seconds"])
    plot(rows, args.k, results_dir() / "figures" / "toy_mechanism.png")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
