"""open_clip models loaded offline, the image-text cosine of (image, caption) pairs, and CLIPScore: the paper-scale
text-to-image task's two CLIPs (two roles, never the same network).

- Coherence (paper sec. 4.1): MetaCLIP H/14, open_clip ``ViT-H-14-quickgelu`` with its ``metaclip_fullcc`` weights.
  Each training pair's cosine is cut into 8 quantile bins over the training set (cad.conditioning.text_coherence);
  cad.data.score_shards computes and stores them.
- CLIPScore of generated samples: the paper cites CLIP [41] without naming the network; the authors' evaluation code
  (cad/metrics/sample_and_eval.py) uses torchmetrics' ``CLIPScore("openai/clip-vit-large-patch14")``, OpenAI's
  ViT-L/14, which is open_clip ``ViT-L-14-quickgelu`` with its ``openai`` weights. The score is on torchmetrics'
  scale, ``100 * cos`` (Hessel et al.'s ``w = 2.5`` is not used: the paper's values, about 26, are on this scale).
  The suite's formula, :func:`benchmarks.metrics.clip_score_from_embeddings`, is the mean over pairs of
  ``100 * max(cos, 0)``, the per-pair clamp that Hessel et al. and torchmetrics' documentation define; torchmetrics'
  code (1.9) clamps the mean instead, ``max(mean(100 * cos), 0)``. The two differ only where some pair's cosine is
  negative.

Both take images through the model's own evaluation transform (open_clip's: shorter side to the input size, bicubic,
centre crop, CLIP mean / std: the steps of torchmetrics' CLIPProcessor) and captions through its tokenizer (truncated
to its context, 77 tokens). The cosine is between the projected embeddings ``encode_image`` and ``encode_text``, as in
the authors' scoring script.

Nothing is downloaded: :func:`load_clip` takes the open_clip architecture name and a local checkpoint file, and a
missing file raises :class:`ClipWeightsNotFoundError`, which names the model, the weights published for it and how to
bring them here. open_clip's pretrained *tags* (which download) are not accepted in place of a file.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from cad.hardware import autocast

PAPER_COHERENCE_MODEL = "ViT-H-14-quickgelu"  # MetaCLIP H/14 (weights: open_clip tag "metaclip_fullcc")
PAPER_CLIPSCORE_MODEL = "ViT-L-14-quickgelu"  # OpenAI CLIP ViT-L/14 (weights: open_clip tag "openai")


class ClipWeightsNotFoundError(FileNotFoundError):
    """An open_clip model's weights (or tokenizer) are not on this machine; the message says how to provide them."""


class ClipModel:
    """A frozen open_clip model with its ``tokenizer`` (captions -> token ids (B, L)) and ``preprocess`` (PIL image ->
    normalised (3, S, S) input); ``name`` identifies the weights (it keys cached scores)."""

    def __init__(self, model: nn.Module, tokenizer: Callable[[list[str]], Tensor],
                 preprocess: Callable[[Image.Image], Tensor], name: str):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer, self.preprocess, self.name = tokenizer, preprocess, name

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def wrap_open_clip(model: nn.Module, tokenizer: Callable[[list[str]], Tensor], name: str) -> ClipModel:
    """A ``ClipModel`` of an open_clip model built in memory (tests: a tiny randomly initialised ``open_clip.CLIP``),
    with open_clip's default evaluation transform at the model's input size."""
    import open_clip

    size = model.visual.image_size
    return ClipModel(model, tokenizer, open_clip.image_transform(size, is_train=False), name)


def _weights_help(model_name: str) -> str:
    """Where the weights published for ``model_name`` can be had, tag by tag (from open_clip's registry)."""
    import open_clip

    lines = []
    for tag in open_clip.list_pretrained_tags_by_model(model_name):
        cfg = open_clip.get_pretrained_cfg(model_name, tag)
        sources = []
        if cfg.get("hf_hub"):
            sources.append(f"Hugging Face repo {cfg['hf_hub'].strip('/')} (open_clip_model.safetensors or "
                           f"open_clip_pytorch_model.bin)")
        if cfg.get("url"):
            sources.append(cfg["url"])
        lines.append(f"  - weights '{tag}': {' or '.join(sources) or 'see open_clip'}")
    example = open_clip.list_pretrained_tags_by_model(model_name)
    tag = example[0] if example else "<tag>"
    return ("\n".join(lines) or "  (open_clip knows no published weights for it: use your own checkpoint)") + (
        f"\nOn a machine with internet, `python -c \"import open_clip; open_clip.create_model('{model_name}', "
        f"pretrained='{tag}', cache_dir='clip-weights')\"` downloads them; copy the checkpoint file it writes under "
        f"clip-weights/ here and pass its path.")


def load_clip(model_name: str, checkpoint: str | Path | None, *, device: torch.device | str = "cpu") -> ClipModel:
    """open_clip architecture ``model_name`` (e.g. ``ViT-H-14-quickgelu``, the paper's MetaCLIP H/14) with the weights
    of the local file ``checkpoint`` (.safetensors, .bin, .pt: open_clip's or the original release's format)."""
    import open_clip

    if model_name not in open_clip.list_models():
        close = difflib.get_close_matches(model_name, open_clip.list_models(), n=5, cutoff=0.5)
        raise ValueError(f"unknown open_clip model '{model_name}'; close names: {', '.join(close) or 'none'} "
                         f"(all: open_clip.list_models()). The paper's coherence model is '{PAPER_COHERENCE_MODEL}'.")
    path = Path(checkpoint) if checkpoint is not None else None
    if path is None or not path.is_file():
        where = f"checkpoint file '{path}' not found" if path is not None else "no checkpoint file given"
        raise ClipWeightsNotFoundError(
            f"open_clip model '{model_name}': {where}. Nothing is downloaded here (open_clip's pretrained tags are not "
            f"accepted in place of a file). Put its weights on this machine and pass the file's path "
            f"(--checkpoint FILE). Published weights:\n{_weights_help(model_name)}")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(path), device=device)
    except (RuntimeError, KeyError, ValueError) as err:
        raise ValueError(f"'{path}' does not hold weights of open_clip '{model_name}' "
                         f"({type(err).__name__}: {str(err).splitlines()[0][:300]})") from err
    try:
        tokenizer = open_clip.get_tokenizer(model_name)
    except Exception as err:  # a Hugging Face tokenizer that is not cached here
        raise ClipWeightsNotFoundError(
            f"the tokenizer of open_clip model '{model_name}' is not on this machine "
            f"({type(err).__name__}: {str(err).splitlines()[0][:300]}); copy its Hugging Face cache here "
            f"(~/.cache/huggingface/hub)") from err
    return ClipModel(model, tokenizer, preprocess, name=f"open_clip:{model_name}:{path.name}")


def pair_cosine(clip: ClipModel, pixels: Tensor, captions: Sequence[str], *, precision: str = "32-true") -> Tensor:
    """Cosines (B,) float32 between preprocessed images ``pixels`` (B, 3, S, S) and their ``captions``."""
    image, text = _embed(clip, pixels, captions, precision)
    return (image * text).sum(-1)


def image_text_cosine(clip: ClipModel, images, captions: Sequence[str], *, batch_size: int = 64,
                      precision: str = "32-true") -> np.ndarray:
    """Cosine (N,) float64 between each image and its caption. ``images``: a sequence of PIL images, uint8 numpy
    (N, H, W[, C]) or a uint8 tensor (N, C, H, W); any size (the model's transform resizes and crops)."""
    return np.concatenate([(i * t).sum(-1) for i, t in _embeddings(clip, images, captions, batch_size, precision)])


def clip_score(clip: ClipModel, images, captions: Sequence[str], *, batch_size: int = 64,
               precision: str = "32-true") -> float:
    """CLIPScore, the mean of ``100 * max(cos, 0)`` (see the module docstring), of ``images`` against ``captions``."""
    from benchmarks.metrics import clip_score_from_embeddings

    image, text = zip(*_embeddings(clip, images, captions, batch_size, precision))
    return clip_score_from_embeddings(np.concatenate(image), np.concatenate(text))


@torch.inference_mode()
def _embed(clip: ClipModel, pixels: Tensor, captions: Sequence[str], precision: str) -> tuple[Tensor, Tensor]:
    if isinstance(captions, str) or len(pixels) != len(captions):
        raise ValueError(f"{len(pixels)} images but {1 if isinstance(captions, str) else len(captions)} captions: "
                         f"give one caption (a str) per image")
    device = clip.device
    tokens = clip.tokenizer([str(c) for c in captions]).to(device)
    with autocast(device, precision):
        image = clip.model.encode_image(pixels.to(device))
        text = clip.model.encode_text(tokens)
    return F.normalize(image.float(), dim=-1), F.normalize(text.float(), dim=-1)


def _embeddings(clip: ClipModel, images, captions: Sequence[str], batch_size: int, precision: str
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Unit-norm (image, text) embeddings, float64 numpy, batch by batch."""
    if len(images) != len(captions) or len(images) == 0:
        raise ValueError(f"{len(images)} images but {len(captions)} captions: give one caption per image (N >= 1)")
    for start in range(0, len(images), batch_size):  # converted batch by batch: no second copy of every image
        pixels = torch.stack([clip.preprocess(img) for img in _as_pil(images[start:start + batch_size])])
        image, text = _embed(clip, pixels, captions[start:start + batch_size], precision)
        yield image.double().cpu().numpy(), text.double().cpu().numpy()


def _as_pil(images) -> list[Image.Image]:
    if isinstance(images, (list, tuple)) and all(isinstance(img, Image.Image) for img in images):
        return list(images)
    if isinstance(images, np.ndarray):
        from benchmarks.features import to_uint8_nchw

        images = to_uint8_nchw(images)
    if isinstance(images, Tensor) and images.dtype == torch.uint8 and images.ndim == 4 and images.shape[1] in (1, 3):
        return [Image.fromarray(x.permute(1, 2, 0).squeeze(-1).cpu().numpy()).convert("RGB") for x in images]
    raise TypeError("images must be a sequence of PIL images, uint8 numpy (N, H, W[, C]) or a uint8 tensor "
                    f"(N, C, H, W) with 1 or 3 channels; got {type(images).__name__}")
