"""Two different classifiers per dataset: the ``noise`` role makes the noisy labels, the ``eval`` role measures the
accuracy of generated samples (and serves as the benchmark's domain feature extractor).

- ``cpu`` / ``smoke`` scales: small CNNs trained here on the clean training set and cached under
  ``cache_dir()/classifiers/<dataset>-<role>-<arch>-<scale>.pt`` (+ ``.json`` metadata with the test accuracy).
  ``noise``: LeNet-5; ``eval``: a deeper CNN with batch norm. The smoke scale trains briefly on a subset.
- ``paper`` scale: the authors' timm networks (``paper_classifiers.py``).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from torch import nn

from cad.data.classifier_nets import build_small
from cad.data.classifier_training import TrainRecipe, load_or_train, recipe_meta, test_accuracy, train_classifier
from cad.data.paper_classifiers import PAPER_CLASSIFIERS, build_paper_classifier
from cad.data.preprocess import Classifier, Preprocess
from cad.data.registry import get_spec
from cad.data.sources import load_splits
from cad.paths import cache_dir

log = logging.getLogger(__name__)

ROLES = ("noise", "eval")
SCALES = ("smoke", "cpu", "paper")
SMALL_ARCH_BY_ROLE = {"noise": "lenet", "eval": "convbn"}
# (scale, arch) -> recipe; (scale, arch, dataset) overrides it. The cpu eval nets must reach 92% (Fashion-MNIST) and
# 99% (MNIST) test accuracy. Fashion-MNIST needs more epochs and flips: 6 epochs without flips gave 91.9%, 10 with
# them 92.0%, 15 with them 92.8% (3 minutes on one core).
RECIPES: dict[tuple[str, ...], TrainRecipe] = {
    ("cpu", "lenet"): TrainRecipe(epochs=4),
    ("cpu", "convbn"): TrainRecipe(epochs=6),
    ("cpu", "convbn", "fashion_mnist"): TrainRecipe(epochs=15, hflip=True),
    ("smoke", "lenet"): TrainRecipe(epochs=1, train_subset=4096, test_subset=2000),
    ("smoke", "convbn"): TrainRecipe(epochs=1, train_subset=4096, test_subset=2000),
}


def recipe_for(scale: str, arch: str, dataset: str) -> TrainRecipe:
    return RECIPES.get((scale, arch, dataset), RECIPES[(scale, arch)])


def _check(role: str, scale: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role={role!r}; allowed: {', '.join(ROLES)}")
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r}; allowed: {', '.join(SCALES)}")


def classifier_arch(dataset: str, role: str, scale: str) -> str:
    _check(role, scale)
    if scale == "paper":
        return PAPER_CLASSIFIERS[(dataset, role)].arch
    return SMALL_ARCH_BY_ROLE[role]


def classifier_id(dataset: str, role: str, scale: str) -> str:
    """``<arch>-<scale>``: names the classifier in cache keys (noisy labels are keyed by it)."""
    return f"{classifier_arch(dataset, role, scale)}-{scale}"


def cache_path(dataset: str, role: str, scale: str) -> Path:
    return cache_dir() / "classifiers" / f"{dataset}-{role}-{classifier_arch(dataset, role, scale)}-{scale}.pt"


def build_small_classifier(dataset: str, role: str) -> Classifier:
    spec = get_spec(dataset)
    channels, size, _ = spec.image_shape
    arch = SMALL_ARCH_BY_ROLE[role]
    net = build_small(arch, in_channels=channels, num_classes=spec.num_classes, image_size=size)
    return Classifier(net, Preprocess(None, "bilinear", (0.5,) * channels, (0.5,) * channels), name=arch,
                      num_classes=spec.num_classes)


def _small_classifier(dataset: str, role: str, scale: str, root: str | Path | None,
                      device: str | torch.device = "cpu") -> tuple[Classifier, dict]:
    arch = SMALL_ARCH_BY_ROLE[role]
    recipe = recipe_for(scale, arch, dataset)
    expected = {"dataset": dataset, "role": role, "arch": arch, "scale": scale, **recipe_meta(recipe)}

    def fit(model: nn.Module) -> float:
        splits = load_splits(get_spec(dataset).source, root)
        train_classifier(model, splits["train"], recipe, desc=f"{dataset}/{role} {arch} ({scale})", device=device)
        return test_accuracy(model, splits["test"], limit=recipe.test_subset, device=device)

    return load_or_train(cache_path(dataset, role, scale), expected, lambda: build_small_classifier(dataset, role), fit)


def load_classifier(dataset: str, role: str, *, scale: str, device: str = "cpu", root: str | Path | None = None,
                    pretrained: bool = True, weights: str | Path | None = None) -> Classifier:
    """The ``role`` ("noise" or "eval") classifier of ``dataset`` at ``scale``, in eval mode on ``device`` (where it
    is also trained, on first use).

    ``forward(x)`` takes images in [-1, 1] at the dataset's resolution and returns logits; ``features(x)`` returns
    the penultimate features. cpu/smoke: trained on first use (data from ``root`` or the usual places) and cached.
    paper: ``pretrained=False`` gives the architecture with random weights; ``weights`` is a state-dict path.
    """
    _check(role, scale)
    spec = get_spec(dataset)
    if scale == "paper":
        model = build_paper_classifier(dataset, role, spec.num_classes, pretrained=pretrained, weights=weights)
    else:
        model, _ = _small_classifier(dataset, role, scale, root, device)
    return model.to(device).eval()


def classifier_test_accuracy(dataset: str, role: str, scale: str, *, root: str | Path | None = None) -> float:
    """Test-set accuracy recorded in the classifier's cache metadata (measured, and cached, on first call)."""
    _check(role, scale)
    if scale != "paper":
        return float(_small_classifier(dataset, role, scale, root)[1]["test_accuracy"])
    meta_path = cache_path(dataset, role, scale).with_suffix(".json")
    if meta_path.exists():
        return float(json.loads(meta_path.read_text())["test_accuracy"])
    from cad.io import atomic_write_json

    model = load_classifier(dataset, role, scale=scale)
    accuracy = test_accuracy(model, load_splits(get_spec(dataset).source, root)["test"])
    atomic_write_json(meta_path, {"dataset": dataset, "role": role, "arch": classifier_arch(dataset, role, scale),
                                  "scale": scale, "test_accuracy": accuracy})
    return accuracy
