"""The semantic-map task's data at the cpu and smoke scales (issue 12): captioned canvases (cad.data.canvases) whose
exact class maps play the ground truth, the maps a small segmentation network *predicts* for them playing the noisy
training maps, and that network's per-pixel maximum softmax playing the coherence map (the paper's MaskFormer,
trained on COCO and applied to ADE20K).

    data = build_map_datamodule("fashion_mnist", scale="cpu", batch_size=64, splits=...)

An item: ``image`` (1, H, W) in [-1, 1], ``map`` (K + 1, H, W) one-hot of the predicted classes (the last channel is
the background), ``coherence_map`` (1, H, W) in [0, 1], ``index``. The segmenters (role ``confidence`` and the
stronger ``eval`` one that measures mIoU) and the predicted maps are cached under ``cache_dir()/segmenters/``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from cad.conditioning.coherence_maps import confidence_coherence
from cad.data.canvases import CanvasRecipe, CanvasSpec, CaptionedCanvases, VOCABULARIES, canvas_batch
from cad.data.classifier_training import load_or_train
from cad.data.formats import ImageArrays
from cad.data.segmenters import ROLES, Segmenter, train_segmenter
from cad.data.train_set import TrainSetDataModule
from cad.io import cached_array
from cad.paths import cache_dir

CANVASES = {"cpu": 20000, "smoke": 600}  # training canvases per scale
RECIPES = {"cpu": CanvasRecipe(steps=1500, batch_size=64), "smoke": CanvasRecipe(steps=30, batch_size=16,
                                                                                 eval_size=100)}
MAP_SPEC = CanvasSpec(noisy_share=0.0)  # the 32x64 two-object canvases; their captions are not used


def map_canvases(train: ImageArrays, source: str, scale: str, spec: CanvasSpec = MAP_SPEC) -> CaptionedCanvases:
    return CaptionedCanvases(train, VOCABULARIES[source], spec, length=CANVASES[scale])


def _judged_from(count: int) -> int:
    """The first of the canvases that judge a segmenter: the last 10% of ``count``."""
    return int(0.9 * count)


def segmenter_train_size(role: str, count: int) -> int:
    """How many of ``count`` canvases (the first ones) the segmenter of ``role`` trains on: its ``train_size``, at most
    the first 90% (the last 10% judge it)."""
    split = _judged_from(count)
    return min(ROLES[role]["train_size"] or split, split)


def load_segmenter(role: str, source: str, scale: str, canvases: CaptionedCanvases) -> Segmenter:
    """The cached segmenter of ``role``: ``confidence`` trained on its few canvases (``train_size``), ``eval`` on the
    first 90% of ``canvases``; both judged by mIoU on the last 10%."""
    settings, recipe = ROLES[role], RECIPES[scale]
    split = _judged_from(len(canvases))
    train = np.arange(segmenter_train_size(role, len(canvases)))
    meta = json.loads(json.dumps({"role": role, **settings, "recipe": asdict(recipe), "source": source,
                                  "canvas": asdict(canvases.spec), "canvases": len(canvases)}))

    def build() -> Segmenter:
        torch.manual_seed(settings["seed"])
        return Segmenter(canvases.num_classes, width=settings["width"])

    def fit(model: Segmenter) -> float:
        return train_segmenter(model, canvases, recipe, train_indices=train, eval_indices=np.arange(split,
                                                                                                     len(canvases)),
                               seed=settings["seed"])

    model, _ = load_or_train(cache_dir() / "segmenters" / f"{source}-{role}-{scale}.pt", meta, build, fit)
    return model.eval()


@torch.no_grad()
def predicted_maps(segmenter: Segmenter, canvases, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(classes (N, H, W) uint8, confidence (N, H, W) float16): the segmenter's argmax and maximum softmax per pixel."""
    classes, confidence = [], []
    for start in range(0, len(canvases), batch_size):
        images, _ = canvas_batch(canvases, range(start, min(start + batch_size, len(canvases))), "class_map")
        logits = segmenter(images)
        classes.append(logits.argmax(1).to(torch.uint8).numpy())
        confidence.append(confidence_coherence(logits)[:, 0].to(torch.float16).numpy())
    return np.concatenate(classes), np.concatenate(confidence)


def one_hot_map(classes: torch.Tensor, num_channels: int) -> torch.Tensor:
    """(B, H, W) integer classes -> (B, K + 1, H, W) float one-hot (the control image's map channels)."""
    return F.one_hot(classes.long(), num_channels).permute(0, 3, 1, 2).float()


class MapTrainingSet(Dataset):
    def __init__(self, canvases: CaptionedCanvases, classes: np.ndarray, confidence: np.ndarray):
        self.canvases, self.classes, self.confidence = canvases, classes, confidence
        self.num_channels = canvases.num_classes + 1

    def __len__(self) -> int:
        return len(self.canvases)

    def __getitem__(self, index: int) -> dict:
        image = torch.from_numpy(self.canvases[index]["image"]).float() / 127.5 - 1.0
        classes = torch.from_numpy(self.classes[index])
        return {"image": image, "map": one_hot_map(classes[None], self.num_channels)[0],
                "coherence_map": torch.from_numpy(self.confidence[index].astype(np.float32))[None], "index": index}


NOISE_SAMPLE = 2000  # training canvases the noise note measures, spread evenly over the set


def map_noise_stats(canvases: CaptionedCanvases, classes: np.ndarray, confidence: np.ndarray | None = None,
                    count: int = NOISE_SAMPLE) -> dict:
    """How far the predicted training maps ``classes`` are from the true ones, on ``count`` canvases spread evenly over
    the training set (the confidence segmenter trained on its first few: measuring there alone flatters it). The
    headline is the accuracy on the *object* pixels (true class not the background): the background is most of a
    canvas and nearly always right, so the all-pixel accuracy hides how often an object's class is wrong. With
    ``confidence`` (the coherence maps), also its mean on the right and on the wrong object pixels: how well the
    coherence flags the errors CAD is meant to discount."""
    indices = np.unique(np.linspace(0, len(canvases) - 1, min(count, len(canvases))).astype(int))
    truth = np.stack([canvases[int(i)]["class_map"] for i in indices])
    right, objects = classes[indices] == truth, truth != canvases.num_classes
    return {"protocol": "maps predicted by the confidence segmenter", "temperature": None,
            "accuracy_label": "object-pixel accuracy against the true maps",
            "relabel_accuracy": float(right[objects].mean()) if objects.any() else 1.0,
            "detail": f"all pixels {right.mean():.3f}; on {len(indices)} canvases spread over the training set, "
                      f"the segmenter trained on the first {segmenter_train_size('confidence', len(canvases))}"
                      + _flagged(confidence, indices, right, objects)}


def _flagged(confidence: np.ndarray | None, indices: np.ndarray, right: np.ndarray, objects: np.ndarray) -> str:
    """"; mean coherence on right / wrong object pixels a / b" (empty without a coherence map or a wrong pixel)."""
    wrong = objects & ~right
    if confidence is None or not wrong.any():
        return ""
    coherence = confidence[indices].astype(np.float32)
    return f"; mean coherence on right / wrong object pixels {coherence[objects & right].mean():.3f} / " \
           f"{coherence[wrong].mean():.3f}"


class MapDataModule(TrainSetDataModule):
    def __init__(self, train_set: MapTrainingSet, *, batch_size: int, num_workers: int = 0):
        super().__init__(train_set, batch_size=batch_size, num_workers=num_workers)
        self.noise_stats = map_noise_stats(train_set.canvases, train_set.classes, train_set.confidence)


def build_map_datamodule(source: str, *, scale: str, batch_size: int, splits: dict[str, ImageArrays],
                         num_workers: int = 0) -> MapDataModule:
    canvases = map_canvases(splits["train"], source, scale)
    segmenter = load_segmenter("confidence", source, scale, canvases)
    # The predictions depend on the segmenter (its cache entry's settings) and the canvases: all in the key.
    identity = json.dumps([source, scale, asdict(canvases.spec), len(canvases), ROLES["confidence"],
                           asdict(RECIPES[scale])], sort_keys=True)
    key = f"{source}-maps-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"
    computed: list = []

    def part(i: int):
        def compute() -> np.ndarray:
            if not computed:
                computed.extend(predicted_maps(segmenter, canvases))
            return computed[i]
        return compute

    root = cache_dir() / "segmenters"
    classes = cached_array(root / f"{key}-classes.npy", part(0))
    confidence = cached_array(root / f"{key}-confidence.npy", part(1))
    return MapDataModule(MapTrainingSet(canvases, classes, confidence), batch_size=batch_size, num_workers=num_workers)
