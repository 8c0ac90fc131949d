"""What every task's evaluation shares: the run's feature extractors and the FID / P / R / D / C over them."""
from __future__ import annotations

from typing import Callable

from omegaconf import DictConfig


def feature_extractors(cfg: DictConfig, device, domain: dict[str, Callable[[], object]] | None = None) -> list:
    """``evaluate.extractors`` in order: a registered one built on ``device`` (the offline Inception in the
    evaluation's precision), a task's own domain one (``domain``: name -> builder) as its builder makes it."""
    from benchmarks.features import build_extractor

    bf16 = cfg.evaluate.precision == "bf16-mixed"
    extractors = []
    for name in cfg.evaluate.extractors:
        if domain and name in domain:
            extractors.append(domain[name]())
        else:
            options = {"autocast_bf16": bf16} if name != "inception-v3-compat" else {}
            extractors.append(build_extractor(name, device=device, **options))
    return extractors


def evaluate_features(cfg: DictConfig, samples: dict, reference, extractors: list, *, progress: bool,
                      **extra) -> dict:
    """FID / P / R / D / C of ``samples`` against ``reference`` on each extractor, with the run's PRDC settings."""
    from benchmarks.evaluate import evaluate_samples

    return evaluate_samples(samples, reference=reference, extractors=extractors,
                            prdc_protocol=cfg.evaluate.prdc_protocol, nearest_k=cfg.evaluate.nearest_k,
                            batch_size=cfg.evaluate.batch_size, progress=progress, **extra)
