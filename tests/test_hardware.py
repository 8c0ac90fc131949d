"""Precision, device and workers come from what the machine does natively (cad/hardware.py)."""
import pytest
import torch

from cad import hardware
from cad.experiment.config import ConfigError, resolve


@pytest.mark.parametrize("capability, units, native", [
    ("AVX2", True, False),       # bf16 instructions present but torch dispatches AVX2 kernels (ATEN_CPU_CAPABILITY)
    ("AVX2", False, False),      # an AVX2-only CPU: bf16 would be emulated, 10-20x slower
    ("DEFAULT", False, False),
    ("AVX512", False, False),    # AVX-512 without the BF16 extension
    ("AVX512", True, True),      # AVX512-BF16 / AMX
])
def test_cpu_bf16_is_native_only_with_bf16_units_and_kernels_that_use_them(capability, units, native):
    assert hardware.cpu_bf16_native(capability, units) is native


def test_auto_picks_fp32_on_a_cpu_without_native_bf16(monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert hardware.resolve_precision("auto", "cpu") == "32-true"
    cfg = resolve("smoke", "mnist", "cad", accelerator="cpu")
    assert (cfg.train.precision, cfg.sample.precision, cfg.evaluate.precision) == ("32-true",) * 3


def test_auto_picks_bf16_on_a_cpu_with_native_bf16(monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert hardware.resolve_precision("auto", "cpu") == "bf16-mixed"


def test_auto_picks_bf16_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert hardware.accelerator_device_type("auto") == "cuda"
    assert hardware.resolve_precision("auto", "cuda") == "bf16-mixed"
    cfg = resolve("smoke", "mnist", "cad", accelerator="gpu")
    assert cfg.train.precision == "bf16-mixed" and cfg.sample.precision == "bf16-mixed"
    assert cfg.data.num_workers >= 0


def test_an_explicit_precision_overrides_auto(monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    cfg = resolve("smoke", "mnist", "cad", ["train.precision=bf16-mixed"], accelerator="cpu")
    assert cfg.train.precision == "bf16-mixed" and cfg.sample.precision == "32-true"
    with pytest.raises(ConfigError, match="valid: auto, 32-true, bf16-mixed"):
        resolve("smoke", "mnist", "cad", ["train.precision=fp8"])


def test_precision_is_part_of_a_runs_identity_and_workers_are_not(monkeypatch):
    from cad.experiment.config import SAMPLE_KEYS, TRAIN_KEYS, config_hash
    fp32 = resolve("smoke", "mnist", "cad", ["train.precision=32-true"], accelerator="cpu")
    bf16 = resolve("smoke", "mnist", "cad", ["train.precision=bf16-mixed"], accelerator="cpu")
    more_workers = resolve("smoke", "mnist", "cad", ["train.precision=32-true", "data.num_workers=3"])
    assert config_hash(fp32, TRAIN_KEYS) != config_hash(bf16, TRAIN_KEYS)
    assert config_hash(fp32, TRAIN_KEYS + SAMPLE_KEYS) == config_hash(more_workers, TRAIN_KEYS + SAMPLE_KEYS)


def test_workers_auto_is_zero_on_cpu_and_follows_the_cores_on_a_gpu(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert hardware.resolve_num_workers("auto", "cpu") == 0
    assert hardware.resolve_num_workers("auto", "cuda", devices=1) == 8
    assert hardware.resolve_num_workers("auto", "cuda", devices=4) == 3
    assert hardware.resolve_num_workers(2, "cpu") == 2


def test_bf16_sampling_autocasts_the_network_and_returns_fp32():
    from cad.tasks.generate import make_denoiser
    from cad.conditioning import Condition

    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x, gamma, cond, self_cond=None):
            seen["autocast"] = torch.is_autocast_enabled("cpu")
            return torch.nn.functional.linear(x, torch.eye(x.shape[-1])), None

    cond = Condition(label=torch.zeros(2, dtype=torch.long))
    eps, _ = make_denoiser(Probe(), cond, 0.0, None, "bf16-mixed")(torch.randn(2, 4), torch.rand(2), None)
    assert seen["autocast"] and eps.dtype == torch.float32
    make_denoiser(Probe(), cond, 0.0, None, "32-true")(torch.randn(2, 4), torch.rand(2), None)
    assert not seen["autocast"]
