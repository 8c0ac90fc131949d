"""Where the pipeline meets the data side (cad.data) and the benchmark harness (benchmarks): one function per need,
so the stages read as the paper's protocol and not as plumbing."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from benchmarks.evaluate import ReferenceSet, evaluate_samples
from benchmarks.features import DomainExtractor, build_inception
from benchmarks.samples import load_samples
from benchmarks.tables import get_spec as get_table_spec, render_table, write_table as _write_table
from cad.data import build_datamodule
from cad.data.classifiers import classifier_test_accuracy, load_classifier
from cad.data.noise import NoiseConfig
from cad.data.registry import get_spec as get_dataset_spec

# Which block of the paper's Table 5(d) a dataset fills (an offline stand-in fills its paper dataset's block).
TABLE5D_BLOCKS = {"fashion_mnist": "cifar10", "cifar10": "cifar10", "mnist": "imagenet", "imagenet64": "imagenet"}
PRETTY = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar10": "CIFAR-10", "imagenet64": "ImageNet-64"}


@dataclass(frozen=True)
class DatasetInfo:
    image_shape: tuple[int, int, int]
    num_classes: int


def dataset_info(cfg: DictConfig) -> DatasetInfo:
    spec = get_dataset_spec(cfg.dataset)
    return DatasetInfo(tuple(spec.image_shape), spec.num_classes)


def noise_config(cfg: DictConfig) -> NoiseConfig:
    return NoiseConfig(**OmegaConf.to_container(cfg.data.noise), classifier_scale=cfg.scale)


def datamodule(cfg: DictConfig, device: str | torch.device = "cpu"):
    """The dataset module of a run: the method's labels (clean or noisy), its Filtered view, the scale's subset;
    its noise classifier on ``device``."""
    method = cfg.method
    return build_datamodule(cfg.dataset, batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers,
                            labels=method.labels, noise=noise_config(cfg) if method.labels == "noisy" else None,
                            filter_threshold=method.filter_threshold, subset=cfg.data.subset, seed=cfg.train.seed,
                            device=device)


def noise_summary(stats: dict) -> dict:
    """What a table says about a run's label noise, from the noisy labels' statistics: the protocol, its temperature
    (None where the protocol has none) and the measured relabelling accuracy. The train stage writes it to the run's
    ``noise.json``, so a table renders from files and never rebuilds the labels."""
    return {"protocol": stats.get("protocol"), "temperature": stats.get("temperature"),
            "relabel_accuracy": stats.get("relabel_accuracy")}


def classifier_preprocess(x_uint8: torch.Tensor) -> torch.Tensor:
    """The suite's classifiers take images in [-1, 1], like the diffusion models."""
    return x_uint8.float() / 127.5 - 1.0


def extractors(cfg: DictConfig, device: str | torch.device = "cpu") -> tuple[list, DomainExtractor]:
    """The feature extractors of ``evaluate.extractors`` in order (the first gives the headline metrics) and the
    evaluation classifier, which is never the network that made the label noise; all on ``device``, the Inception
    in ``evaluate.precision``."""
    classifier = DomainExtractor(load_classifier(cfg.dataset, "eval", scale=cfg.scale, device=device),
                                 f"{cfg.dataset}-eval-classifier-{cfg.scale}", preprocess=classifier_preprocess,
                                 with_logits=True, tag="domain", device=device)
    bf16 = cfg.evaluate.precision == "bf16-mixed"
    built = {"inception": lambda: build_inception(autocast_bf16=bf16, device=device),
             "classifier": lambda: classifier}
    unknown = [e for e in cfg.evaluate.extractors if e not in built]
    if unknown:
        raise ValueError(f"evaluate.extractors: unknown {unknown}; valid: {', '.join(built)}")
    return [built[name]() for name in cfg.evaluate.extractors], classifier


def evaluate(cfg: DictConfig, samples_path: Path, *, progress: bool = True, device: str | torch.device = "cpu") -> dict:
    module = build_datamodule(cfg.dataset, batch_size=1)
    test = module.splits["test"]
    n = min(cfg.evaluate.reference_size, len(test))
    reference = ReferenceSet(cfg.dataset, "test", test.images.shape[-1], n,
                             lambda: np.ascontiguousarray(test.images[:n].transpose(0, 2, 3, 1)))
    feature_extractors, classifier = extractors(cfg, device)
    metrics = evaluate_samples(load_samples(samples_path), reference=reference, extractors=feature_extractors,
                               classifier=classifier, prdc_protocol=cfg.evaluate.prdc_protocol,
                               nearest_k=cfg.evaluate.nearest_k, batch_size=cfg.evaluate.batch_size,
                               progress=progress)
    metrics["meta"]["eval_classifier_test_accuracy"] = classifier_test_accuracy(cfg.dataset, "eval", cfg.scale)
    return metrics


def read_metrics(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write_table(name: str, results: list, notes: dict, directory: Path) -> str:
    """Render Table 5(d) with our rows beside the paper's; returns the Markdown."""
    spec = get_table_spec(name)
    cells: dict = {}
    block_labels = {}
    for r in results:
        block = TABLE5D_BLOCKS[r.dataset]
        cells.setdefault(block, {})[r.method] = {k: v for k, v in r.metrics.items() if k != "meta"}
        stand_in = r.cfg.stands_in_for
        block_labels[block] = f"{PRETTY[r.dataset]} (stand-in for {stand_in})" if stand_in else PRETTY[r.dataset]
    outputs = render_table(spec, cells, context={"block_labels": block_labels, "blocks": list(block_labels),
                                                 "notes": notes})
    _write_table(outputs, directory, name)
    return outputs["md"]
