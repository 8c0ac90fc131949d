"""What the machine can do natively: the device a run uses, its precision, and its data-loader workers.

Precision ``auto`` means bf16 autocast only where bf16 arithmetic is native, else fp32:
- CUDA: bf16 when the GPU supports it (``torch.cuda.is_bf16_supported()``; Ampere and later).
- CPU: bf16 when torch dispatches to AVX-512 (or newer) kernels *and* the CPU has AVX512-BF16 or AMX tiles. On a CPU
  with only AVX2, bf16 autocast is emulated and 10-20x slower than fp32 (issue 9 measured, on an AVX2-only EPYC,
  the offline Inception 16x slower), so ``auto`` chooses fp32 there.
``torch.backends.cpu.get_cpu_capability()`` is what torch's kernels dispatch on; setting ``ATEN_CPU_CAPABILITY=avx2``
(with ``ONEDNN_MAX_CPU_ISA=AVX2`` for oneDNN) makes a bf16 machine behave like an AVX2-only one, and ``auto`` follows.

The resolved value (never ``auto``) is what a run's config records, so it is part of the run's identity: a run made in
bf16 is not reused as an fp32 one.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

PRECISIONS = ("auto", "32-true", "bf16-mixed")  # Lightning's names; "auto" is resolved before a run starts
ACCELERATORS = ("auto", "cpu", "gpu")
# get_cpu_capability() values whose kernels can use AVX512-BF16 / AMX instructions (torch names them so).
_BF16_CAPABLE_DISPATCH = ("AVX512", "AMX")


def accelerator_device_type(accelerator: str) -> str:
    """``cpu`` or ``cuda``: the device type a Lightning accelerator name means here (``auto``: CUDA if present)."""
    if accelerator not in ACCELERATORS:
        raise ValueError(f"unknown accelerator '{accelerator}'; valid: {', '.join(ACCELERATORS)}")
    if accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def cpu_bf16_native(capability: str | None = None, has_bf16_units: bool | None = None) -> bool:
    """True when this CPU runs bf16 arithmetic in hardware and torch's kernels use it (arguments: for tests)."""
    capability = torch.backends.cpu.get_cpu_capability() if capability is None else capability
    if has_bf16_units is None:
        has_bf16_units = bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return capability.upper().startswith(_BF16_CAPABLE_DISPATCH) and has_bf16_units


def bf16_native(device_type: str) -> bool:
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        return cpu_bf16_native()
    return False


def resolve_precision(precision: str, device_type: str) -> str:
    """``auto`` -> ``bf16-mixed`` where bf16 is native on ``device_type``, else ``32-true``; explicit values pass."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}'; valid: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    return "bf16-mixed" if bf16_native(device_type) else "32-true"


def autocast(device: torch.device | str, precision: str):
    """The autocast context of a resolved precision on ``device`` (a no-op for ``32-true``)."""
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")


def resolve_num_workers(num_workers: int | str, device_type: str, devices: int = 1) -> int:
    """Data-loader worker processes: ``auto`` is 0 on CPU (the cores are busy with the model and the data are
    in-memory arrays) and, on a GPU, the cores per device less one for the main process, at most 8."""
    if num_workers != "auto":
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"data.num_workers must be 'auto' or an integer >= 0, got {num_workers!r}")
        return num_workers
    if device_type == "cpu":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores // max(devices, 1) - 1))


@functools.cache
def cpu_info() -> dict[str, str]:
    """The first processor's entries of /proc/cpuinfo ({} where there is none)."""
    info: dict[str, str] = {}
    path = Path("/proc/cpuinfo")
    for line in path.read_text().splitlines() if path.is_file() else []:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def machine_name() -> str:
    """The CPU's model name, and the GPU's where there is one: what a wall time was measured on (done markers)."""
    cpu = cpu_info().get("model name") or "unknown CPU"
    cpu = f"{cpu} ({os.cpu_count()} logical CPUs, dispatch {torch.backends.cpu.get_cpu_capability()})"
    return f"{torch.cuda.get_device_name()}; {cpu}" if torch.cuda.is_available() else cpu


def describe() -> str:
    """One line naming the machine's compute: for table notes and benchmark reports."""
    cpu = f"CPU dispatch {torch.backends.cpu.get_cpu_capability()}, bf16 native: {cpu_bf16_native()}"
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (bf16 native: {bf16_native('cuda')}); {cpu}"
    return cpu
