"""The semantic-map task at the paper scale (Figure 6(b), issue 12; ``--scale paper``): ControlNet over Stable Diffusion
on ADE20K, what replaces the two-object canvases of the cpu and smoke scales.

- Model: cad.tasks.map_conditional with backbone ``sd_controlnet`` over the local Stable Diffusion 1.x folder
  ``backbone.sd_weights`` (default ``$CAD_DATA/stable-diffusion-v1-5``): its UNet (frozen), its text encoder (frozen,
  captions -> states) and its VAE (frozen; the diffusion runs on its latents, ``sample_shape`` / ``to_images``).
- Training data: ADE20K's training split (cad.data.ade20k; ``data.ade20k``, default ``$CAD_DATA/ade20k``) at
  ``data.resolution`` x ``data.resolution``; the condition is the map a segmenter predicted for the image
  (``data.ade20k_predicted``, default ``<root>/predicted``), the coherence map for CAD its per-pixel confidence
  (``data.ade20k_confidence``, default ``<root>/confidence``), the text the image's caption (``data.ade20k_captions``,
  default ``<root>/captions.json``; the paper: BLIP-2).
- Label space (our choice; the paper is silent): the predicted maps use ADE20K's labels (0 = no class, 1..150), since
  the maps asked for at evaluation are ADE20K's annotations: the control image has 151 channels. The paper's
  segmenter is a MaskFormer trained on COCO; map its classes onto ADE20K's before saving its predictions.
- Evaluation (the paper evaluates on ADE20K: its validation split, 2000 images): sample i asks for validation image
  i's exact annotation, with its caption; ``sample.coherence_map`` chooses the coherence map: ``uniform``
  (``sample.coherence`` everywhere), ``canny`` (0 on the annotation's class boundaries), ``confidence`` (the stored
  confidence of validation image i) or ``square`` (uniform with a centred square of 0, 3/8 of the side: the cpu
  scale's 12 of 32 rows). FID / P / R / D / C on the Inception against the validation images at the resolution.
- mIoU: by a segmentation network the user provides (our choice of format, the paper names none):
  ``evaluate.segmenter`` (default ``<root>/segmenter.pt``), a TorchScript file mapping uint8 (B, 3, R, R) RGB images
  to (B, 150, h, w) logits over ADE20K's classes (channel k: class k + 1); the module does its own normalisation;
  logits of a smaller size are upsampled bilinearly to R. mIoU over the 150 classes, pixels labelled 0 ignored
  (ADE20K's benchmark protocol), by benchmarks.metrics.mean_iou; ``miou_real`` is that segmenter on the real
  validation images against their annotations (its ceiling). Use an ADE20K segmenter (e.g. a traced SegFormer or
  UperNet), never the one that made the training maps.

Paths are execution keys (cad.experiment.config.EXECUTION_KEYS): moving the files does not change a run's identity.
They are checked when read (each missing one a ConfigError naming it and the key to set), not by ``validate``, so a
table renders from finished runs on a machine without the data.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from cad.conditioning import Condition
from cad.conditioning.coherence_maps import canny_coherence, square_coherence
from cad.data.ade20k import ADE20K_CLASSES
from cad.data.train_set import TrainSetDataModule
from cad.experiment.config import ConfigError
from cad.tasks.evaluation import evaluate_features, feature_extractors

PAPER_DATASET = "ade20k"  # the registry's name (cad.data.registry)
SD_FOLDER = "stable-diffusion-v1-5"  # default folder name under $CAD_DATA
SQUARE_SHARE = 3 / 8  # the ``square`` coherence map's side, as a share of the image side
MAP_CHANNELS = ADE20K_CLASSES + 1  # the control image: channel 0 "no class", then ADE20K's 150 classes
NOISE_ITEMS = 200  # training images whose predicted maps are compared with their annotations (the table's note)


@dataclass(frozen=True)
class PaperPaths:
    sd: Path
    root: Path
    captions: Path
    predicted: Path
    confidence: Path
    segmenter: Path


def paper_paths(cfg: DictConfig) -> PaperPaths:
    """The run's files: the configured paths, or their defaults under ``$CAD_DATA``."""
    from cad.paths import data_dir

    d = cfg.data
    root = Path(d.ade20k) if d.ade20k else data_dir() / PAPER_DATASET
    return PaperPaths(
        sd=Path(cfg.backbone.sd_weights) if cfg.backbone.sd_weights else data_dir() / SD_FOLDER, root=root,
        captions=Path(d.ade20k_captions) if d.ade20k_captions else root / "captions.json",
        predicted=Path(d.ade20k_predicted) if d.ade20k_predicted else root / "predicted",
        confidence=Path(d.ade20k_confidence) if d.ade20k_confidence else root / "confidence",
        segmenter=Path(cfg.evaluate.segmenter) if cfg.evaluate.segmenter else root / "segmenter.pt")


def check_paths(cfg: DictConfig, *needs: str) -> PaperPaths:
    """The run's paths, each of ``needs`` ("sd", "data", "segmenter") checked to exist: a ConfigError names the
    missing one, what it should hold and the key to set."""
    from cad.backbones.sd_controlnet import SD_HELP
    from cad.data.ade20k import HELP, ADE20KError, ade20k_root

    paths = paper_paths(cfg)
    wanted = []
    if "sd" in needs:
        wanted.append((paths.sd / "unet" / "config.json", "backbone.sd_weights", f"the Stable Diffusion folder: "
                       f"{SD_HELP}"))
    if "data" in needs:
        try:
            ade20k_root(paths.root)
        except ADE20KError as err:
            raise ConfigError(f"{err}; set data.ade20k=<folder>") from None
        wanted += [(paths.predicted, "data.ade20k_predicted", f"the predicted maps: {HELP['predicted map']}"),
                   (paths.confidence, "data.ade20k_confidence", f"the confidences: {HELP['confidence']}"),
                   (paths.captions, "data.ade20k_captions", f"the captions: {HELP['caption']}")]
    if "segmenter" in needs:
        wanted.append((paths.segmenter, "evaluate.segmenter", "the mIoU segmenter: a TorchScript file mapping uint8 "
                       "(B, 3, R, R) images to (B, 150, h, w) ADE20K logits (cad/tasks/map_paper.py)"))
    for path, key, what in wanted:
        if not path.exists():
            raise ConfigError(f"{path} not found ({what}); set {key}=<path>")
    return paths


def validate_paper(cfg: DictConfig) -> None:
    """What the paper scale needs of the config (files are checked when read: ``check_paths``)."""
    from benchmarks.features import EXTRACTORS
    from cad.backbones.sd_controlnet import SD_CONTROLNET

    if cfg.dataset != PAPER_DATASET:
        raise ConfigError(f"the map task's paper scale trains on ADE20K: dataset {cfg.dataset!r}; valid: "
                          f"{PAPER_DATASET} (files under data.ade20k)")
    if cfg.backbone.preset != SD_CONTROLNET:
        raise ConfigError(f"backbone.preset={cfg.backbone.preset}: the paper scale's model is a ControlNet over Stable "
                          f"Diffusion; valid: {SD_CONTROLNET}")
    size = cfg.data.resolution
    if not isinstance(size, int) or size < 64 or size % 64:
        raise ConfigError(f"data.resolution={size!r}: valid: a multiple of 64 (SD's VAE divides by 8, its UNet by "
                          f"8 more), e.g. 512")
    if cfg.sample.clip_x0:
        raise ConfigError("sample.clip_x0=true clips latents to [-1, 1], which they are not; valid: false")
    for name in cfg.evaluate.extractors:
        if name not in EXTRACTORS:
            raise ConfigError(f"evaluate.extractors: {name!r} is not valid at the paper scale (the mIoU segmenter "
                              f"gives no features); valid: {', '.join(sorted(EXTRACTORS))}")


@functools.lru_cache(maxsize=4)
def _split(root: Path, split: str, resolution: int, predicted: Path, confidence: Path, captions: Path):
    from cad.data.ade20k import ADE20K

    return ADE20K(root, split, resolution=resolution, predicted_dir=predicted, confidence_dir=confidence,
                  captions_file=captions)


def ade20k_split(cfg: DictConfig, split: str):
    """ADE20K's ``split`` ("train" or "validation") at the run's resolution, read once per process."""
    p = check_paths(cfg, "data")
    return _split(p.root, split, int(cfg.data.resolution), p.predicted, p.confidence, p.captions)


class ADE20KDataModule(TrainSetDataModule):
    """The training split for ``StepDataModule``; ``noise_stats`` (the table's note) measures how far the predicted
    maps are from the annotations: pixel accuracy on the first ``NOISE_ITEMS`` images, pixels labelled 0 left out."""

    @functools.cached_property
    def noise_stats(self) -> dict:
        items = [self.train_set[i] for i in range(min(NOISE_ITEMS, len(self.train_set)))]
        truth, pred = torch.stack([it["annotation"] for it in items]), torch.stack([it["map"] for it in items])
        labelled = truth > 0
        return {"protocol": "maps predicted by the user's segmenter (the paper: MaskFormer on COCO)",
                "temperature": None, "accuracy_label": "pixel accuracy against the annotations",
                "relabel_accuracy": float((pred == truth)[labelled].float().mean()) if labelled.any() else 0.0}


def build_datamodule(cfg: DictConfig) -> ADE20KDataModule:
    return ADE20KDataModule(ade20k_split(cfg, "train"), batch_size=cfg.data.batch_size,
                            num_workers=cfg.data.num_workers)


def eval_requests(cfg: DictConfig, num_samples: int) -> list[int]:
    """Validation images 0..num_samples-1; more than the split holds is an error."""
    available = len(ade20k_split(cfg, "validation"))
    if num_samples > available:
        raise ConfigError(f"sample.num_samples={num_samples}: ADE20K's validation split holds {available} images; "
                          f"valid: at most {available}")
    return list(range(num_samples))


def coherence_maps(cfg: DictConfig, items: list[dict]) -> np.ndarray:
    """(B, R, R) float32: the coherence maps ``sample.coherence_map`` asks for, of the requested items."""
    kind, value = cfg.sample.coherence_map, float(cfg.sample.coherence)
    if kind == "canny":
        return np.stack([canny_coherence(it["annotation"].numpy()) for it in items])
    if kind == "confidence":
        return np.stack([it["coherence_map"][0].numpy() for it in items])
    size = int(cfg.data.resolution)
    uniform = np.full((len(items), size, size), value, dtype=np.float32)
    if kind == "square":
        side = round(size * SQUARE_SHARE)
        return np.stack([square_coherence(u, (size - side) // 2, (size - side) // 2, side, 0.0) for u in uniform])
    return uniform


@functools.lru_cache(maxsize=1)
def _text_encoder(folder: Path):
    from cad.conditioning.sd_text import load_sd_text_encoder

    return load_sd_text_encoder(folder)


def paper_condition(indices: list[int], device: torch.device, *, cfg: DictConfig, use_coherence: bool) -> Condition:
    """Validation images' exact annotations (one-hot, 151 channels), their captions' SD text states and, for CAD,
    the coherence maps of ``sample.coherence_map``."""
    val = ade20k_split(cfg, "validation")
    items = [val[int(i)] for i in indices]
    maps = torch.stack([it["annotation"] for it in items]).to(device)
    encoder = _text_encoder(check_paths(cfg, "sd").sd).to(device)
    cond = Condition(spatial_map=F.one_hot(maps, MAP_CHANNELS).permute(0, 3, 1, 2).float(),
                     tokens=encoder([it["caption"] for it in items]))
    if not use_coherence:
        return cond
    return cond.replace(coherence_map=torch.from_numpy(coherence_maps(cfg, items))[:, None].to(device))


def annotations(cfg: DictConfig, indices: list[int]) -> np.ndarray:
    val = ade20k_split(cfg, "validation")
    return np.stack([val[int(i)]["annotation"].numpy() for i in indices])


def load_segmenter(path: Path, device: torch.device | str):
    """The user's TorchScript mIoU segmenter, offline, in eval mode on ``device``."""
    try:
        return torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"evaluate.segmenter={path}: not a TorchScript file ({err}); save one with "
                          f"torch.jit.save(torch.jit.trace(model, example), path)") from None


@torch.no_grad()
def segment(segmenter, images_uint8: torch.Tensor, device: torch.device | str, batch_size: int = 32) -> np.ndarray:
    """(N, R, R) ADE20K labels (1..150) the segmenter predicts for uint8 NCHW images, in batches."""
    out = []
    for start in range(0, len(images_uint8), batch_size):
        batch = images_uint8[start:start + batch_size].to(device)
        logits = segmenter(batch)
        if logits.ndim != 4 or logits.shape[1] != ADE20K_CLASSES:
            raise ValueError(f"the mIoU segmenter returned {tuple(logits.shape)}; it must return (B, "
                             f"{ADE20K_CLASSES}, h, w) logits over ADE20K's classes")
        if logits.shape[2:] != batch.shape[2:]:
            logits = F.interpolate(logits.float(), size=batch.shape[2:], mode="bilinear", align_corners=False)
        out.append((logits.argmax(1) + 1).cpu())
    return torch.cat(out).numpy()


def ade20k_miou(pred: np.ndarray, target: np.ndarray) -> float:
    """mIoU in percent over ADE20K's 150 classes, pixels labelled 0 (other) ignored."""
    from benchmarks.metrics import mean_iou

    return 100 * mean_iou(pred, target, num_classes=MAP_CHANNELS, ignore_index=0)


def evaluate_paper(cfg: DictConfig, samples_path: Path, *, device: torch.device | str, progress: bool) -> dict:
    """FID / P / R / D / C against the validation images the run's reference holds; mIoU of the user's segmenter on the
    samples against the requested annotations, and on the real images (``miou_real``)."""
    from benchmarks.evaluate import ReferenceSet
    from benchmarks.samples import load_samples

    paths = check_paths(cfg, "data", "segmenter")
    val, size = ade20k_split(cfg, "validation"), int(cfg.data.resolution)
    samples = load_samples(samples_path)
    requests = samples["requests"].tolist()
    n = min(cfg.evaluate.reference_size, len(val))
    real = functools.cache(lambda: np.stack([((val[i]["image"] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
                                             .numpy() for i in range(n)]))  # NCHW, each image read once
    reference = ReferenceSet(f"ade20k-{size}", "validation", size, n,
                             lambda: np.ascontiguousarray(real().transpose(0, 2, 3, 1)))
    metrics = evaluate_features(cfg, samples, reference, feature_extractors(cfg, device), progress=progress)
    segmenter = load_segmenter(paths.segmenter, device)
    images = torch.from_numpy(samples["images"]).permute(0, 3, 1, 2)
    metrics["miou"] = ade20k_miou(segment(segmenter, images, device), annotations(cfg, requests))
    metrics["miou_real"] = ade20k_miou(segment(segmenter, torch.from_numpy(real()), device),
                                       annotations(cfg, list(range(n))))
    metrics["meta"]["miou_segmenter"] = f"{paths.segmenter.name} (evaluate.segmenter, TorchScript, ADE20K classes)"
    return metrics


def map_colours(maps: np.ndarray) -> np.ndarray:
    """(N, H, W) labels -> (N, H, W, 3) uint8: a fixed colour per class, 0 (no class) black, for sample grids."""
    palette = (np.arange(256)[:, None] * np.array([53, 97, 193])) % 200 + 55
    palette[0] = 0
    return palette[maps].astype(np.uint8)
