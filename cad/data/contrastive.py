"""Small contrastive image-text models (CLIP-style) trained by the suite on clean captioned canvases: the cpu scale's
stand-ins for MetaCLIP H/14 (the coherence scorer) and for the CLIP of CLIPScore. Two roles, never the same network:

- ``coherence``: its cosine between a canvas and its (possibly corrupted) caption is cut into quantile bins
  (cad.conditioning.text_coherence) to give each training pair its coherence;
- ``clipscore``: a different architecture and seed; CLIPScore = 100 * max(cos, 0) (torchmetrics' convention), the
  text-image agreement of generated samples.

The text side is the frozen text encoder's masked-mean token state (a ``CaptionBank`` encodes each distinct caption
once) through a learned linear head; the image side a small CNN. Training: symmetric InfoNCE with a learned
temperature (CLIP), on true captions only; its "test accuracy" is top-1 caption retrieval in batches of 100 held-out
canvases (chance 1%, less where captions repeat).
"""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cad.data.canvases import CanvasRecipe, canvas_batch
from cad.training.loop_checkpoint import LoopCheckpoint

ROLES = {"coherence": dict(width=32, seed=11), "clipscore": dict(width=48, seed=23)}


class CaptionBank:
    """Token states of each distinct caption, encoded once by ``encoder`` (captions repeat: a canvas set has a few
    thousand distinct ones). ``tokens(captions)`` -> (states (B, L, D), mask (B, L)); ``pooled`` -> (B, D)."""

    def __init__(self, encoder, batch_size: int = 256, length: int | None = None):
        """``length``: every caption's states padded to it, so items collate (default: the encoder's max_length)."""
        self.encoder, self.batch_size = encoder, batch_size
        self.length = length if length is not None else getattr(encoder, "max_length", None)
        self._states: dict[str, tuple[Tensor, Tensor]] = {}

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def _fill(self, captions: list[str]) -> None:
        missing = list(dict.fromkeys(c for c in captions if c not in self._states))
        for i in range(0, len(missing), self.batch_size):
            chunk = missing[i:i + self.batch_size]
            states, mask = self.encoder(chunk)
            for caption, s, m in zip(chunk, states.cpu(), mask.cpu()):
                self._states[caption] = (s.to(torch.float16), m)

    def tokens(self, captions: list[str]) -> tuple[Tensor, Tensor]:
        self._fill(captions)
        states, masks = zip(*(self._states[c] for c in captions))
        length = self.length or max(len(m) for m in masks)  # an encoder that pads per batch: pad here
        states = [F.pad(s, (0, 0, 0, length - len(s))) for s in states]
        masks = [F.pad(m, (0, length - len(m)), value=False) for m in masks]
        return torch.stack(states).float(), torch.stack(masks)

    def pooled(self, captions: list[str]) -> Tensor:
        states, mask = self.tokens(captions)
        weights = mask.float()[..., None]
        return (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class ContrastiveModel(nn.Module):
    """Image CNN and text head into a shared ``embed_dim`` space; ``similarity(images, text) -> (B,)`` cosines."""

    def __init__(self, text_dim: int, in_channels: int = 1, width: int = 32, embed_dim: int = 64):
        super().__init__()
        w = width
        self.image = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.GroupNorm(4, w), nn.SiLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.GroupNorm(4, 2 * w), nn.SiLU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.GroupNorm(4, 4 * w), nn.SiLU(),
            nn.Conv2d(4 * w, 4 * w, 3, padding=1), nn.GroupNorm(4, 4 * w), nn.SiLU(),
            nn.AdaptiveAvgPool2d((2, 4)), nn.Flatten(), nn.Linear(4 * w * 8, embed_dim))  # keeps left/right apart
        self.text = nn.Sequential(nn.Linear(text_dim, 2 * embed_dim), nn.SiLU(), nn.Linear(2 * embed_dim, embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))

    def embed_images(self, images_uint8: Tensor) -> Tensor:
        return F.normalize(self.image(images_uint8.float() / 127.5 - 1.0), dim=-1)

    def embed_text(self, pooled: Tensor) -> Tensor:
        return F.normalize(self.text(pooled), dim=-1)

    def similarity(self, images_uint8: Tensor, pooled: Tensor) -> Tensor:
        return (self.embed_images(images_uint8) * self.embed_text(pooled)).sum(-1)

    def loss(self, images_uint8: Tensor, pooled: Tensor) -> Tensor:
        """CLIP's symmetric InfoNCE over the batch (pair i is the positive of row and column i)."""
        logits = self.logit_scale.exp().clamp(max=100) * self.embed_images(images_uint8) @ self.embed_text(pooled).T
        target = torch.arange(len(logits), device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def train_contrastive(model: ContrastiveModel, canvases, bank: CaptionBank, recipe: CanvasRecipe, *,
                      train_indices: np.ndarray, eval_indices: np.ndarray, seed: int, progress: bool = False,
                      checkpoint: LoopCheckpoint | None = None) -> float:
    """Train on (canvas, true caption) pairs of ``train_indices``; return the top-1 retrieval accuracy on
    ``eval_indices`` in batches of 100. Resumable from ``checkpoint``'s snapshots (cad.training.loop_checkpoint)."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01)
    start = checkpoint.resume(model, optimizer, numpy=rng) if checkpoint else 0
    model.train()
    for step in tqdm(range(start, recipe.steps), desc="contrastive", disable=not progress, initial=start,
                     total=recipe.steps):
        chosen = rng.choice(train_indices, recipe.batch_size, replace=False)
        images, captions = canvas_batch(canvases, chosen, "true_caption")
        loss = model.loss(images, bank.pooled(captions))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if checkpoint:
            checkpoint.maybe_save(step + 1, model, optimizer, numpy=rng)
    return retrieval_accuracy(model, canvases, bank, eval_indices[:recipe.eval_size])


@torch.no_grad()
def retrieval_accuracy(model: ContrastiveModel, canvases, bank: CaptionBank, indices: np.ndarray) -> float:
    """Share of canvases whose own true caption is the most similar among the 100 captions of their batch (a caption
    identical to the canvas's own counts as right)."""
    model.eval()
    hits = 0
    for start in range(0, len(indices) - len(indices) % 100, 100):
        images, captions = canvas_batch(canvases, indices[start:start + 100], "true_caption")
        logits = model.embed_images(images) @ model.embed_text(bank.pooled(captions)).T
        best = logits.argmax(1).tolist()
        hits += sum(captions[b] == captions[i] for i, b in enumerate(best))
    return hits / max(1, len(indices) - len(indices) % 100)


@torch.no_grad()
def clip_score(model: ContrastiveModel, images_uint8: Tensor, captions: list[str], bank: CaptionBank) -> float:
    """CLIPScore of images against their captions with the ``clipscore`` model (benchmarks.metrics' definition)."""
    from benchmarks.metrics import clip_score_from_embeddings

    model.eval()
    return clip_score_from_embeddings(model.embed_images(images_uint8).numpy(),
                                      model.embed_text(bank.pooled(captions)).numpy())


def recipe_meta(role: str, recipe: CanvasRecipe) -> dict:
    return {"role": role, **ROLES[role], "recipe": asdict(recipe)}
