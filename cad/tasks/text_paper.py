"""The text task at the paper scale (issue 11; ``--scale paper``): what replaces the captioned canvases.

- Training data: image-caption shards (CC12M / LAION style WebDataset tars, cad.data.caption_shards) under
  ``data.shards`` (default ``$CAD_DATA/cc12m``), with the MetaCLIP H/14 image-text cosine of every pair precomputed
  once by ``python -m cad.data.score_shards`` (``data.shard_scores``, default
  ``<shards>/scores-ViT-H-14-quickgelu.npz``) and cut into the paper's 8 quantile bins; Filtered drops the 3 least
  coherent bins.
- Text: FLAN-T5-XL token states (``backbone.text_encoder``), encoded in the training step (``prepare``) on the
  accelerator, not in the data loader.
- Images: 256 x 256 (``data.resolution``) in the Stable Diffusion VAE's latent space (``backbone.latent_vae``,
  cad.backbones.latent_vae): the authors' cad_256 configuration.
- Evaluation: COCO-10K (cad.data.coco; ``data.coco``, default ``$CAD_DATA/coco``): sample i asks for the subset's
  caption i; FID / P / R / D / C on the Inception against the subset's images at the resolution; CLIPScore by OpenAI
  CLIP ViT-L/14 (``evaluate.clip_checkpoint``, a local open_clip weights file; the authors' torchmetrics model), never
  the MetaCLIP that made the coherence; the real images' CLIPScore beside it (the ceiling).

Paths are execution keys (cad.experiment.config.EXECUTION_KEYS): moving the data does not change a run's identity.
Files are checked when they are read (each reader's error names what is missing and how to make it), so a table
renders from finished runs on a machine without the data.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from torch.utils.data import Subset

from cad.data.train_set import TrainSetDataModule
from cad.experiment.config import ConfigError
from cad.tasks.evaluation import evaluate_features, feature_extractors

PAPER_DATASET = "cc12m"  # the registry's name for the paper-scale shards (cad.data.registry)
COCO_SUBSET = 10_000  # COCO-10K


def shard_paths(cfg: DictConfig) -> tuple[Path, Path]:
    """(shards root, scores file) of a run."""
    from cad.conditioning.clip_models import PAPER_COHERENCE_MODEL
    from cad.data.score_shards import default_out
    from cad.paths import data_dir

    root = Path(cfg.data.shards) if cfg.data.shards else data_dir() / PAPER_DATASET
    scores = Path(cfg.data.shard_scores) if cfg.data.shard_scores else default_out(root, PAPER_COHERENCE_MODEL)
    return root, scores


def coco_root(cfg: DictConfig) -> Path:
    from cad.paths import data_dir

    return Path(cfg.data.coco) if cfg.data.coco else data_dir() / "coco"


def validate_paper(cfg: DictConfig) -> None:
    """What the paper scale needs of the config (files are checked when read)."""
    if cfg.dataset != PAPER_DATASET:
        raise ConfigError(f"the text task's paper scale trains on image-caption shards: dataset {cfg.dataset!r}; "
                          f"valid: {PAPER_DATASET} (shards under data.shards)")
    if not cfg.backbone.latent_vae:
        raise ConfigError("backbone.latent_vae is null: the paper scale trains in the Stable Diffusion VAE's latent "
                          "space; valid: a VAE or Stable Diffusion folder (or a hub name in the local cache)")
    resolution = cfg.data.resolution
    if not isinstance(resolution, int) or resolution <= 0 or resolution % 8:
        raise ConfigError(f"data.resolution={resolution}: the paper scale needs the image side, a multiple of 8 (the "
                          f"VAE's downsampling); valid: e.g. 256 (the paper's)")
    if cfg.sample.num_samples > COCO_SUBSET:
        raise ConfigError(f"sample.num_samples={cfg.sample.num_samples}: COCO-10K has {COCO_SUBSET} captions; "
                          f"valid: at most that")


class ShardDataModule(TrainSetDataModule):
    """Batches of {image (3, R, R) in [-1, 1], caption (str), coherence (bin / 7), ...}; the step encodes captions.
    Web captions: no synthetic noise for the table's notes to summarise."""


def paper_datamodule(cfg: DictConfig, dropped_bins: int | None) -> ShardDataModule:
    """The shards with their coherence; the Filtered view (``dropped_bins`` least coherent bins out) when given."""
    from cad.data.caption_shards import CaptionShards
    from cad.data.text_data import filtered_indices

    root, scores = shard_paths(cfg)
    shards = CaptionShards(root, scores, resolution=cfg.data.resolution)
    train = shards if dropped_bins is None else Subset(shards, filtered_indices(shards.coherence,
                                                                                dropped=dropped_bins))
    if cfg.data.subset is not None:
        keep = np.sort(np.random.default_rng(0).permutation(len(train))[:cfg.data.subset])
        train = Subset(train, keep.tolist())
    return ShardDataModule(train, batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers)


@functools.lru_cache(maxsize=2)
def coco_subset(root: str, resolution: int, size: int):
    from cad.data.coco import CocoEval

    return CocoEval(root, resolution=resolution, size=size)


def paper_requests(cfg: DictConfig, num_samples: int) -> list[str]:
    """The first ``num_samples`` captions of COCO-10K."""
    return coco_subset(str(coco_root(cfg)), cfg.data.resolution, COCO_SUBSET).captions[:num_samples]


def paper_evaluate(cfg: DictConfig, samples_path: Path, *, device, progress: bool) -> dict:
    """FID / P / R / D / C on ``evaluate.extractors`` against the requested captions' COCO images, CLIPScore of the
    samples and of those images by the CLIPScore model (ViT-L/14)."""
    from benchmarks.evaluate import ReferenceSet
    from benchmarks.samples import load_samples
    from cad.conditioning.clip_models import PAPER_CLIPSCORE_MODEL, clip_score, load_clip

    coco = coco_subset(str(coco_root(cfg)), cfg.data.resolution, COCO_SUBSET)
    samples = load_samples(samples_path)
    n = len(samples["images"])

    @functools.cache  # read once: the reference features (when not cached) and the real-image CLIPScore both need it
    def real() -> np.ndarray:
        return np.stack([coco.uint8_image(i) for i in range(n)])

    reference = ReferenceSet(coco.name, "val", cfg.data.resolution, n, real)
    metrics = evaluate_features(cfg, samples, reference, feature_extractors(cfg, device), progress=progress)
    clip = load_clip(PAPER_CLIPSCORE_MODEL, cfg.evaluate.clip_checkpoint, device=device)
    captions = [str(c) for c in samples["captions"]]
    metrics["clip_score"] = clip_score(clip, samples["images"], captions)
    metrics["clip_score_real"] = clip_score(clip, real(), captions)
    metrics["meta"]["clip_score_model"] = clip.name
    return metrics

