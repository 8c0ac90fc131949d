"""The convolutional denoisers' memory layout: NCHW (PyTorch's default, what the suite used before) against the
channels-last (NHWC) weights that ``cad.tasks.base`` now gives every backbone with ``channels_last = True``:

    python -m benchmarks.memory_format [--presets unet_cpu] [--precision 32-true] [--threads 1] [--iters 5]

Both sides are the same network (the NHWC one a copy of the NCHW one's weights) on the same inputs; the training step
is ``benchmarks.preset_throughput``'s (forward, MSE, backward, AdamW), the sampling step a no-grad forward at the cpu
scale's sampling batch. Steps are interleaved, the order alternating, so both sides see the same load; img/s is the
median. The largest difference of the two sides' predictions is reported too: the layout changes rounding only.
``--threads 1`` by default: a cpu-scale experiment runs one single-threaded job per core (README "Hardware").
Writes ``results/benchmarks/memory_format.md`` (``--out``).
"""
from __future__ import annotations

import argparse
import copy
import functools
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.authors_rin import timed
from benchmarks.preset_throughput import PresetStep, cpu_report_head
from benchmarks.throughput import PRECISION_NAMES, interleave
from cad import hardware
from cad.backbones import PRESETS
from cad.conditioning import Condition
from cad.io import atomic_write_text
from cad.paths import results_dir

LAYOUTS = {"NCHW": torch.contiguous_format, "NHWC (channels_last)": torch.channels_last}


class LayoutSide:
    """One class-conditional network in one layout: a training step (``PresetStep``) and a sampling forward of
    ``sample_batch``."""

    def __init__(self, template: PresetStep, layout: torch.memory_format, sample_batch: int):
        self.step = copy.copy(template)
        self.step.model = copy.deepcopy(template.model).to(memory_format=layout)
        self.step.optimizer = torch.optim.AdamW(self.step.model.parameters(), lr=1e-4)
        g, n = torch.Generator().manual_seed(1), sample_batch
        self.x, self.gamma = torch.randn(n, *template.x_t.shape[1:], generator=g), torch.rand(n, generator=g)
        self.cond = Condition(label=torch.randint(0, 10, (n,), generator=g),
                              label_null=torch.zeros(n, dtype=torch.bool), coherence=torch.rand(n, generator=g))

    @torch.no_grad()
    def sample(self) -> torch.Tensor:
        self.step.model.eval()
        with hardware.autocast("cpu", self.step.precision):
            return self.step.model(self.x, self.gamma, self.cond)[0].float()


def measure(preset: str, precision: str, batch: int, sample_batch: int, warmup: int, iters: int) -> dict:
    template = PresetStep(preset, batch, precision)
    sides = {name: LayoutSide(template, layout, sample_batch) for name, layout in LAYOUTS.items()}
    first, second = (side.sample() for side in sides.values())  # before any training step: the same weights
    result = {"max_abs_diff": (first - second).abs().max().item(), "pred_abs_mean": first.abs().mean().item()}
    for kind, batch_size in (("train", batch), ("sample", sample_batch)):
        def run(side: LayoutSide):
            return side.step.step() if kind == "train" else side.sample()

        timers = {name: functools.partial(timed, functools.partial(run, side), torch.device("cpu"))
                  for name, side in sides.items()}
        seconds, _ = interleave(timers, warmup, iters)
        for name in sides:
            result[(kind, name)] = batch_size / statistics.median(seconds[name])
    return result


def render(results: dict, precision: str, command: str, wall: float, load: tuple[tuple, tuple]) -> str:
    nchw, nhwc = LAYOUTS
    header = ["preset", "step", f"{nchw} img/s", f"{nhwc} img/s", "NHWC / NCHW"]
    lines = cpu_report_head("Memory layout of the convolutional denoisers: NCHW vs channels-last", command,
                            PRECISION_NAMES[precision], wall, load, header)
    for preset, r in results.items():
        for kind in ("train", "sample"):
            a, b = r[(kind, nchw)], r[(kind, nhwc)]
            lines.append(f"| `{preset}` | {kind} | {a:.0f} | {b:.0f} | {b / a:.2f}x |")
    lines += ["", "Largest difference of the two layouts' predictions (same weights, same inputs): "
              + ", ".join(f"`{p}` {r['max_abs_diff']:.1e} (mean |eps| {r['pred_abs_mean']:.2f})"
                          for p, r in results.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    layout_presets = sorted(p for p in PRESETS if p.startswith("unet"))
    parser.add_argument("--presets", nargs="+", default=["unet_cpu"], choices=layout_presets)
    parser.add_argument("--precision", default="32-true", choices=("32-true", "bf16-mixed"))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--sample-batch", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", type=Path, default=results_dir() / "benchmarks" / "memory_format.md")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    start, load_before = time.time(), os.getloadavg()
    results = {p: measure(p, args.precision, args.batch, args.sample_batch, args.warmup, args.iters)
               for p in args.presets}
    command = "python -m benchmarks.memory_format " + " ".join(sys.argv[1:] if argv is None else argv)
    text = render(results, args.precision, command.strip(), time.time() - start, (load_before, os.getloadavg()))
    atomic_write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
