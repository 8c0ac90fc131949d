"""The text-to-image task (Figure 3(a)/(c), Figure 2(b)): captions in, images out, FID, CLIPScore and P/R/D/C.

At the cpu and smoke scales the data are captioned canvases of a source dataset (cad.data.canvases), the encoder the
frozen MiniLM, the coherence the suite's contrastive scorer, and CLIPScore a *different* contrastive model (role
``clipscore``, cad.data.contrastive); every one of them is a stand-in, and the table says so. Evaluation requests are
the true captions of the test canvases (sample i asks for test canvas i's caption), and the real images FID compares
with are those canvases, as COCO-10K evaluation pairs each caption with its image.

Guidance: plain CFG against the empty prompt (every text token masked, ``cad.guidance.null_prompt_pair``); CA-CFG
(eq. 4) as the paper samples text: the prompt at coherence 1 against a random-character prompt at coherence 0. Our
choice: one random-character prompt per run, drawn from ``sample.seed``, for every sample (a sample must not depend on
the batch it is drawn in; the paper does not say whether its negative changes per sample).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from benchmarks.evaluate import ReferenceSet
from benchmarks.features import DomainExtractor
from benchmarks.samples import load_samples
from benchmarks.tables import get_spec as get_table_spec, render_table, write_table as write_table_files
from cad.backbones import PRESETS
from cad.conditioning import Condition
from cad.conditioning.text_coherence import NUM_BINS, random_character_prompt
from cad.conditioning.text_encoders import load_text_encoder
from cad.data.canvases import CanvasSpec
from cad.data.contrastive import CaptionBank, clip_score
from cad.data.registry import dataset_splits as source_splits, pretty_name
from cad.data.text_datamodule import build_text_datamodule, load_contrastive, test_canvases, training_canvases
from cad.diffusion.guidance_loss import GuidanceLoss
from cad.experiment.config import ConfigError
from cad.guidance import cacfg_prompt_pair, null_prompt_pair
from cad.tasks.checks import check_canvas_run, check_class_conditioning_only, check_extractors, check_no_null_label
from cad.tasks.evaluation import evaluate_features, feature_extractors
from cad.tasks.methods import Method
from cad.tasks.registry import Task, register_task
from cad.tasks.text_conditional import TextConditionalDiffusion
from cad.tasks.text_grid import save_caption_grid
from cad.tasks.text_paper import paper_datamodule, paper_evaluate, paper_requests, validate_paper

DOMAIN_EXTRACTOR = "clipscore"  # the CLIPScore model's image embedding as a domain feature space
ROWS = {"cfg": "baseline", "cfg_weighted": "weighted", "cfg_filtered": "filtered", "cad": "cad"}  # Figure 3(a)'s rows
STAND_IN = "captioned {} canvases (stand-in for COCO-10K)"


@functools.lru_cache(maxsize=2)
def caption_bank(encoder: str) -> CaptionBank:
    """One bank (encoder and its encoded captions) per process and encoder name."""
    return CaptionBank(load_text_encoder(encoder))


def canvas_spec(cfg: DictConfig, noisy: bool = True) -> CanvasSpec:
    return CanvasSpec(noisy_share=cfg.data.caption_noise if noisy else 0.0)


def dropped_bins(threshold: float) -> int:
    """The Filtered method's threshold as a number of whole coherence bins left out (3/7 -> 3)."""
    bins = round(threshold * (NUM_BINS - 1))
    if abs(threshold * (NUM_BINS - 1) - bins) > 1e-3:
        raise ConfigError(f"filter_threshold={threshold}: the text task drops whole coherence bins; valid: k/"
                          f"{NUM_BINS - 1} (the paper's Filtered: 3/{NUM_BINS - 1} = {3 / (NUM_BINS - 1):.7f})")
    return bins


def text_condition(captions: list[str], device: torch.device, *, bank: CaptionBank, use_coherence: bool,
                   coherence: float) -> Condition:
    tokens, mask = bank.tokens(list(captions))
    cond = Condition(tokens=tokens.to(device), token_mask=mask.to(device))
    return cond.with_coherence(coherence) if use_coherence else cond


def random_prompt_pair(cond: Condition, *, bank: CaptionBank, prompt: str) -> tuple[Condition, Condition]:
    tokens, mask = bank.tokens([prompt])
    b, device = cond.batch_size, cond.tokens.device
    negative = Condition(tokens=tokens.to(device).expand(b, -1, -1), token_mask=mask.to(device).expand(b, -1))
    return cacfg_prompt_pair(cond, negative)


class ImageEmbedding(nn.Module):
    """A contrastive model's image tower, as a ``DomainExtractor`` module (``features``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.image(x)


def signed_unit(x_uint8: torch.Tensor) -> torch.Tensor:
    return x_uint8.float() / 127.5 - 1.0


class TextTask(Task):
    name = "text"
    request_note = "true captions of the test canvases"
    seed_rule = "seed = sample.seed * 1e6 + i; caption = test canvas i's true caption"
    paper_request_note = "the captions of the COCO-10K subset (cad/data/coco.py)"
    paper_seed_rule = "seed = sample.seed * 1e6 + i; caption = the COCO-10K subset's caption i"
    paper_samples = "10k (COCO-10K)"

    def validate(self, cfg: DictConfig) -> None:
        if cfg.scale == "paper":
            validate_paper(cfg)
        else:
            check_canvas_run(cfg, "text")
        try:
            method = Method(**cfg.method)
            aligned = GuidanceLoss(**cfg.train.guidance_loss).enabled
        except (TypeError, ValueError) as err:
            raise ConfigError(f"method or train.guidance_loss: {err}") from None
        if (cfg.sample.guidance_scale != 0 or aligned) and method.guidance == "none":
            raise ConfigError(f"method '{method.name}' has no guided branch (guidance: none) for guided sampling or "
                              f"the guidance-aligned loss; valid: a method with guidance (cfg, cfg_weighted, "
                              f"cfg_filtered, cad)")
        if method.filter_threshold is not None:
            dropped_bins(method.filter_threshold)
        if not PRESETS[cfg.backbone.preset].get("text_layers"):
            raise ConfigError(f"backbone.preset={cfg.backbone.preset} has no text tower; valid: "
                              + ", ".join(k for k, v in PRESETS.items() if v.get("text_layers")))
        check_class_conditioning_only(cfg, "text")
        check_no_null_label(cfg, "text")
        check_extractors(cfg, DOMAIN_EXTRACTOR)

    def method_label(self, method: str) -> str:
        """Figure 3's names: Baseline, Weighted, Filtered (each trained with dropout and guided with CFG), CAD."""
        return {row.key: row.label for row in get_table_spec("fig3a").rows}.get(ROWS.get(method), method)

    def dataset_label(self, cfg: DictConfig) -> str:
        return "CC12M-style shards, COCO-10K" if cfg.scale == "paper" else STAND_IN.format(pretty_name(cfg.dataset))

    def noise_label(self, cfg: DictConfig) -> str:
        return f"caption noise {cfg.data.caption_noise:g}"

    def image_shape(self, cfg: DictConfig) -> tuple[int, int, int]:
        if cfg.scale == "paper":
            return (3, cfg.data.resolution, cfg.data.resolution)
        spec = canvas_spec(cfg)
        return (1, spec.height, spec.width)

    def build_module(self, cfg: DictConfig) -> TextConditionalDiffusion:
        t = cfg.train
        return TextConditionalDiffusion(
            backbone=cfg.backbone.preset, image_shape=self.image_shape(cfg),
            token_dim=caption_bank(cfg.backbone.text_encoder).dim, method=OmegaConf.to_container(cfg.method),
            schedule=OmegaConf.to_container(t.schedule), lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay,
            warmup_steps=t.warmup_steps, total_steps=t.total_steps, lr_rate=t.lr_rate, ema_decay=t.ema_decay,
            ema_warmup=t.ema_warmup, self_cond_keep_prob=t.self_cond_keep_prob, seed=t.seed,
            guidance_loss=OmegaConf.to_container(t.guidance_loss), latent_vae=cfg.backbone.latent_vae,
            text_encoder=cfg.backbone.text_encoder)

    def datamodule(self, cfg: DictConfig, device: torch.device | str = "cpu"):
        """Canvases with the method's captions (corrupted, or true for a clean method), their coherence, the Filtered
        view; the scorer trains on the CPU (it is small)."""
        method = cfg.method
        threshold = method.filter_threshold
        if cfg.scale == "paper":
            return paper_datamodule(cfg, dropped_bins(threshold) if threshold is not None else None)
        return build_text_datamodule(
            cfg.dataset, scale=cfg.scale, batch_size=cfg.data.batch_size, filtered=threshold is not None,
            dropped_bins=dropped_bins(threshold) if threshold is not None else 0, splits=source_splits(cfg.dataset),
            encoder=caption_bank(cfg.backbone.text_encoder).encoder,
            spec=canvas_spec(cfg, noisy=method.labels == "noisy"), subset=cfg.data.subset,
            num_workers=cfg.data.num_workers)

    def eval_requests(self, cfg: DictConfig, num_samples: int | None = None) -> list[str]:
        if cfg.scale == "paper":
            return paper_requests(cfg, cfg.sample.num_samples if num_samples is None else num_samples)
        canvases = test_canvases(source_splits(cfg.dataset)["test"], cfg.dataset, canvas_spec(cfg))
        n = cfg.sample.num_samples if num_samples is None else num_samples
        if n > len(canvases):
            raise ConfigError(f"sample.num_samples={n}: only {len(canvases)} test canvases; valid: at most that")
        return [canvases[i]["caption"] for i in range(n)]

    def condition_fn(self, cfg: DictConfig):
        return functools.partial(text_condition, bank=caption_bank(cfg.backbone.text_encoder),
                                 use_coherence=cfg.method.use_coherence, coherence=cfg.sample.coherence)

    def pair_fn(self, cfg: DictConfig):
        guidance = cfg.method.guidance
        if guidance == "cfg":
            return null_prompt_pair
        if guidance == "cacfg":
            prompt = random_character_prompt(np.random.default_rng(cfg.sample.seed))
            return functools.partial(random_prompt_pair, bank=caption_bank(cfg.backbone.text_encoder), prompt=prompt)
        return None

    def sample_extras(self, requests: list[str]) -> dict[str, np.ndarray]:
        return {"captions": np.asarray(requests, dtype=str)}

    def save_grid(self, path: Path, images: np.ndarray, requests: list[str], cfg: DictConfig) -> None:
        save_caption_grid(path, images, requests)

    def evaluate(self, cfg: DictConfig, samples_path: Path, *, device: torch.device | str = "cpu",
                 progress: bool = True) -> dict:
        """FID / P / R / D / C on the Inception and on the CLIPScore model's image embedding, against the test
        canvases whose captions were asked for; CLIPScore of the samples (and of those real canvases, its ceiling)
        with the ``clipscore`` model, never the scorer that made the coherence (the paper scale: text_paper)."""
        if cfg.scale == "paper":
            return paper_evaluate(cfg, samples_path, device=device, progress=progress)
        splits, bank, spec = source_splits(cfg.dataset), caption_bank(cfg.backbone.text_encoder), canvas_spec(cfg)
        test = test_canvases(splits["test"], cfg.dataset, spec)
        n = min(cfg.evaluate.reference_size, len(test))
        items = [test[i] for i in range(n)]  # each canvas rendered once: its image and its caption
        real = np.stack([it["image"] for it in items])
        reference = ReferenceSet(f"canvases-{cfg.dataset}-{spec.height}x{spec.width}-seed{spec.seed + 1}", "test",
                                 spec.width, n, lambda: np.ascontiguousarray(real.transpose(0, 2, 3, 1)))
        scorer = load_contrastive("clipscore", cfg.dataset, cfg.scale,
                                  training_canvases(splits["train"], cfg.dataset, cfg.scale, spec), bank)
        domain = {DOMAIN_EXTRACTOR: lambda: DomainExtractor(
            ImageEmbedding(scorer), f"{cfg.dataset}-canvas-clipscore-{cfg.scale}", preprocess=signed_unit,
            tag="domain", device=device)}
        samples = load_samples(samples_path)
        metrics = evaluate_features(cfg, samples, reference, feature_extractors(cfg, device, domain),
                                    progress=progress)
        images = torch.from_numpy(samples["images"]).permute(0, 3, 1, 2)
        metrics["clip_score"] = clip_score(scorer, images, [str(c) for c in samples["captions"]], bank)
        metrics["clip_score_real"] = clip_score(scorer, torch.from_numpy(real),
                                                [it["caption"] for it in items], bank)
        # Both contrastive models are the suite's own, trained on clean canvas-caption pairs: the table says so.
        metrics["meta"]["clip_score_model"] = (f"{cfg.dataset}-canvas-clipscore-{cfg.scale} (cad.data.contrastive), "
                                               "a stand-in for the paper's CLIP")
        metrics["meta"]["coherence_model"] = (f"{cfg.dataset}-canvas-coherence-{cfg.scale} (cad.data.contrastive, "
                                              "another network), a stand-in for the paper's MetaCLIP H/14")
        return metrics

    def write_table(self, name: str, results: list, notes: dict, directory: Path, output: str | None = None) -> str:
        """Figure 3(a): every run in the paper's COCO-10K block, labelled as the stand-in it is."""
        spec = get_table_spec(name)
        block = spec.blocks[0].key
        cells: dict = {block: {}}
        for r in results:
            if r.method not in ROWS:
                raise ValueError(f"{name} has no row for method {r.method!r}; rows: {', '.join(ROWS)}")
            cells[block][ROWS[r.method]] = {k: v for k, v in r.metrics.items() if k != "meta"}
        label = self.dataset_label(results[0].cfg)
        outputs = render_table(spec, cells, context={"block_labels": {block: label}, "blocks": [block],
                                                     "notes": notes})
        write_table_files(outputs, directory, output or name)
        return outputs["md"]


register_task("text", TextTask)
