"""Image-caption pairs in WebDataset-style tar shards (CC12M / LAION as img2dataset writes them), each pair's coherence
from a precomputed scores file: the paper-scale training data of the text-to-image task.

Layout: a folder of ``*.tar`` shards, searched recursively (so ``cc12m/`` and ``laion_aesthetics_6plus/`` can sit side
by side, as the paper trains on a mix of the two). The members of one pair share a key, the member name up to the first
dot of its base name (WebDataset's rule): ``<key>.jpg|.jpeg|.png|.webp`` the image, ``<key>.txt`` the caption (UTF-8),
``<key>.json`` optional metadata. A key without an image or a caption is skipped and counted (``ShardIndex.skipped``).

The index (cad.data.shard_index) holds every pair's shard, key and the byte ranges of its members, cached per shard.
Items are read by seeking into the shard: random access, so any
sampler, shuffling and number of workers work as with an in-memory dataset.

The scores file (``python -m cad.data.score_shards`` writes it) holds each pair's raw image-text cosine and the 8
quantile bin edges over the training set; an item's ``coherence`` is its bin index / 7
(cad.conditioning.text_coherence). An item::

    image (3, R, R) float32 in [-1, 1]   shorter side to R (bicubic), centre crop
    caption str    coherence () float32 in {0, 1/7, ..., 1}    similarity () float32 (the raw cosine)
    key str        index int
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cad.conditioning.text_coherence import binned_coherence
from cad.data.images import square_image
from cad.data.shard_index import CaptionShardsError, ShardIndex, listed_names, shard_starts, load_index
from cad.io import atomic_path


@dataclass
class ShardScores:
    """Each pair's raw image-text cosine, pairs in shard order (contiguous per shard), and the inner quantile
    ``edges`` (num_bins - 1) over all of them (the training set). ``model`` names the scorer (its weights file),
    ``precision`` the arithmetic it ran in."""

    shards: list[str]
    shard_bytes: np.ndarray  # (S,) int64: the shard sizes when scored
    counts: np.ndarray  # (S,) int64
    keys: np.ndarray  # (N,) str
    similarity: np.ndarray  # (N,) float32
    edges: np.ndarray  # (num_bins - 1,) float64
    model: str
    precision: str

    def __post_init__(self) -> None:
        self.starts = shard_starts(self.counts)

    @property
    def num_bins(self) -> int:
        return len(self.edges) + 1

    def coherence(self) -> np.ndarray:
        return binned_coherence(self.similarity, self.edges)

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, shards=np.array(self.shards, dtype=str), shard_bytes=self.shard_bytes, counts=self.counts,
                     keys=self.keys, similarity=self.similarity, edges=self.edges,
                     meta=np.array(json.dumps({"model": self.model, "precision": self.precision})))

    @classmethod
    def load(cls, path: str | Path) -> "ShardScores":
        path = Path(path)
        if not path.is_file():
            raise CaptionShardsError(f"scores file {path} not found; compute it with `python -m cad.data.score_shards "
                                     f"--shards <shard folder> --checkpoint <MetaCLIP H/14 weights file> --out {path}`")
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls([str(s) for s in z["shards"]], z["shard_bytes"], z["counts"], z["keys"], z["similarity"],
                       z["edges"], meta["model"], meta["precision"])


def align_similarity(index: ShardIndex, scores: ShardScores, scores_path: str | Path = "the scores file"
                     ) -> np.ndarray:
    """The scored cosine of each pair of ``index`` (N,), matched by shard and key; a shard or key without a score,
    or a shard changed since it was scored, raises a ``CaptionShardsError`` that names them."""
    scored = {name: j for j, name in enumerate(scores.shards)}
    out = np.empty(len(index), dtype=np.float32)
    unscored, changed, missing_keys = [], [], []
    for s, name in enumerate(index.shards):
        j = scored.get(name)
        if j is None:
            unscored.append(name)
            continue
        if scores.shard_bytes[j] != index.shard_bytes[s]:
            changed.append(name)
            continue
        keys, rows = index.keys[index.rows(s)], slice(int(scores.starts[j]), int(scores.starts[j + 1]))
        scored_keys, similarity = scores.keys[rows], scores.similarity[rows]
        if np.array_equal(keys, scored_keys):
            out[index.rows(s)] = similarity
            continue
        lookup = dict(zip(scored_keys.tolist(), similarity.tolist()))  # keys in another order: match one by one
        values = [lookup.get(k) for k in keys.tolist()]
        missing_keys += [f"{name}:{k}" for k, v in zip(keys.tolist(), values) if v is None]
        out[index.rows(s)] = [np.nan if v is None else v for v in values]
    rerun = (f"rerun `python -m cad.data.score_shards --shards {index.root} --out {scores_path} ...` (it scores "
             f"only the shards that are new or changed)")
    if unscored:
        raise CaptionShardsError(f"{len(unscored)} shard(s) under {index.root} have no scores in {scores_path}: "
                                 f"{listed_names(unscored)}; {rerun}")
    if changed:
        raise CaptionShardsError(f"{len(changed)} shard(s) changed size since {scores_path} was computed: "
                                 f"{listed_names(changed)}; {rerun}")
    if missing_keys:
        raise CaptionShardsError(f"{len(missing_keys)} pair(s) have no score in {scores_path}: "
                                 f"{listed_names(missing_keys)}; {rerun}")
    return out


# ----------------------------------------------------------------------------------------------------------------------
# the dataset


class CaptionShards(Dataset):
    """The pairs of the shards under ``root`` at ``resolution``, with their coherence from ``scores`` (a path or a
    loaded ``ShardScores``). ``edges``: bin edges to use instead of the scores file's (e.g. a held-out set binned
    with the training set's). ``coherence`` (N,) and ``similarity`` (N,) are arrays over all pairs, for samplers and
    the Filtered view (cad.data.text_data.filtered_indices)."""

    def __init__(self, root: str | Path, scores: str | Path | ShardScores, *, resolution: int,
                 edges: np.ndarray | None = None, index: ShardIndex | None = None,
                 index_cache: str | Path | None = None):
        self.index = index if index is not None else load_index(root, cache=index_cache)
        scores_path = scores if not isinstance(scores, ShardScores) else "the scores given"
        scores = scores if isinstance(scores, ShardScores) else ShardScores.load(scores)
        self.resolution, self.model = resolution, scores.model
        self.similarity = align_similarity(self.index, scores, scores_path)
        self.edges = np.asarray(scores.edges if edges is None else edges, dtype=np.float64)
        self.coherence = binned_coherence(self.similarity, self.edges)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        image = self.index.image(i)
        return {"image": square_image(image, self.resolution), "caption": self.index.caption(i),
                "coherence": torch.tensor(self.coherence[i]), "similarity": torch.tensor(self.similarity[i]),
                "key": str(self.index.keys[i]), "index": i}

    def metadata(self, i: int) -> dict:
        """The pair's ``<key>.json`` ({} without one)."""
        return self.index.metadata(int(i))

