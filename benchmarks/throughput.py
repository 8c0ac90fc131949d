"""Training and sampling throughput of a RIN preset beside the authors' RIN (PyPI ``cad-diffusion``, installed on
first use into ``.cache/authors/`` and run in a subprocess by ``benchmarks.authors_rin``), on the same device, batch,
precision and step, in one invocation; with model FLOP utilisation (MFU) against the measured matmul peak.

    python -m benchmarks.throughput [--preset rin_cifar10] [--batch 32] [--device auto|cpu|cuda]
                                    [--precision auto|all|32-true|bf16-mixed] [--compile] [--iters N] [--warmup W]

Training step: a no-grad forward that produces the self-conditioning latents (RIN sec. 3.4), a forward fed with them,
backward of the MSE on eps, a fused AdamW step (the suite and the authors train with LAMB; both are element-wise, a
few percent of a step); train mode, so dropout and stochastic depth are on. Sampling step: one forward, eval mode, no
grad, fed the previous latents. Each timed iteration measures the matmul peak (n^3 in the run's dtype, n = 8192 on
CUDA, 2048 on CPU), then runs one step of ours and one of theirs back to back, the order alternating, so both sides
see the same load; the ratio is the median of the per-iteration ratios. FLOPs: ``FlopCounterMode`` on the two
forwards of a step (the first fed no latents, the second fed the first's); backward counts 2 x the second forward.
Precision ``auto`` is ``cad.hardware.resolve_precision`` (bf16 only where native); ``all`` runs fp32 and, where
native, bf16; an explicit ``bf16-mixed`` runs even where bf16 is emulated.
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.authors_rin import (AUTHORS_CONFIGS, AuthorsRIN, ensure_installed, noisy_batch,
                                    self_conditioned_flops, synchronize, timed)
from cad import hardware
from cad.backbones import build_backbone, count_parameters
from cad.conditioning import Condition
from cad.io import atomic_write_text
from cad.paths import cache_dir, results_dir

# Issue #9, per (device, precision): (minimum ours/authors training ratio, minimum training MFU); CPU bf16: if native.
GOALS = {("cpu", "32-true"): (1.0, None), ("cpu", "bf16-mixed"): (1.6, None), ("cuda", "bf16-mixed"): (1.5, 0.35)}
PRECISION_NAMES = {"32-true": "fp32", "bf16-mixed": "bf16 autocast"}


class MatmulPeak:
    """FLOP/s of an n x n x n matmul, best of ``iters``. The operands and the output are allocated once and reused,
    so measuring between timed iterations does not churn large allocations (which slowed the next iteration)."""

    def __init__(self, device: torch.device, dtype: torch.dtype, n: int = 2048, iters: int = 3):
        self.device, self.n, self.iters = device, n, iters
        self.a, self.b, self.out = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(3))
        torch.mm(self.a, self.b, out=self.out)

    def __call__(self) -> float:
        times = []
        for _ in range(self.iters):
            synchronize(self.device)
            start = time.perf_counter()
            torch.mm(self.a, self.b, out=self.out)
            synchronize(self.device)
            times.append(time.perf_counter() - start)
        return 2 * self.n**3 / min(times)


class OurRIN:
    """Our backbone ``preset``; ``time(step)`` runs one training or sampling step and returns its seconds."""

    def __init__(self, preset: str, batch: int, device: torch.device, precision: str, compile: bool):
        torch.manual_seed(0)
        self.model, self.device, self.precision = build_backbone(preset).to(device), device, precision
        g, spec = torch.Generator().manual_seed(0), self.model.spec
        x_t, eps, gamma = noisy_batch(batch, self.model.in_channels, self.model.image_size, g)
        label = torch.randint(0, spec.num_classes, (batch,), generator=g).to(device) if spec.num_classes else None
        coherence = torch.rand(batch, generator=g).to(device) if spec.coherence_token else None
        self.x_t, self.eps, self.gamma = x_t.to(device), eps.to(device), gamma.to(device)
        self.cond = Condition(label=label, coherence=coherence)
        self.model.eval()
        flops = self_conditioned_flops(lambda z: self.model(self.x_t, self.gamma, self.cond, self_cond=z)[1])
        cls = type(self.model)
        self.info = dict(params=count_parameters(self.model), network=f"{cls.__module__}.{cls.__qualname__}", **flops)
        self.net = torch.compile(self.model) if compile else self.model
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4, fused=True)
        self.latents = None

    def train_step(self) -> None:
        self.model.train()
        with hardware.autocast(self.device, self.precision):
            with torch.no_grad():
                _, latents = self.net(self.x_t, self.gamma, self.cond)
            eps_hat, _ = self.net(self.x_t, self.gamma, self.cond, self_cond=latents)
            loss = F.mse_loss(eps_hat.float(), self.eps)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def sample_step(self) -> None:
        self.model.eval()
        with hardware.autocast(self.device, self.precision):
            _, self.latents = self.net(self.x_t, self.gamma, self.cond, self_cond=self.latents)

    def time(self, step: str) -> float:
        return timed(self.train_step if step == "train" else self.sample_step, self.device)


def interleave(timers: dict, warmup: int, iters: int, before_each=None) -> tuple[dict, list]:
    """``warmup`` untimed then ``iters`` timed rounds over ``timers`` (name -> a function that runs one step and
    returns its seconds), back to back, the order alternating so that every side sees the same load: the seconds of
    each side's steps, and what ``before_each`` (e.g. the matmul peak) returned before each timed round."""
    for name in list(timers) * warmup:
        timers[name]()
    seconds, extras, names = {name: [] for name in timers}, [], list(timers)
    for i in range(iters):
        if before_each is not None:
            extras.append(before_each())
        for name in names if i % 2 == 0 else names[::-1]:
            seconds[name].append(timers[name]())
    return seconds, extras


def precisions_to_run(precision: str, device_type: str) -> list[str]:
    """``auto``: what ``resolve_precision`` picks; ``all``: fp32, and bf16 where it is native; else as given."""
    if precision == "all":
        return ["32-true"] + (["bf16-mixed"] if hardware.bf16_native(device_type) else [])
    return [hardware.resolve_precision(precision, device_type)]


def auto_reason(device_type: str) -> str:
    """Why ``--precision auto`` resolves as it does on this machine."""
    resolved = PRECISION_NAMES[hardware.resolve_precision("auto", device_type)]
    if device_type == "cuda":
        return f"`auto` chose {resolved}: torch.cuda.is_bf16_supported() is {hardware.bf16_native('cuda')}"
    capability = torch.backends.cpu.get_cpu_capability()
    units = bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    why = (f"torch dispatches {capability} kernels (bf16 is native only with AVX512 or AMX ones) and the CPU's "
           f"AVX512-BF16/AMX units are {'present' if units else 'absent'}")
    if hardware.cpu_bf16_native():
        return f"`auto` chose {resolved}: {why}, so bf16 is native"
    return (f"`auto` chose {resolved}: {why}, so bf16 autocast would be emulated (10-20x slower than fp32, see "
            "cad/hardware.py); bf16 is skipped unless asked for with `--precision bf16-mixed`")


def simulated_env() -> str:
    """The environment variables that make this CPU behave as a lesser one, as ``K=V K=V`` ("" if none)."""
    return " ".join(f"{k}={os.environ[k]}" for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if k in os.environ)


def machine_facts(device: torch.device) -> list[str]:
    cpuinfo = hardware.cpu_info()
    flags = cpuinfo.get("flags", "").split()
    isa = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16") if f in flags) or "n/a"
    facts = [f"CPU: {cpuinfo.get('model name', 'unknown')}, {os.cpu_count()} logical CPUs, flags {isa}",
             f"capability (`cad.hardware.describe()`): {hardware.describe()}",
             f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads on each side"]
    if simulated_env():
        facts.append(f"**simulated**: {simulated_env()} set, so torch and oneDNN use only those kernels (the CPU "
                     "itself has the flags above)")
    if device.type == "cuda":
        facts.append(f"GPU: {torch.cuda.get_device_name(device)}")
    return facts


def bench_precision(args, device: torch.device, precision: str, authors_dir: Path) -> dict:
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float32
    peak = MatmulPeak(device, dtype, n=8192 if device.type == "cuda" else 2048)
    ours = OurRIN(args.preset, args.batch, device, precision, args.compile)
    with AuthorsRIN(authors_dir, args.preset, args.batch, device.type, precision, torch.get_num_threads()) as theirs:
        sides = {"ours": ours, "authors": theirs}
        info = {"ours": ours.info, "authors": theirs.info}
        row = dict(precision=precision, peak_n=peak.n, peaks=[])
        for step, flops in (("train", "flops_train"), ("sample", "flops_fwd")):
            timers = {name: functools.partial(side.time, step) for name, side in sides.items()}
            seconds, peaks = interleave(timers, args.warmup, args.iters, before_each=peak)
            row["peaks"] += peaks
            for name, times in seconds.items():
                row[f"{name}_{step}_img_s"] = statistics.median(args.batch / t for t in times)
                row[f"{name}_{step}_mfu"] = statistics.median(
                    info[name][flops] / t / p for t, p in zip(times, peaks)) if info[name][flops] else None
            row[f"{step}_ratio"] = statistics.median(a / o for a, o in zip(seconds["authors"], seconds["ours"]))
    row["peak"] = statistics.median(row.pop("peaks"))
    return dict(row, info=info)


def goal_rows(runs: list[dict], device_type: str, bf16_native: bool) -> list[tuple[str, str, str]]:
    """(goal, measured, met) for every run the issue sets a goal for."""
    rows = []
    for run in runs:
        ratio_goal, mfu_goal = GOALS.get((device_type, run["precision"]), (None, None))
        if ratio_goal is None:
            continue
        name = f"{device_type.upper()} {PRECISION_NAMES[run['precision']]}"
        emulated = run["precision"] == "bf16-mixed" and not bf16_native
        met = lambda ok: "n/a: bf16 is emulated here" if emulated else ("yes" if ok else "no")  # noqa: E731
        rows.append((f"{name}: ours/authors training >= {ratio_goal:.1f}x", f"{run['train_ratio']:.2f}x",
                     met(run["train_ratio"] >= ratio_goal)))
        if mfu_goal is not None:
            mfu = run["ours_train_mfu"]
            rows.append((f"{name}: our training MFU >= {mfu_goal:.0%} of the {run['peak_n']}^3 matmul peak",
                         f"{mfu:.0%}", met(mfu >= mfu_goal)))
    return rows


def render(report: dict) -> str:
    """The markdown report of a run (``report`` as built by :func:`main`): a pure function, tested on fakes."""
    info, batch = report["runs"][0]["info"], report["batch"]
    pct = lambda v: "n/a" if v is None else f"{v:.0%}"  # noqa: E731
    load = lambda values: ", ".join(f"{v:.2f}" for v in values)  # noqa: E731

    def network_row(side: str, name: str, source: str) -> str:
        i = info[side]
        return (f"| {side} | {name} | {i['params'] / 1e6:.2f}M | {i['flops_fwd'] / batch / 1e9:.2f}, "
                f"{i['flops_train'] / batch / 1e9:.2f} | {source} |")

    a = info["authors"]
    lines = [
        f"# Throughput: `{report['preset']}` beside the authors' RIN, batch {batch}, {report['device']}", "",
        f"Generated by `{report['command']}`; do not edit by hand.", "", "## Machine", "",
        *[f"- {f}" for f in report["machine"]],
        f"- precision: `--precision {report['precision_arg']}` ran "
        + ", ".join(PRECISION_NAMES[r["precision"]] for r in report["runs"]) + f"; {report['auto_reason']}",
        f"- load average (1, 5, 15 min) before: {load(report['load_before'])}, after: {load(report['load_after'])}; "
        f"run took {report['wall_s']:.0f} s", "", "## Networks", "",
        "| side | network | parameters | GFLOP / image: sampling forward, training step | source |",
        "|---|---|---|---|---|",
        network_row("ours", f"`{info['ours']['network']}`{', torch.compile' if report['compile'] else ''}",
                    f"preset `{report['preset']}`, this repository"),
        network_row("authors", f"`{a['network']}`, eager", f"PyPI `cad-diffusion` {a['version']}, "
                    f"`{a['module_file']}`; config {a['config_source']}"), "",
        "Both sides have 128 latent tokens (ours: 125 learned + time, label and coherence tokens; theirs: 126 learned "
        "+ time and label tokens). cad-diffusion's class-conditional RIN has no coherence token (its coherence "
        "embedder is in the text RIN, `CADRINTextCond`, only), hence its slightly smaller parameter count. Their "
        "first forward of a training step runs the self-conditioning MLP on the zero latents of every token; ours "
        "computes it once and broadcasts it, hence our fewer training FLOPs. The authors' training code runs the "
        "network eagerly (its torch.compile call is commented out), and so does this benchmark.", "", "## Results", "",
        f"{report['warmup']} warm-up + {report['iters']} timed iterations per step and side; each timed iteration "
        "measures the matmul peak, then runs ours and theirs back to back. img/s and MFU are medians; the ratio is "
        "the median of the per-iteration ratios (their step time / ours).", "",
        "| precision | matmul peak (TFLOP/s) | train img/s ours | train img/s authors | train ours/authors | "
        "train MFU ours | train MFU authors | sample img/s ours | sample img/s authors | sample ours/authors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {PRECISION_NAMES[r['precision']]} | {r['peak'] / 1e12:.3f} | {r['ours_train_img_s']:.2f} | "
            f"{r['authors_train_img_s']:.2f} | **{r['train_ratio']:.2f}x** | {pct(r['ours_train_mfu'])} | "
            f"{pct(r['authors_train_mfu'])} | {r['ours_sample_img_s']:.1f} | {r['authors_sample_img_s']:.1f} | "
            f"{r['sample_ratio']:.2f}x |")
    goals = goal_rows(report["runs"], report["device"], report["bf16_native"]) or [("none for these runs", "", "")]
    lines += ["", "## Goals (issue #9)", "", "| goal | measured | met |", "|---|---|---|",
              *[f"| {g} | {m} | {ok} |" for g, m, ok in goals]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="rin_cifar10", choices=sorted(AUTHORS_CONFIGS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--precision", default="auto", choices=("all", *hardware.PRECISIONS))
    parser.add_argument("--compile", action="store_true", help="torch.compile our backbone")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per step and side")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations per step and side")
    parser.add_argument("--authors-dir", type=Path, default=cache_dir() / "authors")
    parser.add_argument("--out", type=Path, default=results_dir() / "benchmarks" / "throughput.md")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    if args.compile and args.warmup < 2:  # sampling compiles twice: its first step has no previous latents
        parser.error("--compile needs --warmup >= 2 (the first steps compile)")
    device = torch.device(hardware.accelerator_device_type("auto") if args.device == "auto" else args.device)
    authors_dir = ensure_installed(args.authors_dir)

    load_before, start, runs = os.getloadavg(), time.perf_counter(), []
    for precision in precisions_to_run(args.precision, device.type):
        runs.append(r := bench_precision(args, device, precision, authors_dir))
        print(f"{device.type} {precision}: train ours {r['ours_train_img_s']:.2f} / authors "
              f"{r['authors_train_img_s']:.2f} img/s = {r['train_ratio']:.2f}x; sample {r['sample_ratio']:.2f}x")
    report = dict(
        preset=args.preset, batch=args.batch, device=device.type, compile=args.compile, iters=args.iters,
        warmup=args.warmup, precision_arg=args.precision, runs=runs,
        command=" ".join([simulated_env(), "python -m benchmarks.throughput", *argv]).strip(),
        machine=machine_facts(device), auto_reason=auto_reason(device.type),
        bf16_native=hardware.bf16_native(device.type), wall_s=time.perf_counter() - start,
        load_before=load_before, load_after=os.getloadavg(),
    )
    atomic_write_text(args.out, render(report))
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
