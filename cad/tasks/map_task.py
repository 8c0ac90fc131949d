"""The semantic-map task (Figure 6): a class map (and a coherence map) in, an image out; FID, mIoU and P/R/D/C.

At the cpu and smoke scales: two-object 32x64 canvases (cad.data.map_data), a base U-Net pre-trained unconditionally on
them and cached (``cache_dir()/map_base/``), the ControlNet trained on the maps a small segmenter predicts (its maximum
softmax the coherence map); mIoU by a *different*, stronger segmenter on the generated images against the requested
map. Evaluation requests are the exact class maps of held-out test canvases (sample i asks for test canvas i's map);
FID compares with those canvases. ``sample.coherence_map`` chooses the coherence map given at sampling (Figure 6(a)):
``uniform`` (``sample.coherence`` everywhere), ``canny`` (0 on the map's class boundaries), ``confidence`` (the
confidence segmenter's maximum softmax on the test canvas), ``square`` (uniform with a 12x12 square of 0 in the
middle: an edited map) or ``blit`` (the confidence map with another canvas's right half blitted in).

At the paper scale (``--scale paper``): ControlNet over Stable Diffusion on ADE20K, in cad.tasks.map_paper, to which
each method below hands over when ``cfg.scale == "paper"``.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from benchmarks.evaluate import ReferenceSet
from benchmarks.features import DomainExtractor
from benchmarks.metrics import mean_iou
from benchmarks.samples import load_samples
from benchmarks.tables import get_spec as get_table_spec, render_table, write_table as write_table_files
from cad.conditioning import Condition
from cad.conditioning.coherence_maps import blit_coherence, canny_coherence, confidence_coherence, square_coherence
from cad.data.canvases import VOCABULARIES
from cad.data.classifier_training import load_or_train
from cad.data.map_data import (MAP_SPEC, build_map_datamodule, load_segmenter, map_canvases, one_hot_map)
from cad.data.registry import dataset_splits as source_splits, pretty_name
from cad.data.text_datamodule import test_canvases
from cad.experiment.config import ConfigError
from cad.guidance import guidance_pair
from cad.paths import cache_dir
from cad.tasks.grids import save_grid
from cad.tasks import map_paper
from cad.tasks.map_conditional import MapConditionalDiffusion, build_base
from cad.tasks.map_grid import write_coherence_sweep_grid
from cad.tasks.checks import check_canvas_run, check_class_conditioning_only, check_extractors, check_no_null_label
from cad.tasks.evaluation import evaluate_features, feature_extractors
from cad.tasks.methods import Method
from cad.tasks.registry import Task, register_task
from cad.training.loop_checkpoint import LoopCheckpoint, partial_path
from cad.training.pretrain import pretrain_unconditional
from cad.training.progress import on_terminal

COHERENCE_MAPS = ("uniform", "canny", "confidence", "square", "blit")
GRID_CANVASES = 6  # the requested maps fig6a's grid shows
DOMAIN_EXTRACTOR = "segmenter"  # the mIoU segmenter's pooled features
BASE_STEPS = {"cpu": 3000, "smoke": 20}  # unconditional pre-training of the base (AdamW lr 1e-3, batch 64)
SNAPSHOT_EVERY = 100  # base pre-training steps between snapshots (~5 min on one core at the cpu scale)
STAND_IN = "two-object {} canvases (stand-in for ADE20k)"


def base_weights(cfg: DictConfig) -> Path:
    """The cached pre-trained base of the run's preset and scale, trained on the training canvases if absent."""
    splits = source_splits(cfg.dataset)
    canvases = map_canvases(splits["train"], cfg.dataset, cfg.scale)
    shape = (1, MAP_SPEC.height, MAP_SPEC.width)
    meta = {"preset": cfg.backbone.preset, "steps": BASE_STEPS[cfg.scale], "batch_size": 64, "lr": 1e-3,
            "schedule": OmegaConf.to_container(cfg.train.schedule), "source": cfg.dataset, "canvases": len(canvases)}
    path = cache_dir() / "map_base" / f"{cfg.dataset}-{cfg.backbone.preset}-{cfg.scale}.pt"

    def images(indices) -> torch.Tensor:
        return torch.from_numpy(np.stack([canvases[int(i)]["image"] for i in indices])).float() / 127.5 - 1.0

    def build():
        torch.manual_seed(0)
        return build_base(cfg.backbone.preset, shape)

    snapshots = LoopCheckpoint(partial_path(path), meta, every=SNAPSHOT_EVERY)

    def fit(model) -> float:  # its "test accuracy" entry holds the final training loss
        return pretrain_unconditional(model, images, len(canvases), steps=meta["steps"], batch_size=64, lr=1e-3,
                                      seed=0, schedule=meta["schedule"], progress=on_terminal(), checkpoint=snapshots)

    load_or_train(path, meta, build, fit, snapshots)
    return path


def requested_maps(cfg: DictConfig, indices: list[int]) -> np.ndarray:
    test = test_canvases(source_splits(cfg.dataset)["test"], cfg.dataset, MAP_SPEC)
    return np.stack([test[int(i)]["class_map"] for i in indices])


def canvas_confidences(cfg: DictConfig, indices: list[int]) -> np.ndarray:
    """(B, H, W) float32: the confidence segmenter's maximum softmax on the test canvases ``indices``."""
    splits = source_splits(cfg.dataset)
    segmenter = load_segmenter("confidence", cfg.dataset, cfg.scale,
                               map_canvases(splits["train"], cfg.dataset, cfg.scale))
    test = test_canvases(splits["test"], cfg.dataset, MAP_SPEC)
    images = torch.from_numpy(np.stack([test[int(i)]["image"] for i in indices]))
    with torch.no_grad():
        return confidence_coherence(segmenter(images))[:, 0].numpy()


def coherence_maps(cfg: DictConfig, indices: list[int], maps: np.ndarray) -> np.ndarray:
    """(B, H, W) float32: the coherence maps ``sample.coherence_map`` asks for, of the requested maps. ``blit`` (our
    stand-in for Figure 6(a)'s rightmost column): the canvas's own confidence map with its right half, where the
    second object stands, replaced by that of the next test canvas (another image's object)."""
    kind, value = cfg.sample.coherence_map, float(cfg.sample.coherence)
    if kind == "canny":
        return np.stack([canny_coherence(m) for m in maps])
    if kind == "confidence":
        return canvas_confidences(cfg, indices)
    if kind == "blit":
        count = len(test_canvases(source_splits(cfg.dataset)["test"], cfg.dataset, MAP_SPEC))
        both = canvas_confidences(cfg, list(indices) + [(int(i) + 1) % count for i in indices])  # one segmenter load
        own, other = both[:len(indices)], both[len(indices):]
        h, w = maps.shape[1:]
        return np.stack([blit_coherence(a, b, 0, w // 2, h, w - w // 2) for a, b in zip(own, other)])
    uniform = np.full(maps.shape, value, dtype=np.float32)
    if kind == "square":
        h, w = maps.shape[1:]
        return np.stack([square_coherence(u, h // 2 - 6, w // 2 - 6, 12, 0.0) for u in uniform])
    return uniform


def map_condition(indices: list[int], device: torch.device, *, cfg: DictConfig, channels: int) -> Condition:
    maps = requested_maps(cfg, indices)
    cond = Condition(spatial_map=one_hot_map(torch.from_numpy(maps), channels).to(device))
    if not cfg.method.use_coherence:
        return cond
    return cond.replace(coherence_map=torch.from_numpy(coherence_maps(cfg, indices, maps))[:, None].to(device))


@torch.no_grad()
def segment(segmenter, images_uint8: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """(N, H, W) predicted classes of uint8 NCHW images, in batches."""
    return torch.cat([segmenter(images_uint8[i:i + batch_size]).argmax(1)
                      for i in range(0, len(images_uint8), batch_size)]).numpy()


class MapTask(Task):
    name = "map"
    request_note = "the exact class maps of the test canvases"
    seed_rule = "seed = sample.seed * 1e6 + i; map = test canvas i's class map"
    paper_request_note = "the ADE20K validation maps (cad/tasks/map_paper.py)"
    paper_seed_rule = "seed = sample.seed * 1e6 + i; map = ADE20K validation image i's map"
    paper_samples = "2000 (the ADE20K validation set)"

    def validate(self, cfg: DictConfig) -> None:
        paper = cfg.scale == "paper"
        if paper:
            map_paper.validate_paper(cfg)
        else:
            check_canvas_run(cfg, "semantic-map")
        try:
            method = Method(**cfg.method)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"method: {err}") from None
        if method.labels != "noisy" or method.filter_threshold is not None or method.loss != "mean":
            raise ConfigError(f"method '{method.name}': the map task trains on predicted maps with the plain loss "
                              f"(Figure 6's Baseline and CAD); valid: --methods baseline cad")
        if cfg.sample.guidance_scale != 0 and method.guidance == "none":
            raise ConfigError(f"method '{method.name}' has no guided branch; valid: sample.guidance_scale=0")
        if cfg.sample.coherence_map not in COHERENCE_MAPS:
            raise ConfigError(f"sample.coherence_map={cfg.sample.coherence_map!r}; valid: {', '.join(COHERENCE_MAPS)}")
        check_no_null_label(cfg, "semantic-map")
        check_class_conditioning_only(cfg, "semantic-map")
        if paper:
            return
        if not cfg.backbone.preset.startswith("unet"):
            raise ConfigError(f"backbone.preset={cfg.backbone.preset}: the ControlNet copies a U-Net's encoder; "
                              f"valid: unet_cpu, unet_smoke")
        check_extractors(cfg, DOMAIN_EXTRACTOR)

    def dataset_label(self, cfg: DictConfig) -> str:
        return pretty_name(cfg.dataset) if cfg.scale == "paper" else STAND_IN.format(pretty_name(cfg.dataset))

    def noise_label(self, cfg: DictConfig) -> str:
        return f"predicted maps; coherence map {cfg.sample.coherence_map}"

    def image_shape(self, cfg: DictConfig) -> tuple[int, int, int]:
        if cfg.scale == "paper":
            return (3, cfg.data.resolution, cfg.data.resolution)
        return (1, MAP_SPEC.height, MAP_SPEC.width)

    def build_module(self, cfg: DictConfig) -> MapConditionalDiffusion:
        """At the paper scale the SD ControlNet (its UNet, text encoder and VAE from ``backbone.sd_weights``) over
        ADE20K's 150 classes + "no class"; else the U-Net preset over its cached pre-trained base."""
        t = cfg.train
        if cfg.scale == "paper":
            sd = str(map_paper.check_paths(cfg, "sd").sd)
            model = dict(backbone=cfg.backbone.preset, map_channels=map_paper.MAP_CHANNELS, base_weights=sd,
                         vae_weights=sd)
        else:
            model = dict(backbone=cfg.backbone.preset, map_channels=len(VOCABULARIES[cfg.dataset]) + 1,
                         base_weights=str(base_weights(cfg)))
        return MapConditionalDiffusion(
            **model, image_shape=self.image_shape(cfg), method=OmegaConf.to_container(cfg.method),
            schedule=OmegaConf.to_container(t.schedule), lr=t.lr,
            betas=tuple(t.betas), weight_decay=t.weight_decay, warmup_steps=t.warmup_steps, total_steps=t.total_steps,
            lr_rate=t.lr_rate, ema_decay=t.ema_decay, ema_warmup=t.ema_warmup, seed=t.seed)

    def datamodule(self, cfg: DictConfig, device: torch.device | str = "cpu"):
        if cfg.scale == "paper":
            return map_paper.build_datamodule(cfg)
        return build_map_datamodule(cfg.dataset, scale=cfg.scale, batch_size=cfg.data.batch_size,
                                    splits=source_splits(cfg.dataset), num_workers=cfg.data.num_workers)

    def eval_requests(self, cfg: DictConfig, num_samples: int | None = None) -> list[int]:
        n = cfg.sample.num_samples if num_samples is None else num_samples
        return map_paper.eval_requests(cfg, n) if cfg.scale == "paper" else list(range(n))

    def condition_fn(self, cfg: DictConfig):
        if cfg.scale == "paper":
            return functools.partial(map_paper.paper_condition, cfg=cfg, use_coherence=cfg.method.use_coherence)
        return functools.partial(map_condition, cfg=cfg, channels=len(VOCABULARIES[cfg.dataset]) + 1)

    def pair_fn(self, cfg: DictConfig):
        guidance = cfg.method.guidance
        return None if guidance == "none" else functools.partial(guidance_pair, guidance=guidance)

    def sample_extras(self, requests: list[int]) -> dict[str, np.ndarray]:
        return {"requests": np.asarray(requests, dtype=np.int64)}

    def save_grid(self, path: Path, images: np.ndarray, requests: list[int], cfg: DictConfig) -> None:
        """Each column a requested map (its canvas's class as grey levels, background black; at the paper scale a
        colour per ADE20K class) above its samples."""
        if cfg.scale == "paper":
            shown = map_paper.map_colours(map_paper.annotations(cfg, requests[:8]))
        else:
            maps = requested_maps(cfg, requests)
            k = len(VOCABULARIES[cfg.dataset])
            shown = np.where(maps == k, 0, 80 + 17 * maps).astype(np.uint8)[..., None]
        n = min(8, len(images))
        stacked = np.concatenate([shown[:n], images[:n]])
        save_grid(path, stacked, np.concatenate([np.arange(n), np.arange(n)]), n, rows=2)

    def write_sweep_figures(self, experiment, results: list, directory: Path, stem: str) -> list[Path]:
        """fig6a (a sweep of ``sample.coherence_map``): ``<stem>-grid.png``, the first ``GRID_CANVASES`` requested maps
        sampled with each kind (cad.tasks.map_grid), from the runs whose samples are here (the cpu and smoke scales;
        samples are not committed, so a re-render elsewhere keeps the committed grid)."""
        if experiment.sweep_key != "sample.coherence_map":
            return []
        runs = [r for r in results if r.cfg.scale != "paper" and (r.dirs.sample / "samples.npz").is_file()]
        runs = [r for r in runs if r.dataset == (runs[0].dataset if runs else None)]
        if not runs:
            print(f"[{experiment.name}] grid: no run's samples here; the grid is left as it is")
            return []
        cfg, indices = runs[0].cfg, list(range(GRID_CANVASES))  # sample i asks for test canvas i's map
        maps = requested_maps(cfg, indices)
        k = len(VOCABULARIES[cfg.dataset])
        test = test_canvases(source_splits(cfg.dataset)["test"], cfg.dataset, MAP_SPEC)
        path = directory / f"{stem}-grid.png"
        write_coherence_sweep_grid(path, runs, np.where(maps == k, 0, 80 + 17 * maps).astype(np.uint8),
                                   np.stack([test[i]["image"][0] for i in indices]),
                                   lambda run_cfg: coherence_maps(run_cfg, indices, maps))
        return [path]

    def evaluate(self, cfg: DictConfig, samples_path: Path, *, device: torch.device | str = "cpu",
                 progress: bool = True) -> dict:
        """FID / P / R / D / C on the Inception and on the mIoU segmenter's features against the test canvases whose
        maps were asked for; mIoU of that segmenter's prediction on the samples against the requested maps. At the
        paper scale: cad.tasks.map_paper.evaluate_paper."""
        if cfg.scale == "paper":
            return map_paper.evaluate_paper(cfg, samples_path, device=device, progress=progress)
        splits = source_splits(cfg.dataset)
        samples = load_samples(samples_path)
        requests = samples["requests"].tolist()
        test = test_canvases(splits["test"], cfg.dataset, MAP_SPEC)
        n = min(cfg.evaluate.reference_size, len(test))
        items = [test[i] for i in range(n)]  # each canvas rendered once: its image and its class map
        real = np.stack([it["image"] for it in items])
        reference = ReferenceSet(f"map-canvases-{cfg.dataset}-{MAP_SPEC.height}x{MAP_SPEC.width}", "test",
                                 MAP_SPEC.width, n, lambda: np.ascontiguousarray(real.transpose(0, 2, 3, 1)))
        segmenter = load_segmenter("eval", cfg.dataset, cfg.scale, map_canvases(splits["train"], cfg.dataset,
                                                                                  cfg.scale))
        domain = {DOMAIN_EXTRACTOR: lambda: DomainExtractor(segmenter, f"{cfg.dataset}-map-segmenter-{cfg.scale}",
                                                            preprocess=lambda x: x, tag="domain", device=device)}
        metrics = evaluate_features(cfg, samples, reference, feature_extractors(cfg, device, domain),
                                    progress=progress)
        images = torch.from_numpy(samples["images"]).permute(0, 3, 1, 2)
        channels = len(VOCABULARIES[cfg.dataset]) + 1
        metrics["miou"] = 100 * mean_iou(segment(segmenter, images), requested_maps(cfg, requests),
                                         num_classes=channels)
        real_pred = segment(segmenter, torch.from_numpy(real))
        metrics["miou_real"] = 100 * mean_iou(real_pred, np.stack([it["class_map"] for it in items]),
                                              num_classes=channels)
        metrics["meta"]["miou_segmenter"] = f"{cfg.dataset}-map-segmenter-{cfg.scale} (cad.data.segmenters, role eval)"
        return metrics

    def write_table(self, name: str, results: list, notes: dict, directory: Path, output: str | None = None) -> str:
        """Figure 6(b): every run in the paper's ADE20K block, labelled as the stand-in it is."""
        spec = get_table_spec(name)
        block = spec.blocks[0]
        cells = {block.key: {r.method: {k: v for k, v in r.metrics.items() if k != "meta"} for r in results}}
        label = self.dataset_label(results[0].cfg)
        outputs = render_table(spec, cells, context={"block_labels": {block.key: label}, "blocks": [block.key],
                                                     "notes": notes})
        write_table_files(outputs, directory, output or name)
        return outputs["md"]


register_task("map", MapTask)
