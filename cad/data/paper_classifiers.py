"""The authors' classifiers for the paper scale, built through timm with their preprocessing.

Architectures are constructed here; weights come from (in order) an explicit path, ``cache_dir()/weights/<file>``,
or the hub (timm's pretrained tags for DeiT; a Hugging Face repo for the CIFAR-10 networks). Offline, a missing
weights file is a ``ClassifierWeightsNotFoundError`` that says where to put it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from cad.data.preprocess import Classifier, Preprocess, TimmNet
from cad.paths import cache_dir

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


class ClassifierWeightsNotFoundError(FileNotFoundError):
    pass


def _timm(name: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        import timm  # imported on use: the cpu scale never needs it

        return timm.create_model(name, pretrained=False, num_classes=num_classes)

    return build


def _resnet18_cifar(num_classes: int) -> nn.Module:
    """ResNet-18 for 32x32 inputs: a 3x3 stride-1 stem and no max-pool."""
    model = _timm("resnet18")(num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


@dataclass(frozen=True)
class PaperClassifier:
    arch: str
    build: Callable[[int], nn.Module]  # num_classes -> randomly initialised timm model
    preprocess: Callable[[], Preprocess]
    weights_file: str  # looked for in cache_dir()/weights/
    timm_pretrained: str | None = None  # a timm "name.tag" whose pretrained weights are these
    hf_repo: tuple[str, str] | None = None  # (repo id, file name) of a timm-format state dict on the hub


PAPER_CLASSIFIERS: dict[tuple[str, str], PaperClassifier] = {
    ("cifar10", "noise"): PaperClassifier(
        "resnet18_cifar", _resnet18_cifar, lambda: Preprocess(None, "bilinear", HALF, HALF),
        "cifar10-noise-resnet18_cifar.pth", hf_repo=("edadaltocg/resnet18_cifar10", "pytorch_model.bin")),
    ("cifar10", "eval"): PaperClassifier(
        "vit_base_patch16_224", _timm("vit_base_patch16_224"),
        lambda: Preprocess(224, "bilinear", HALF, HALF), "cifar10-eval-vit_base_patch16_224.pth"),
    ("imagenet64", "noise"): PaperClassifier(
        "deit_small_patch16_224",
        _timm("deit_small_patch16_224"),
        lambda: Preprocess(224, "bicubic", HALF, HALF), "imagenet64-noise-deit_small_patch16_224.pth",
        timm_pretrained="deit_small_patch16_224.fb_in1k"),
    ("imagenet64", "eval"): PaperClassifier(
        "deit_base_distilled_patch16_384",
        _timm("deit_base_distilled_patch16_384"),
        lambda: Preprocess(384, "bicubic", IMAGENET_MEAN, IMAGENET_STD),
        "imagenet64-eval-deit_base_distilled_patch16_384.pth",
        timm_pretrained="deit_base_distilled_patch16_384.fb_in1k"),
}


def _load_weights(entry: PaperClassifier, model: nn.Module, weights: str | Path | None) -> None:
    tried = []
    for path in ([Path(weights)] if weights is not None else []) + [cache_dir() / "weights" / entry.weights_file]:
        if path.exists():
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
            log.info("%s: weights from %s", entry.arch, path)
            return
        tried.append(f"{path}: missing")
    try:
        if entry.timm_pretrained is not None:
            import timm

            pretrained = timm.create_model(entry.timm_pretrained, pretrained=True)
            model.load_state_dict(pretrained.state_dict())
            return
        if entry.hf_repo is not None:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(*entry.hf_repo)
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return
        tried.append("hub: no public timm-format weights known")
    except Exception as err:  # offline, or a hub file in another layout
        tried.append(f"hub {entry.timm_pretrained or entry.hf_repo}: {type(err).__name__}: {str(err)[:200]}")
    raise ClassifierWeightsNotFoundError(
        f"no weights for the paper-scale classifier {entry.arch}. Tried:\n  - " + "\n  - ".join(tried)
        + f"\nSave a timm-format state dict as {cache_dir() / 'weights' / entry.weights_file} or pass weights=<path>.")


def build_paper_classifier(dataset: str, role: str, num_classes: int, *, pretrained: bool = True,
                           weights: str | Path | None = None) -> Classifier:
    """The authors' classifier for (dataset, role); ``pretrained=False`` keeps the random initialisation."""
    try:
        entry = PAPER_CLASSIFIERS[(dataset, role)]
    except KeyError:
        known = ", ".join(f"{d}/{r}" for d, r in PAPER_CLASSIFIERS)
        raise ValueError(f"no paper-scale classifier for {dataset}/{role}; known: {known}") from None
    model = entry.build(num_classes)
    if pretrained:
        _load_weights(entry, model, weights)
    return Classifier(TimmNet(model), entry.preprocess(), name=entry.arch, num_classes=num_classes).eval()
