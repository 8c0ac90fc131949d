"""The authors' RIN (PyPI ``cad-diffusion``), installed apart from our venv and timed in a subprocess beside ours.

Their top-level package is named ``cad`` like ours, so it never enters this process: ``ensure_installed`` puts it in
its own directory (``pip install --no-deps --target``), and :class:`AuthorsRIN` runs their network in a child Python
whose ``sys.path`` starts with that directory. The child takes one command per line on stdin ("time one training
step", "time one sampling step") and answers one JSON line, so the caller can interleave their steps with ours.

What ``cad-diffusion==1.2`` holds (sdist, Requires-Dist: torch, torchvision, einops, transformers, diffusers,
huggingface_hub>=0.23): ``cad.models.networks.rin`` with ``RINClassCond`` (class-conditional RIN: time token and one
label token, no coherence token), ``RINTextCond`` and ``CADRINTextCond`` (text; the latter with the coherence
embedder), U-Nets in ``cad.models.networks.unet``/``ca_unet``, the Lightning module, losses, samplers and Hydra
configs. Their ``cad/__init__.py`` imports the text-to-image pipeline (diffusers, transformers, huggingface_hub);
the RIN needs none of it, only einops, so the child registers ``cad`` as a bare package (no ``__init__`` run) and
imports ``cad.models.networks.rin`` alone.

The training step is the same as ours (``benchmarks.throughput``): a no-grad self-conditioning forward with zero
previous latents (their ``DDPMPrecond``), a forward fed the latents, backward of the MSE on eps, a fused AdamW step.
(Their ``DDPMLoss.latent_self_cond`` runs the first forward with grad enabled, "because of torch.amp bug"; doing it
under no_grad as we do can only make their step faster.)
"""
from __future__ import annotations

import importlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import types
from importlib.metadata import distributions
from pathlib import Path

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parent.parent
AUTHORS_DIST, AUTHORS_VERSION = "cad-diffusion", "1.2"
# Their RIN imports einops, which our venv lacks; the rest of their Requires-Dist serves the text pipeline only.
EXTRA_REQUIREMENTS = ("einops==0.8.2",)
# Their setup.py imports pkg_resources, which setuptools 81 removed: the build needs an older setuptools.
BUILD_CONSTRAINT = "setuptools<81"
NETWORK_MODULE, NETWORK_CLASS = "cad.models.networks.rin", "RINClassCond"

# cad/configs/model/network/rin.yaml (the network of their model/class_cond.yaml), with data_size, label_dim and
# num_cond_tokens from the dataset config; the per-dataset overrides change only what they name.
_RIN_YAML = dict(
    data_dim=256, num_input_channels=3, num_latents=128, latents_dim=512, num_processing_layers=2, num_blocks=3,
    path_size=2, read_write_heads=8, compute_heads=16, latent_mlp_multiplier=4, data_mlp_multiplier=2,
    rw_dropout=0.0, compute_dropout=0.1, rw_stochastic_depth=0, compute_stochastic_depth=0.1, time_scaling=1000.0,
    noise_embedding_type="positional", data_positional_embedding_type="learned", weight_init="xavier_uniform",
    bias_init="zeros", use_cond_token=True, use_biases=True, concat_cond_token_to_latents=True,
    use_cond_rin_block=False, use_16_bits_layer_norm=False,
)
AUTHORS_CONFIGS: dict[str, tuple[str, dict]] = {
    "rin_cifar10": (
        "cad/configs/model/network/rin.yaml + data/dataset/cifar10.yaml (overrides/cifar10_rin.yaml: optimizer only)",
        dict(_RIN_YAML, data_size=32, label_dim=10, num_cond_tokens=1),
    ),
    "rin_imagenet64": (
        "cad/configs/model/network/rin.yaml + data/dataset/imagenet.yaml + overrides/imagenet_64_rin.yaml",
        dict(_RIN_YAML, data_size=64, label_dim=1000, num_cond_tokens=1, data_dim=512, latents_dim=768,
             num_processing_layers=4, num_blocks=4, path_size=8, read_write_heads=16, data_mlp_multiplier=4,
             compute_dropout=0.0, rw_stochastic_depth=0, compute_stochastic_depth=0),
    ),
}


def is_installed(target: Path) -> bool:
    return ((target / f"cad_diffusion-{AUTHORS_VERSION}.dist-info").is_dir()
            and (target / "cad/models/networks/rin.py").is_file() and (target / "einops/__init__.py").is_file())


def install_command(target: Path, constraint_file: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), "--build-constraint",
            str(constraint_file), f"{AUTHORS_DIST}=={AUTHORS_VERSION}", *EXTRA_REQUIREMENTS]


def ensure_installed(target: Path) -> Path:
    """Install the authors' package (and einops) into ``target`` unless it is there; a half install never stays."""
    target = Path(target)
    if is_installed(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    constraint = target.parent / "authors-build-constraint.txt"
    constraint.write_text(BUILD_CONSTRAINT + "\n")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    print(f"installing {AUTHORS_DIST}=={AUTHORS_VERSION} into {target} (isolated from our venv) ...", flush=True)
    proc = subprocess.run(install_command(partial, constraint), capture_output=True, text=True)
    if proc.returncode != 0 or not is_installed(partial):
        shutil.rmtree(partial, ignore_errors=True)
        tail = (proc.stdout + proc.stderr).strip()[-1500:]
        raise RuntimeError(
            f"could not install the authors' package {AUTHORS_DIST}=={AUTHORS_VERSION} (pip exit {proc.returncode}); "
            f"PyPI must be reachable. Install it yourself with\n  {shlex.join(install_command(target, constraint))}\n"
            f"pip said:\n{tail}")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


# Run by the child: the isolated directory first on sys.path, our repository last (for benchmarks.authors_rin).
_BOOTSTRAP = ("import sys; sys.path.insert(0, sys.argv[1]); sys.path.append(sys.argv[2]); "
              "from benchmarks.authors_rin import worker; worker(sys.argv[1], sys.argv[3:])")


def worker_command(authors_dir: Path, preset: str, batch: int, device: str, precision: str, threads: int) -> list[str]:
    """``python -I -c BOOTSTRAP <authors_dir> <repo> ...``: -I keeps PYTHONPATH and the cwd off sys.path."""
    return [sys.executable, "-I", "-c", _BOOTSTRAP, str(Path(authors_dir).resolve()), str(REPO_ROOT), preset,
            str(batch), device, precision, str(threads)]


class AuthorsRIN:
    """The authors' network for ``preset`` in a child process; ``time(step)`` runs one step there, in seconds."""

    def __init__(self, authors_dir: Path, preset: str, batch: int, device: str, precision: str, threads: int):
        if preset not in AUTHORS_CONFIGS:
            raise ValueError(f"no authors' configuration for preset '{preset}'; have: {', '.join(AUTHORS_CONFIGS)}")
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen(
            worker_command(authors_dir, preset, batch, device, precision, threads),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, cwd=REPO_ROOT)
        self.info = self._receive()  # params, flops_fwd, module_file, network, version, config_source

    def _receive(self) -> dict:
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait()
            self._stderr.seek(0)
            raise RuntimeError(f"the authors' worker exited ({self._proc.returncode}):\n{self._stderr.read()[-3000:]}")
        msg = json.loads(line)
        if "error" in msg:
            raise RuntimeError(f"the authors' worker failed:\n{msg['error']}")
        return msg

    def time(self, step: str) -> float:
        self._proc.stdin.write(json.dumps({"step": step}) + "\n")
        self._proc.stdin.flush()
        return self._receive()["seconds"]

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._stderr.close()

    def __enter__(self) -> "AuthorsRIN":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _import_network(authors_dir: str):
    """Their network class, from ``authors_dir`` only: ``cad`` is registered as a bare package rooted there."""
    package = types.ModuleType("cad")
    package.__path__ = [os.path.join(authors_dir, "cad")]
    sys.modules["cad"] = package
    module = importlib.import_module(NETWORK_MODULE)
    if not os.path.realpath(module.__file__).startswith(os.path.realpath(authors_dir) + os.sep):
        raise ImportError(f"{NETWORK_MODULE} came from {module.__file__}, not from {authors_dir}")
    return module, getattr(module, NETWORK_CLASS)


def worker(authors_dir: str, argv: list[str]) -> None:
    """The child's main loop (see the module docstring); the protocol goes to the original stdout only."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything their code prints goes to stderr
    try:
        preset, batch, device_name, precision, threads = argv[0], int(argv[1]), argv[2], argv[3], int(argv[4])
        torch.set_num_threads(threads)
        device = torch.device(device_name)
        module, network_class = _import_network(authors_dir)
        source, config = AUTHORS_CONFIGS[preset]
        torch.manual_seed(0)
        net = network_class(**config).to(device)
        step, info = _steps(net, config, batch, device, precision)
        versions = [d.version for d in distributions(path=[authors_dir]) if d.metadata["Name"] == AUTHORS_DIST]
        protocol.write(json.dumps(dict(
            info, module_file=os.path.relpath(module.__file__, authors_dir), config_source=source,
            network=f"{NETWORK_MODULE}.{NETWORK_CLASS}", version=versions[0] if versions else "unknown",
        )) + "\n")
        for line in sys.stdin:
            protocol.write(json.dumps({"seconds": timed(step[json.loads(line)["step"]], device)}) + "\n")
    except Exception:  # noqa: BLE001 - reported to the parent, which raises it
        protocol.write(json.dumps({"error": traceback.format_exc()}) + "\n")
        sys.exit(1)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    """Seconds ``fn()`` takes on ``device`` (queued CUDA work included)."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def self_conditioned_flops(forward) -> dict[str, int]:
    """FLOPs (matmuls and attention, ``FlopCounterMode``) of ``forward(None)``, the first forward of a training step,
    and of ``forward(latents)`` fed its latents: ``flops_fwd`` (one sampling step) and ``flops_train`` (the two
    forwards plus a backward counted as 2 x forward). ``forward(latents_or_None)`` returns the new latents."""
    from torch.utils.flop_counter import FlopCounterMode

    counts, latents = [], None
    for _ in range(2):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            latents = forward(latents)
        counts.append(counter.get_total_flops())
    return dict(flops_fwd=counts[1], flops_train=counts[0] + 3 * counts[1])


def noisy_batch(batch: int, channels: int, size: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """(x_t, eps, gamma) drawn from ``g``: both sides draw the same batch from a generator seeded 0."""
    shape = (batch, channels, size, size)
    x0, eps = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    gamma = torch.rand(batch, generator=g)
    return gamma.sqrt()[:, None, None, None] * x0 + (1 - gamma).sqrt()[:, None, None, None] * eps, eps, gamma


def _steps(net: torch.nn.Module, config: dict, batch: int, device: torch.device, precision: str):
    """Their batch dict and the training / sampling steps, timed by :func:`worker`; and params + FLOPs."""
    g = torch.Generator().manual_seed(0)
    x_t, eps, gamma = noisy_batch(batch, config["num_input_channels"], config["data_size"], g)
    label = F.one_hot(torch.randint(0, config["label_dim"], (batch,), generator=g), config["label_dim"]).float()
    zeros = torch.zeros(batch, config["num_latents"], config["latents_dim"])  # their DDPMPrecond's default
    inputs = {k: v.to(device) for k, v in dict(y=x_t, gamma=gamma, label=label, previous_latents=zeros).items()}
    eps = eps.to(device)
    params = [p for p in net.parameters() if p.requires_grad]  # their bool attention-mask dummies are frozen
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=True)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")

    def train_step():
        net.train()
        with autocast():
            with torch.no_grad():
                _, latents = net(inputs)
            eps_hat, _ = net({**inputs, "previous_latents": latents})
            loss = F.mse_loss(eps_hat.float(), eps)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    state = {"latents": inputs["previous_latents"]}

    @torch.no_grad()
    def sample_step():
        net.eval()
        with autocast():
            _, state["latents"] = net({**inputs, "previous_latents": state["latents"]})

    net.eval()
    flops = self_conditioned_flops(lambda z: net(inputs if z is None else {**inputs, "previous_latents": z})[1])
    info = dict(params=sum(p.numel() for p in params), **flops)
    return {"train": train_step, "sample": sample_step}, info
