"""Training, evaluating and caching the small classifiers of the cpu and smoke scales.

A cache entry is ``<name>.pt`` (the state dict) plus ``<name>.json`` (metadata with the test accuracy and the
state dict's sha256), both written atomically, the json last: it is the entry's commit marker. An entry whose json
is missing or unreadable, whose hash or recipe does not match, or whose weights fail to load, is retrained.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from cad.data.formats import ImageArrays
from cad.data.labelled import to_unit_range
from cad.io import atomic_path, atomic_write_json, sha256_file
from cad.training.loop_checkpoint import LoopCheckpoint, partial_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainRecipe:
    epochs: int
    batch_size: int = 128
    max_lr: float = 3e-3  # AdamW with a one-cycle schedule
    weight_decay: float = 1e-4
    train_subset: int | None = None  # a seeded subset of the training set (smoke scale)
    test_subset: int | None = None  # measure accuracy on the first n test images (smoke scale)
    hflip: bool = False  # random horizontal flips (clothes, not digits)
    seed: int = 0


def _seeded_rows(n: int, size: int | None, seed: int) -> np.ndarray:
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:size])


def train_classifier(model: nn.Module, train: ImageArrays, recipe: TrainRecipe, *, desc: str = "train",
                     device: str | torch.device = "cpu") -> nn.Module:
    """Cross-entropy training on the clean labels, on ``device``; images go in as [-1, 1] floats (the model
    preprocesses). The data order and flips come from a CPU generator, so they do not depend on the device."""
    torch.manual_seed(recipe.seed)
    rows = _seeded_rows(len(train), recipe.train_subset, recipe.seed)
    images = torch.from_numpy(train.images[rows])
    labels = torch.from_numpy(train.labels[rows])
    steps_per_epoch = max(1, len(rows) // recipe.batch_size)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.max_lr, weight_decay=recipe.weight_decay)
    total_steps = recipe.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.max_lr, total_steps=total_steps)
    generator = torch.Generator().manual_seed(recipe.seed)
    model.train()
    with tqdm(total=recipe.epochs * steps_per_epoch, desc=desc, unit="step") as bar:
        for epoch in range(recipe.epochs):
            order = torch.randperm(len(rows), generator=generator)
            for step in range(steps_per_epoch):
                batch = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
                x = to_unit_range(images[batch])
                if recipe.hflip:
                    flip = torch.rand(len(batch), generator=generator) < 0.5
                    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
                loss = F.cross_entropy(model(x.to(device)), labels[batch].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
    return model.eval()


@torch.no_grad()
def predict_logits(model: nn.Module, images_uint8: np.ndarray, *, batch_size: int = 500, device: str = "cpu",
                   desc: str = "logits") -> torch.Tensor:
    """Logits (N, K) float32 on the CPU for uint8 NCHW images."""
    model.eval()
    out = []
    for start in tqdm(range(0, len(images_uint8), batch_size), desc=desc, unit="batch", leave=False):
        x = to_unit_range(torch.from_numpy(images_uint8[start:start + batch_size])).to(device)
        out.append(model(x).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def test_accuracy(model: nn.Module, test: ImageArrays, *, limit: int | None = None, device: str = "cpu") -> float:
    n = len(test) if limit is None else min(limit, len(test))
    logits = predict_logits(model, test.images[:n], device=device, desc="test accuracy")
    return float((logits.argmax(1) == torch.from_numpy(test.labels[:n])).double().mean())


def _load_entry(weights_path: Path, meta_path: Path, expected: dict, model: nn.Module) -> dict:
    """Load a cache entry into ``model``; raise ``ValueError``/``OSError``/``RuntimeError`` naming what is wrong."""
    meta = json.loads(meta_path.read_text())
    mismatched = {k: (meta.get(k), v) for k, v in expected.items() if meta.get(k) != v}
    if mismatched:
        raise ValueError(f"metadata mismatch (cached, wanted): {mismatched}")
    if sha256_file(weights_path) != meta.get("sha256"):
        raise ValueError("weights file hash does not match its metadata")
    model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    return meta


def load_or_train(weights_path: Path, expected_meta: dict, build: Callable[[], nn.Module],
                  fit: Callable[[nn.Module], float], snapshots: LoopCheckpoint | None = None
                  ) -> tuple[nn.Module, dict]:
    """The cached model at ``weights_path`` if whole and matching ``expected_meta``; else ``fit`` a fresh
    ``build()`` (``fit`` trains it and returns its test accuracy) and cache it. A ``fit`` that keeps snapshots does
    so at ``partial_path(weights_path)`` (cad.training.loop_checkpoint), removed here once the weights are cached;
    given those ``snapshots``, the entry's ``train_seconds`` covers the segments before a resume too."""
    meta_path = weights_path.with_suffix(".json")
    model = build()
    if weights_path.exists() or meta_path.exists():
        try:
            return model.eval(), _load_entry(weights_path, meta_path, expected_meta, model)
        except Exception as err:  # corrupt, stale or half-written: retrain rather than fail
            log.warning("classifier cache %s is unusable (%s: %s); retraining", weights_path, type(err).__name__, err)
            model = build()
    start = time.time()
    accuracy = fit(model)
    model.eval()
    with atomic_path(weights_path) as tmp:
        torch.save(model.state_dict(), tmp)
    timing = snapshots.timing() if snapshots else {"train_seconds": round(time.time() - start, 1)}
    meta = {**expected_meta, "test_accuracy": accuracy, **timing, "sha256": sha256_file(weights_path)}
    atomic_write_json(meta_path, meta)
    partial_path(weights_path).unlink(missing_ok=True)
    log.info("cached %s (test accuracy %.4f)", weights_path, accuracy)
    return model, meta


def recipe_meta(recipe: TrainRecipe) -> dict:
    return {"recipe": asdict(recipe)}
