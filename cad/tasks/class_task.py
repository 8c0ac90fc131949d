"""The class-conditional task (Table 5(d), Figure 5): labels in, images out, FID and classifier accuracy.

Evaluation requests are balanced labels (sample i asks for class i % K); the guided branches are the label pairs of
cad.guidance (eq. 3: the null label; eq. 4: the same label at coherence 1 and 0).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from benchmarks.evaluate import ReferenceSet
from benchmarks.features import DomainExtractor
from benchmarks.samples import load_samples
from benchmarks.tables import get_spec as get_table_spec, render_table, write_table as write_table_files
from cad.conditioning import Condition
from cad.data import build_datamodule
from cad.data.classifiers import classifier_test_accuracy, load_classifier
from cad.data.noise import NoiseConfig
from cad.data.augment import neutral_metadata, neutral_row, resize
from cad.diffusion.guidance_loss import GuidanceLoss
from cad.data.registry import get_spec as get_dataset_spec, paper_dataset, pretty_name
from cad.experiment.config import ConfigError
from cad.guidance import guidance_pair
from cad.tasks.class_conditional import ClassConditionalDiffusion
from cad.tasks.grids import save_grid
from cad.tasks.checks import check_extractors
from cad.tasks.evaluation import evaluate_features, feature_extractors
from cad.tasks.methods import Method
from cad.tasks.registry import Task, register_task

DOMAIN_EXTRACTOR = "classifier"  # the evaluation classifier's features; every other name is benchmarks.features'


def balanced_labels(num_samples: int, num_classes: int) -> list[int]:
    """Requested labels for evaluation: classes in turn, so every class is asked for equally often."""
    return [i % num_classes for i in range(num_samples)]


def label_condition(labels: list[int], device: torch.device, *, use_coherence: bool, coherence: float,
                    metadata: tuple[float, ...] = (), null_label: bool = False) -> Condition:
    """The sampling condition of a batch of requested labels (at ``coherence`` when the model takes one; with the
    control metadata row ``metadata`` when the model reads one: "not augmented", at its resolution); with
    ``null_label`` every label is the learned null: the unconditional model that condition dropout trains."""
    label = torch.as_tensor(labels, dtype=torch.long, device=device)
    cond = Condition(label=label, label_null=torch.full_like(label, null_label, dtype=torch.bool))
    if metadata:
        cond = cond.replace(metadata=neutral_metadata(len(labels), device, tuple(metadata)),
                            metadata_null=cond.label_null.clone())
    return cond.with_coherence(coherence) if use_coherence else cond


def classifier_preprocess(x_uint8: torch.Tensor) -> torch.Tensor:
    """The suite's classifiers take images in [-1, 1], like the diffusion models."""
    return x_uint8.float() / 127.5 - 1.0


def classifier_preprocess_from(size: int, native: int):
    """The classifier's preprocessing for images generated at ``size`` px: resized back to the dataset's ``native``
    side first where they differ (``data.resolution``), since the classifiers read the dataset's own resolution."""
    return classifier_preprocess if size == native else (lambda x: classifier_preprocess(resize(x, native)))


class ClassTask(Task):
    name = "class"
    request_note = "true labels"
    seed_rule = "seed = sample.seed * 1e6 + i; label = i % num_classes"

    def validate(self, cfg: DictConfig) -> None:
        try:
            method = Method(**cfg.method)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"method: {err}") from None
        if cfg.sample.null_label and (method.cond_dropout == 0 or cfg.sample.guidance_scale != 0):
            raise ConfigError(f"sample.null_label=true samples the unconditional model that condition dropout trains, "
                              f"unguided (method '{method.name}': cond_dropout {method.cond_dropout}, guidance scale "
                              f"{cfg.sample.guidance_scale}); valid: a method with cond_dropout > 0 (cfg) at "
                              f"sample.guidance_scale=0, or CAD's own reading of 'no condition': sample.coherence=0")
        if cfg.sample.guidance_scale != 0 and method.guidance == "none":
            raise ConfigError(f"sample.guidance_scale={cfg.sample.guidance_scale} but method '{method.name}' has no "
                              f"guided branch (guidance: none); valid: sample.guidance_scale=0, or a method with "
                              f"guidance (cfg, cad)")
        if cfg.backbone.mix_labels_and_confidence and not method.use_coherence:
            raise ConfigError(f"backbone.mix_labels_and_confidence=true merges the label with the coherence score, but "
                              f"method '{method.name}' has none (use_coherence: false); valid: a method with "
                              f"coherence (--methods cad), or backbone.mix_labels_and_confidence=false")
        try:
            aligned = GuidanceLoss(**cfg.train.guidance_loss).enabled
        except ValueError as err:
            raise ConfigError(f"train.{err}") from None
        if cfg.backbone.coherence_as_metadata and not method.use_coherence:
            raise ConfigError(f"backbone.coherence_as_metadata=true moves the coherence score to the metadata path, "
                              f"but method '{method.name}' has none; valid: a method with coherence (--methods cad)")
        size = cfg.data.resolution
        if size is not None and (not isinstance(size, int) or size < 8):
            raise ConfigError(f"data.resolution={size!r} is not valid; valid: null (the dataset's own) or an integer "
                              f">= 8 (the images resized to it, e.g. 56 for the 28 -> 56 transfer)")
        crop_min = cfg.data.augment.crop_min
        if crop_min is not None and not 0 < crop_min <= 1:
            raise ConfigError(f"data.augment.crop_min={crop_min} is not valid; valid: null or a value in (0, 1]")
        if aligned and method.guidance == "none":
            raise ConfigError(f"train.guidance_loss trains the guided combination, but method '{method.name}' has no "
                              f"guided branch (guidance: none); valid: a method with guidance (cfg, cad), or "
                              f"train.guidance_loss.w=0 with w_max=null")
        check_extractors(cfg, DOMAIN_EXTRACTOR)

    def image_shape(self, cfg: DictConfig) -> tuple[int, int, int]:
        channels, height, width = get_dataset_spec(cfg.dataset).image_shape
        size = cfg.data.resolution
        return (channels, height, width) if size is None else (channels, size, size)

    def build_module(self, cfg: DictConfig) -> ClassConditionalDiffusion:
        t = cfg.train
        return ClassConditionalDiffusion(
            backbone=cfg.backbone.preset, image_shape=self.image_shape(cfg),
            num_classes=get_dataset_spec(cfg.dataset).num_classes, method=OmegaConf.to_container(cfg.method),
            mix_labels_and_confidence=cfg.backbone.mix_labels_and_confidence,
            augment=OmegaConf.to_container(cfg.data.augment), coherence_as_metadata=cfg.backbone.coherence_as_metadata,
            resolution=cfg.data.resolution, metadata_dropout=t.metadata_dropout,
            resolution_metadata=cfg.data.resolution_metadata, metadata_gate=cfg.backbone.metadata_gate,
            schedule=OmegaConf.to_container(t.schedule), lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay,
            warmup_steps=t.warmup_steps, total_steps=t.total_steps, lr_rate=t.lr_rate, ema_decay=t.ema_decay,
            ema_warmup=t.ema_warmup, self_cond_keep_prob=t.self_cond_keep_prob, seed=t.seed,
            guidance_loss=OmegaConf.to_container(t.guidance_loss))

    def datamodule(self, cfg: DictConfig, device: torch.device | str = "cpu"):
        """The method's labels (clean or noisy), its Filtered view, the scale's subset; the noise classifier on
        ``device``."""
        method = cfg.method
        noise = NoiseConfig(**OmegaConf.to_container(cfg.data.noise), classifier_scale=cfg.scale)
        return build_datamodule(cfg.dataset, batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers,
                                labels=method.labels, noise=noise if method.labels == "noisy" else None,
                                filter_threshold=method.filter_threshold, subset=cfg.data.subset,
                                seed=cfg.train.seed, device=device)

    def eval_requests(self, cfg: DictConfig, num_samples: int | None = None) -> list[int]:
        num_classes = get_dataset_spec(cfg.dataset).num_classes
        return balanced_labels(cfg.sample.num_samples if num_samples is None else num_samples, num_classes)

    def condition_fn(self, cfg: DictConfig):
        return functools.partial(label_condition, use_coherence=cfg.method.use_coherence,
                                 coherence=cfg.sample.coherence, metadata=self.metadata_row(cfg),
                                 null_label=cfg.sample.null_label)

    def metadata_row(self, cfg: DictConfig) -> tuple[float, ...]:
        """The control metadata sampling asks for (cad.data.augment.neutral_row); empty: the model reads none."""
        return neutral_row(cfg.data.augment, self.image_shape(cfg)[1] if cfg.data.resolution_metadata else None)

    def pair_fn(self, cfg: DictConfig):
        guidance = cfg.method.guidance
        return None if guidance == "none" else functools.partial(guidance_pair, guidance=guidance)

    def sample_extras(self, requests: list[int]) -> dict[str, np.ndarray]:
        return {"labels": np.asarray(requests, dtype=np.int64)}

    def save_grid(self, path: Path, images: np.ndarray, requests: list[int], cfg: DictConfig) -> None:
        save_grid(path, images, np.asarray(requests), get_dataset_spec(cfg.dataset).num_classes, rows=8)

    def evaluate(self, cfg: DictConfig, samples_path: Path, *, device: torch.device | str = "cpu",
                 progress: bool = True) -> dict:
        """FID / P / R / D / C on the Inception and on the evaluation classifier's features, and the accuracy of that
        classifier (never the network that made the label noise) against the requested labels."""
        test = build_datamodule(cfg.dataset, batch_size=1).splits["test"]
        n = min(cfg.evaluate.reference_size, len(test))
        native, size = test.images.shape[-1], self.image_shape(cfg)[-1]  # size: data.resolution, where set

        def real_images() -> np.ndarray:  # at the resolution the model generates
            return np.ascontiguousarray(resize(torch.from_numpy(test.images[:n]), size).numpy().transpose(0, 2, 3, 1))

        reference = ReferenceSet(cfg.dataset, "test", size, n, real_images)
        preprocess = classifier_preprocess_from(size, native)
        name = f"{cfg.dataset}-eval-classifier-{cfg.scale}" + (f"-from{size}px" if size != native else "")
        classifier = DomainExtractor(load_classifier(cfg.dataset, "eval", scale=cfg.scale, device=device), name,
                                     preprocess=preprocess, with_logits=True, tag="domain", device=device)
        extractors = feature_extractors(cfg, device, {DOMAIN_EXTRACTOR: lambda: classifier})
        metrics = evaluate_features(cfg, load_samples(samples_path), reference, extractors, classifier=classifier,
                                    progress=progress)
        metrics["meta"]["eval_classifier_test_accuracy"] = classifier_test_accuracy(cfg.dataset, "eval", cfg.scale)
        return metrics

    def write_table(self, name: str, results: list, notes: dict, directory: Path, output: str | None = None) -> str:
        """The paper's table with our rows beside its numbers: a dataset fills the block of the paper dataset it is
        (or stands in for); returns the Markdown."""
        spec = get_table_spec(name)
        cells: dict = {}
        block_labels = {}
        for r in results:
            block = spec.block_for(paper_dataset(r.dataset)).key
            cells.setdefault(block, {})[r.method] = {k: v for k, v in r.metrics.items() if k != "meta"}
            stand_in = r.cfg.stands_in_for
            block_labels[block] = (f"{pretty_name(r.dataset)} (stand-in for {stand_in})" if stand_in
                                   else pretty_name(r.dataset))
        outputs = render_table(spec, cells, context={"block_labels": block_labels, "blocks": list(block_labels),
                                                     "notes": notes})
        write_table_files(outputs, directory, output or name)
        return outputs["md"]


register_task("class", ClassTask)
