"""The text task's training data (issue 11): coherence from the scorer's similarity in 8 equal-mass bins, the Filtered
view keeps the top 5 bins, items carry the caption's tokens, and the cache is reused."""
import numpy as np
import torch

from cad.data.canvases import CanvasSpec, CaptionedCanvases, VOCABULARIES
from cad.data.contrastive import CaptionBank, ContrastiveModel
from cad.data.text_data import CaptionedTrainingSet, filtered_indices, pair_similarity, training_coherence
from cad.io import cached_array
from tests.test_canvases import synthetic_sources
from tests.test_contrastive import PositionalWords


def _data(n: int = 400):
    canvases = CaptionedCanvases(synthetic_sources(), VOCABULARIES["fashion_mnist"], CanvasSpec(), length=n)
    return canvases, CaptionBank(PositionalWords(), length=16)


def test_coherence_bins_and_the_filtered_view():
    canvases, bank = _data()
    torch.manual_seed(0)
    similarity = pair_similarity(ContrastiveModel(bank.dim, width=8), canvases, bank, batch_size=128)
    coherence = training_coherence(similarity)
    assert np.unique(coherence, return_counts=True)[1].tolist() == [50] * 8
    kept = filtered_indices(coherence)
    assert len(kept) == 250 and coherence[kept].min() == np.float32(3 / 7)


def test_an_item_carries_its_image_tokens_and_coherence():
    canvases, bank = _data(40)
    coherence = np.linspace(0, 1, 40, dtype=np.float32)
    data = CaptionedTrainingSet(canvases, bank, coherence, indices=np.array([5, 7]))
    item = data[1]
    assert len(data) == 2 and item["index"] == 7 and item["coherence"] == coherence[7]
    assert item["image"].shape == (1, 32, 64) and -1 <= item["image"].min() and item["image"].max() <= 1
    tokens, mask = bank.tokens([canvases[7]["caption"]])
    assert torch.equal(item["tokens"], tokens[0]) and torch.equal(item["token_mask"], mask[0])
    long_caption = next(i for i in range(40) if "ankle boot" in canvases[i]["caption"])
    short_caption = next(i for i in range(40) if "ankle boot" not in canvases[i]["caption"])
    pair = CaptionedTrainingSet(canvases, bank, coherence, indices=np.array([long_caption, short_caption]))
    batch = torch.utils.data.default_collate([pair[0], pair[1]])  # captions of different lengths collate
    assert batch["tokens"].shape == (2, 16, 256) and batch["coherence"].shape == (2,)


def test_the_similarity_cache_is_computed_once(tmp_path):
    calls = []
    compute = lambda: calls.append(1) or np.arange(5, dtype=np.float32)  # noqa: E731
    first = cached_array(tmp_path / "s.npy", compute)
    again = cached_array(tmp_path / "s.npy", compute)
    assert calls == [1] and np.array_equal(first, again)
