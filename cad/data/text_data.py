"""Training data of the text task at the cpu and smoke scales (issue 11): captioned canvases, each pair's coherence from
the suite's contrastive scorer (cosine -> 8 quantile bins over the training set), the caption's token states from the
frozen text encoder (each distinct caption encoded once), and the Filtered view (the 3 least coherent bins dropped).

An item: ``image`` (1, H, W) float in [-1, 1], ``tokens`` (L, D), ``token_mask`` (L,), ``coherence`` (a bin level in
{0, 1/7, ..., 1}), ``misalignment`` (the known share of wrong content words, for analysis), ``index``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from cad.conditioning.text_coherence import NUM_BINS, binned_coherence, quantile_edges
from cad.data.contrastive import CaptionBank, ContrastiveModel

FILTERED_BINS = 3  # the paper's Filtered text baseline discards the 3 least coherent of the 8 bins


@torch.no_grad()
def pair_similarity(scorer: ContrastiveModel, canvases, bank: CaptionBank, *, batch_size: int = 500,
                    progress: bool = False) -> np.ndarray:
    """The scorer's cosine between every canvas and the caption it is trained with (possibly corrupted)."""
    from tqdm import tqdm

    scorer.eval()
    out = np.empty(len(canvases), dtype=np.float32)
    for start in tqdm(range(0, len(canvases), batch_size), desc="coherence", disable=not progress):
        items = [canvases[i] for i in range(start, min(start + batch_size, len(canvases)))]
        images = torch.from_numpy(np.stack([it["image"] for it in items]))
        out[start:start + len(items)] = scorer.similarity(images, bank.pooled([it["caption"] for it in items])).numpy()
    return out


def training_coherence(similarity: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """Coherence of each training pair: its similarity's quantile bin over the training set, normalised."""
    return binned_coherence(similarity, quantile_edges(similarity, num_bins))


def filtered_indices(coherence: np.ndarray, num_bins: int = NUM_BINS, dropped: int = FILTERED_BINS) -> np.ndarray:
    """The pairs the Filtered baseline keeps: coherence in the top ``num_bins - dropped`` bins."""
    return np.flatnonzero(coherence >= dropped / (num_bins - 1) - 1e-6)


class CaptionedTrainingSet(Dataset):
    def __init__(self, canvases, bank: CaptionBank, coherence: np.ndarray, indices: np.ndarray | None = None):
        if len(coherence) != len(canvases):
            raise ValueError(f"{len(coherence)} coherence values for {len(canvases)} canvases")
        self.canvases, self.bank, self.coherence = canvases, bank, coherence
        self.indices = np.arange(len(canvases)) if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        index = int(self.indices[i])
        item = self.canvases[index]
        tokens, mask = self.bank.tokens([item["caption"]])
        return {"image": torch.from_numpy(item["image"]).float() / 127.5 - 1.0, "tokens": tokens[0],
                "token_mask": mask[0], "coherence": torch.tensor(self.coherence[index]),
                "misalignment": torch.tensor(item["misalignment"], dtype=torch.float32), "index": index}
