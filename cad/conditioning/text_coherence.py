"""Coherence for image-text pairs (paper sec. 4.1, text-to-image): an image-text similarity cut into ``num_bins``
quantile bins over the training set, the bin index normalised to {0, 1/(n-1), ..., 1}; and the random-character
prompt that CA-CFG uses as its negative at coherence 0.

The paper's similarity is MetaCLIP H/14's cosine; the cpu scale's is the suite's own contrastive scorer
(cad.data.contrastive). Quantile bins make the coherence a rank: 8 levels holding an eighth of the training pairs each,
whatever the scorer's scale.
"""
from __future__ import annotations

import string

import numpy as np

NUM_BINS = 8
NEGATIVE_CHARACTERS = string.ascii_lowercase + " "


def quantile_edges(scores: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """The ``num_bins - 1`` inner bin edges: the training scores' quantiles at 1/n, ..., (n-1)/n."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or len(scores) < num_bins:
        raise ValueError(f"need a 1-D array of at least num_bins={num_bins} training scores, got shape {scores.shape}")
    return np.quantile(scores, np.arange(1, num_bins) / num_bins)


def binned_coherence(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Scores -> coherence in {0, 1/(n-1), ..., 1}: the index of the bin a score falls in (edges from the training set;
    a score equal to an edge goes to the upper bin), over n - 1."""
    index = np.searchsorted(edges, np.asarray(scores, dtype=np.float64), side="right")
    return (index / len(edges)).astype(np.float32)


def random_character_prompt(rng: np.random.Generator, length: int = 32) -> str:
    """A prompt of ``length`` random lowercase letters and spaces: CA-CFG's negative (eq. 4), fed at coherence 0."""
    return "".join(rng.choice(list(NEGATIVE_CHARACTERS), size=length))
