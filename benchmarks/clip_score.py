"""CLIPScore of generated images against their captions, with an open_clip model (configurable).

The paper scores text-to-image samples with a large CLIP; ``build_open_clip_scorer`` takes any open_clip model name and
pretrained tag (weights download from the hub, so it needs the internet or a local checkpoint path). Tests use a tiny
randomly initialised ``open_clip.CLIP``. The score itself is :func:`benchmarks.metrics.clip_score_from_embeddings`
(``100 * max(cos, 0)``, torchmetrics' definition).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.features import gray_to_rgb, to_uint8_nchw
from benchmarks.metrics import clip_score_from_embeddings

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_preprocess(x_uint8: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 NCHW -> CLIP input: RGB, bicubic resize of a square image to ``image_size``, CLIP mean/std.
    (open_clip's PIL transform resizes the short side and centre-crops; for square images the two agree up to the
    resampling filter.)"""
    x = gray_to_rgb(x_uint8).to(torch.float32) / 255.0
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"clip_preprocess expects square images, got {tuple(x.shape[-2:])}")
    if x.shape[-1] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bicubic", align_corners=False).clamp(0, 1)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class ClipScorer:
    """``model`` with ``encode_image``/``encode_text`` (open_clip), its ``tokenizer`` and input ``image_size``."""

    def __init__(self, model: torch.nn.Module, tokenizer: Callable[[Sequence[str]], torch.Tensor], image_size: int, name: str):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.name = name

    @torch.inference_mode()
    def embeddings(self, images: np.ndarray, captions: Sequence[str], batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        if len(images) != len(captions):
            raise ValueError(f"{len(images)} images but {len(captions)} captions")
        img, txt = [], []
        for start in range(0, len(images), batch_size):
            x = clip_preprocess(to_uint8_nchw(images[start : start + batch_size]), self.image_size)
            img.append(self.model.encode_image(x).double().numpy())
            txt.append(self.model.encode_text(self.tokenizer(list(captions[start : start + batch_size]))).double().numpy())
        return np.concatenate(img), np.concatenate(txt)

    def score(self, images: np.ndarray, captions: Sequence[str], batch_size: int = 32) -> float:
        return clip_score_from_embeddings(*self.embeddings(images, captions, batch_size))


def build_open_clip_scorer(model_name: str = "ViT-H-14-quickgelu", pretrained: str = "metaclip_fullcc", device: str = "cpu") -> ClipScorer:
    """An open_clip model by name (defaults: the MetaCLIP H/14 the paper uses for coherence; needs its weights)."""
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained, device=device)
    image_size = model.visual.image_size
    image_size = image_size[0] if isinstance(image_size, (tuple, list)) else image_size
    return ClipScorer(model, open_clip.get_tokenizer(model_name), int(image_size), name=f"open_clip:{model_name}:{pretrained}")
