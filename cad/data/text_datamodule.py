"""The text task's data module at the cpu and smoke scales (issue 11): captioned canvases of a source dataset, their
coherence from the suite's cached contrastive scorer, the caption tokens of the frozen encoder.

    build_text_datamodule("fashion_mnist", scale="cpu", batch_size=128, filtered=False)

The scorer (role ``coherence``) and the CLIPScore model (role ``clipscore``) are trained on the clean training pairs
on first use and cached under ``cache_dir()/contrastive/<source>-<role>-<scale>.pt`` with their metadata (the recipe,
the canvas spec, the retrieval accuracy), like the suite's classifiers.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from cad.data.canvases import CanvasRecipe, CanvasSpec, CaptionedCanvases, VOCABULARIES
from cad.data.classifier_training import load_or_train
from cad.data.contrastive import ROLES, CaptionBank, ContrastiveModel, recipe_meta, train_contrastive
from cad.data.formats import ImageArrays
from cad.data.text_data import (FILTERED_BINS, CaptionedTrainingSet, filtered_indices,
                                pair_similarity, training_coherence)
from cad.io import cached_array
from cad.paths import cache_dir
from cad.training.loop_checkpoint import LoopCheckpoint, partial_path
from cad.training.progress import on_terminal

RECIPES = {"cpu": CanvasRecipe(steps=3000, batch_size=128, eval_size=1000),
           "smoke": CanvasRecipe(steps=100, batch_size=64, eval_size=200)}


def load_contrastive(role: str, source: str, scale: str, canvases: CaptionedCanvases, bank: CaptionBank
                     ) -> ContrastiveModel:
    """The cached contrastive model of ``role``, trained on the first 90% of ``canvases`` (true captions) if absent."""
    import torch

    recipe = RECIPES[scale]
    settings = ROLES[role]
    split = int(0.9 * len(canvases))
    # The images and true captions do not depend on the caption noise (drawn after them): one model for every share.
    canvas = {k: v for k, v in asdict(canvases.spec).items() if k != "noisy_share"}
    meta = {**recipe_meta(role, recipe), "source": source, "canvas": canvas, "pairs": len(canvases)}
    meta = json.loads(json.dumps(meta))  # as the cache file will hold it (tuples become lists)

    def build() -> ContrastiveModel:
        torch.manual_seed(settings["seed"])
        return ContrastiveModel(bank.dim, width=settings["width"])

    path = cache_dir() / "contrastive" / f"{source}-{role}-{scale}.pt"
    snapshots = LoopCheckpoint(partial_path(path), meta, every=200)  # ~4 min of steps on one core at the cpu scale

    def fit(model: ContrastiveModel) -> float:
        return train_contrastive(model, canvases, bank, recipe, train_indices=np.arange(split),
                                 eval_indices=np.arange(split, len(canvases)), seed=settings["seed"],
                                 progress=on_terminal(), checkpoint=snapshots)
    model, _ = load_or_train(path, meta, build, fit, snapshots)
    return model.eval()


class TextDataModule(L.LightningDataModule):
    """``train_set`` (CaptionedTrainingSet), ``test_canvases``, ``coherence`` of every training pair, and
    ``noise_stats`` (what the table notes say of the caption noise)."""

    def __init__(self, train_set: CaptionedTrainingSet, test_canvases: CaptionedCanvases, *, batch_size: int,
                 num_workers: int = 0):
        super().__init__()
        self.train_set, self.test_canvases = train_set, test_canvases
        self.batch_size, self.num_workers = batch_size, num_workers
        coherence, canvases = train_set.coherence, train_set.canvases
        misalignment = np.array([canvases[int(i)]["misalignment"] for i in train_set.indices[:2000]])
        # The noise.json schema of the class task; "relabel_accuracy" is here the share of captions wholly true.
        self.noise_stats = {"protocol": f"caption corruption of {canvases.spec.noisy_share:g} of the captions",
                            "temperature": None, "accuracy_label": "share of captions wholly true",
                            "relabel_accuracy": float(np.mean(misalignment == 0)),
                            "mean_coherence": float(coherence[train_set.indices].mean())}

    @property
    def splits(self) -> dict:
        return {"train": self.train_set, "test": self.test_canvases}

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers)


# Training canvases per scale (None: one per source training image); the smoke scale's keep CI fast (the scorer's
# similarities are computed over every training canvas).
TRAINING_CANVASES = {"cpu": None, "smoke": 2000}


def training_canvases(train: ImageArrays, source: str, scale: str, spec: CanvasSpec = CanvasSpec()
                      ) -> CaptionedCanvases:
    return CaptionedCanvases(train, VOCABULARIES[source], spec, length=TRAINING_CANVASES.get(scale))


def test_canvases(test: ImageArrays, source: str, spec: CanvasSpec = CanvasSpec()) -> CaptionedCanvases:
    """The evaluation canvases: the source's test images, true captions only, another seed than training's."""
    return CaptionedCanvases(test, VOCABULARIES[source], CanvasSpec(**{**asdict(spec), "noisy_share": 0.0,
                                                                       "seed": spec.seed + 1}))


def build_text_datamodule(source: str, *, scale: str, batch_size: int, filtered: bool, splits: dict[str, ImageArrays],
                          encoder, spec: CanvasSpec = CanvasSpec(), subset: int | None = None,
                          num_workers: int = 0, dropped_bins: int = FILTERED_BINS) -> TextDataModule:
    """Canvases of ``splits`` (the source dataset's train / test images), coherence from the cached scorer, the
    Filtered view (the ``dropped_bins`` least coherent bins left out) when ``filtered``, a fixed seeded ``subset`` of
    the pairs when given."""
    train = training_canvases(splits["train"], source, scale, spec)
    test = test_canvases(splits["test"], source, spec)
    bank = CaptionBank(encoder)
    scorer = load_contrastive("coherence", source, scale, train, bank)
    # The similarities depend on the scorer (its cache entry), the canvases and their captions: all in the key.
    identity = json.dumps([source, scale, asdict(spec), len(train), asdict(RECIPES[scale])], sort_keys=True)
    key = hashlib.sha256(identity.encode()).hexdigest()[:12]
    similarity = cached_array(cache_dir() / "contrastive" / f"{source}-similarity-{key}.npy",
                                   lambda: pair_similarity(scorer, train, bank, progress=on_terminal()))
    coherence = training_coherence(similarity)
    indices = filtered_indices(coherence, dropped=dropped_bins) if filtered else np.arange(len(train))
    if subset is not None:
        indices = np.sort(np.random.default_rng(spec.seed).permutation(indices)[:subset])
    return TextDataModule(CaptionedTrainingSet(train, bank, coherence, indices), test, batch_size=batch_size,
                          num_workers=num_workers)
