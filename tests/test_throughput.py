"""Throughput benchmark: precision choice, the report, and the authors' subprocess (on a fake package; on theirs
only where ``.cache/authors`` holds it)."""
from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
import torch

from benchmarks import authors_rin, throughput
from benchmarks.authors_rin import AuthorsRIN, ensure_installed, is_installed, worker_command
from cad import hardware
from cad.backbones import build_backbone, count_parameters
from cad.paths import cache_dir


@pytest.fixture
def cpu_bf16(monkeypatch):
    """``cpu_bf16(native)`` makes ``cad.hardware`` see a CPU with (or without) native bf16."""
    return lambda native: monkeypatch.setattr(hardware, "cpu_bf16_native", lambda *a, **k: native)


def test_auto_on_a_cpu_without_native_bf16_runs_fp32_only(cpu_bf16):
    cpu_bf16(False)
    assert throughput.precisions_to_run("auto", "cpu") == ["32-true"]
    assert throughput.precisions_to_run("all", "cpu") == ["32-true"]
    assert throughput.precisions_to_run("bf16-mixed", "cpu") == ["bf16-mixed"]  # asked for explicitly
    reason = throughput.auto_reason("cpu")
    assert "`auto` chose fp32" in reason and "emulated" in reason and "--precision bf16-mixed" in reason


def test_auto_on_a_cpu_with_native_bf16_runs_bf16(cpu_bf16):
    cpu_bf16(True)
    assert throughput.precisions_to_run("auto", "cpu") == ["bf16-mixed"]
    assert throughput.precisions_to_run("all", "cpu") == ["32-true", "bf16-mixed"]
    assert throughput.precisions_to_run("32-true", "cpu") == ["32-true"]
    assert "`auto` chose bf16 autocast" in throughput.auto_reason("cpu")


def fake_run(precision: str, ratio: float, mfu: float) -> dict:
    info = dict(params=31.28e6, flops_fwd=32 * 8.59e9, flops_train=32 * 33.84e9, network="cad.backbones.rin.RIN")
    authors = dict(info, params=30.95e6, network="cad.models.networks.rin.RINClassCond", version="1.2",
                   module_file="cad/models/networks/rin.py", config_source="cad/configs/model/network/rin.yaml")
    return dict(precision=precision, peak_n=2048, peak=0.2e12, ours_train_img_s=4.0 * ratio, authors_train_img_s=4.0,
                ours_train_mfu=mfu, authors_train_mfu=0.5, ours_sample_img_s=20.0, authors_sample_img_s=18.0,
                train_ratio=ratio, sample_ratio=20 / 18, info=dict(ours=info, authors=authors))


def fake_report(runs: list[dict], device: str = "cpu", bf16_native: bool = True, **extra) -> dict:
    return dict(dict(
        preset="rin_cifar10", batch=32, device=device, compile=False, iters=3, warmup=1, precision_arg="all",
        runs=runs, command="python -m benchmarks.throughput --precision all", machine=["CPU: Fake CPU, 2 logical CPUs"],
        auto_reason="`auto` chose bf16 autocast: native", bf16_native=bf16_native, wall_s=123.0,
        load_before=(0.5, 0.4, 0.3), load_after=(1.5, 1.0, 0.5)), **extra)


def test_interleave_alternates_the_order_and_keeps_each_sides_seconds():
    calls = []
    timers = {name: (lambda name=name, t=t: calls.append(name) or t) for name, t in (("a", 1.0), ("b", 2.0))}
    seconds, extras = throughput.interleave(timers, warmup=1, iters=3, before_each=lambda: len(calls))
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warmup, then a b / b a / a b
    assert seconds == {"a": [1.0] * 3, "b": [2.0] * 3}
    assert extras == [2, 4, 6]  # before_each ran before each timed round


def test_report_renders_both_sides_ratios_and_goals():
    text = throughput.render(fake_report([fake_run("32-true", 1.08, 0.7), fake_run("bf16-mixed", 1.4, 0.4)]))
    assert "# Throughput: `rin_cifar10` beside the authors' RIN, batch 32, cpu" in text
    assert "- CPU: Fake CPU, 2 logical CPUs" in text and "`--precision all` ran fp32, bf16 autocast" in text
    assert "| ours | `cad.backbones.rin.RIN` | 31.28M | 8.59, 33.84 |" in text
    assert "`cad.models.networks.rin.RINClassCond`, eager | 30.95M |" in text and "`cad-diffusion` 1.2" in text
    assert "| fp32 | 0.200 | 4.32 | 4.00 | **1.08x** | 70% | 50% | 20.0 | 18.0 | 1.11x |" in text
    assert "| CPU fp32: ours/authors training >= 1.0x | 1.08x | yes |" in text
    assert "| CPU bf16 autocast: ours/authors training >= 1.6x | 1.40x | no |" in text
    assert "0.50, 0.40, 0.30" in text and "run took 123 s" in text


def test_report_marks_the_bf16_goal_not_applicable_where_bf16_is_emulated():
    text = throughput.render(fake_report([fake_run("bf16-mixed", 0.1, 0.01)], bf16_native=False))
    assert "| 0.10x | n/a: bf16 is emulated here |" in text


def test_gpu_goals_are_the_ratio_and_the_mfu():
    rows = throughput.goal_rows([fake_run("bf16-mixed", 1.7, 0.30), fake_run("32-true", 0.9, 0.2)], "cuda", True)
    assert [(m, ok) for _, m, ok in rows] == [("1.70x", "yes"), ("30%", "no")]


def test_worker_command_puts_the_isolated_dir_first():
    cmd = worker_command(Path("/somewhere/authors"), "rin_cifar10", 32, "cpu", "32-true", 2)
    assert cmd[1] == "-I"  # no PYTHONPATH, no cwd (our repository, with our `cad`) on sys.path
    code = cmd[cmd.index("-c") + 1]
    assert code.startswith("import sys; sys.path.insert(0, sys.argv[1]);")
    assert cmd[cmd.index("-c") + 2] == "/somewhere/authors"


FAKE_RIN = '''
import torch
from torch import nn


class RINClassCond(nn.Module):
    def __init__(self, **config):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.dummy = nn.Parameter(torch.ones(1, 1, dtype=torch.bool), requires_grad=False)

    def forward(self, batch):
        return batch["y"] * self.w, batch["previous_latents"] * self.w
'''


def fake_authors_package(root: Path, rin_source: str) -> Path:
    """A stand-in for cad-diffusion: its ``cad/__init__`` fails (the worker must not run it, as theirs imports
    diffusers), its RIN is ``rin_source``."""
    networks = root / "cad" / "models" / "networks"
    networks.mkdir(parents=True)
    (root / "cad" / "__init__.py").write_text("raise ImportError('cad/__init__.py must not run')\n")
    (root / "cad" / "models" / "__init__.py").write_text("")
    (networks / "__init__.py").write_text("")
    (networks / "rin.py").write_text(textwrap.dedent(rin_source))
    return root


def test_worker_runs_the_isolated_package_and_times_steps(tmp_path):
    root = fake_authors_package(tmp_path / "authors", FAKE_RIN)
    with AuthorsRIN(root, "rin_cifar10", 2, "cpu", "32-true", 1) as theirs:
        assert theirs.info["module_file"] == "cad/models/networks/rin.py"  # checked under root by the worker
        assert theirs.info["network"] == "cad.models.networks.rin.RINClassCond"
        assert theirs.info["params"] == 1 and theirs.info["version"] == "unknown"
        assert theirs.time("train") > 0 and theirs.time("sample") > 0


def test_worker_failure_is_raised_with_its_traceback(tmp_path):
    root = fake_authors_package(tmp_path / "authors", "raise RuntimeError('broken network module')\n")
    with pytest.raises(RuntimeError, match="broken network module"):
        AuthorsRIN(root, "rin_cifar10", 2, "cpu", "32-true", 1)


def test_a_failed_install_names_the_command_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(authors_rin.subprocess, "run",
                        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "No matching distribution"))
    target = tmp_path / "authors"
    with pytest.raises(RuntimeError, match="pip install --no-deps --target") as error:
        ensure_installed(target)
    assert str(target) in str(error.value) and "cad-diffusion==1.2" in str(error.value)
    assert "No matching distribution" in str(error.value)
    assert not target.exists() and not (tmp_path / "authors.partial").exists()


@pytest.mark.slow
@pytest.mark.skipif(not is_installed(cache_dir() / "authors"), reason="the authors' package is not in .cache/authors "
                    "(python -m benchmarks.throughput installs it)")
def test_the_authors_rin_matches_our_preset_in_size_and_flops():
    with torch.device("meta"):
        ours = count_parameters(build_backbone("rin_cifar10"))
    with AuthorsRIN(cache_dir() / "authors", "rin_cifar10", 2, "cpu", "32-true", 1) as theirs:
        assert theirs.info["version"] == "1.2"
        assert abs(theirs.info["params"] / ours - 1) < 0.02  # ours adds the coherence embedder
        per_image_gflop = theirs.info["flops_fwd"] / 2 / 1e9
        assert per_image_gflop == pytest.approx(8.59, abs=0.01)  # our latent-fed forward, FlopCounterMode
        assert theirs.time("train") > 0
