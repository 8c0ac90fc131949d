"""Metrics as pure functions on numpy arrays (features, statistics, logits, labels).

Public API relied on elsewhere:

- :func:`frechet_distance` (FID from two sets of statistics)
- :func:`prdc` (precision, recall, density, coverage; Naeem et al. 2020), re-exported from ``benchmarks.manifold``
- :func:`inception_score`, :func:`accuracy`, :func:`clip_score_from_embeddings`, :func:`mean_iou`
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

from benchmarks.manifold import PRDC_PROTOCOLS, prdc, prdc_with_protocol
from benchmarks.statistics import FeatureStats, as_feature_matrix, check_same_dim, feature_statistics

__all__ = [
    "frechet_distance",
    "fid_from_stats",
    "fid_from_features",
    "inception_score",
    "prdc",
    "prdc_with_protocol",
    "PRDC_PROTOCOLS",
    "accuracy",
    "clip_score_from_embeddings",
    "mean_iou",
]


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))`` with ``scipy.linalg.sqrtm``; if the product is
    singular (non-finite square root) ``eps`` is added to both diagonals, exactly as pytorch-fid does.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors differ in shape: mu1 {mu1.shape}, mu2 {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise ValueError(
            f"covariances must be (D, D) with D = {mu1.shape[0]}: sigma1 {sigma1.shape}, sigma2 {sigma2.shape}"
        )
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        warnings.warn(f"singular product of covariances; adding {eps} to their diagonals", RuntimeWarning)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm has a large imaginary component: {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_stats(real: FeatureStats, fake: FeatureStats) -> float:
    if real.dim != fake.dim:
        raise ValueError(f"feature dimensions differ: real stats D={real.dim}, fake stats D={fake.dim}")
    return frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma)


def fid_from_features(real_features, fake_features) -> float:
    real = as_feature_matrix(real_features, "real_features")
    fake = as_feature_matrix(fake_features, "fake_features")
    check_same_dim(real, fake)
    return fid_from_stats(feature_statistics(real), feature_statistics(fake))


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def inception_score(logits, splits: int = 10, *, shuffle_seed: int | None = 2020) -> tuple[float, float]:
    """Inception Score (mean, std over ``splits``) from classifier logits, in float64.

    ``exp(E_x KL(p(y|x) || p(y)))`` per split, with p(y) the split's mean prediction. The rows are permuted with
    ``np.random.RandomState(shuffle_seed)`` first (None: no shuffle), and split ``i`` is rows
    ``[i*N//splits, (i+1)*N//splits)`` -- torch-fidelity's protocol (``isc_features_to_metric``), so the two agree.
    torch-fidelity feeds it the Inception's ``logits_unbiased``.
    """
    x = as_feature_matrix(logits, "logits")
    n = x.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits must be between 1 and the number of samples ({n}), got {splits}")
    if shuffle_seed is not None:
        x = x[np.random.RandomState(shuffle_seed).permutation(n)]
    log_p = _log_softmax(x)
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        rows = slice(i * n // splits, (i + 1) * n // splits)
        p_chunk, log_p_chunk = p[rows], log_p[rows]
        log_q = np.log(p_chunk.mean(axis=0, keepdims=True))
        kl = (p_chunk * (log_p_chunk - log_q)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def accuracy(logits_or_preds, requested_labels) -> float:
    """Fraction of samples the evaluation classifier assigns to the class they were generated for.

    ``logits_or_preds``: (N, C) logits/probabilities (argmax is taken) or (N,) predicted labels.
    """
    preds = np.asarray(logits_or_preds)
    labels = np.asarray(requested_labels)
    if preds.ndim == 2:
        preds = preds.argmax(axis=1)
    elif preds.ndim != 1:
        raise ValueError(f"expected (N, C) logits or (N,) predictions, got shape {preds.shape}")
    if labels.ndim != 1 or labels.shape[0] != preds.shape[0]:
        raise ValueError(f"requested_labels must be (N,) with N = {preds.shape[0]}, got shape {labels.shape}")
    if labels.shape[0] == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float(np.mean(preds.astype(np.int64) == labels.astype(np.int64)))


def predicted_class_shares(logits_or_preds, num_classes: int) -> np.ndarray:
    """(num_classes,) share of the samples the evaluation classifier puts in each class, whatever was requested:
    a generator collapsing onto a few classes shows here before it shows in the accuracy."""
    preds = np.asarray(logits_or_preds)
    preds = preds.argmax(axis=1) if preds.ndim == 2 else preds
    if preds.ndim != 1 or preds.shape[0] == 0:
        raise ValueError(
            f"expected (N, C) logits or (N,) predictions with N > 0, got shape {np.shape(logits_or_preds)}"
        )
    return np.bincount(preds.astype(np.int64), minlength=num_classes)[:num_classes] / preds.shape[0]


def clip_score_from_embeddings(image_embeddings, text_embeddings) -> float:
    """CLIPScore (Hessel et al. 2021, torchmetrics' convention): mean over pairs of ``100 * max(cos(i, t), 0)``."""
    img = as_feature_matrix(image_embeddings, "image_embeddings")
    txt = as_feature_matrix(text_embeddings, "text_embeddings")
    if img.shape != txt.shape:
        raise ValueError(f"image and text embeddings must pair up: {img.shape} vs {txt.shape}")
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    cos = (img * txt).sum(axis=1)
    return float(np.mean(100.0 * np.maximum(cos, 0.0)))


def mean_iou(preds, target, num_classes: int, *, ignore_index: int | None = None) -> float:
    """Mean intersection over union over classes (torchmetrics ``multiclass_jaccard_index``, macro average).

    ``preds``: integer label maps (N, H, W) or logits (N, C, H, W); ``target``: (N, H, W). Classes absent from both
    preds and target are left out of the mean (torchmetrics' behaviour with ``zero_division``).
    """
    import torch
    from torchmetrics.functional.classification import multiclass_jaccard_index

    p = torch.as_tensor(np.asarray(preds))
    t = torch.as_tensor(np.asarray(target)).long()
    if p.ndim == t.ndim + 1:
        p = p.argmax(dim=1)
    if p.shape != t.shape:
        raise ValueError(f"preds and target label maps differ in shape: {tuple(p.shape)} vs {tuple(t.shape)}")
    value = multiclass_jaccard_index(
        p.long(), t, num_classes=num_classes, average="macro", ignore_index=ignore_index
    )
    return float(value)
