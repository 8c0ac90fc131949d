"""The suite's contrastive image-text models: they learn to match canvases to their captions, score a true caption
above a corrupted one, and the two roles are different networks."""
import zlib

import numpy as np
import pytest
import torch

from cad.data.canvases import CanvasRecipe, CanvasSpec, CaptionedCanvases, VOCABULARIES
from cad.data.contrastive import (ROLES, CaptionBank, ContrastiveModel, clip_score,
                                  retrieval_accuracy, train_contrastive)
from tests.test_canvases import synthetic_sources


class PositionalWords:
    """A stand-in text encoder for fast tests: token i is the one-hot of crc32(word, i) in 256 dimensions (a fixed
    hash: Python's own string hash changes from process to process)."""

    dim = 256
    max_length = 16  # the bank pads every caption to it, as the real encoders' fixed max_length

    def __call__(self, captions):
        words = [c.split() for c in captions]
        length = max(len(w) for w in words)
        states = torch.zeros(len(captions), length, self.dim)
        mask = torch.zeros(len(captions), length, dtype=torch.bool)
        for b, ws in enumerate(words):
            for i, w in enumerate(ws):
                states[b, i, zlib.crc32(f"{w}|{i}".encode()) % self.dim] = 1.0
                mask[b, i] = True
        return states, mask


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    canvases = CaptionedCanvases(synthetic_sources(), VOCABULARIES["fashion_mnist"], CanvasSpec(sizes=(28,)),
                                 length=2000)
    bank = CaptionBank(PositionalWords())
    model = ContrastiveModel(bank.dim, width=16)
    recipe = CanvasRecipe(steps=200, batch_size=64, lr=3e-3, eval_size=400)
    accuracy = train_contrastive(model, canvases, bank, recipe, train_indices=np.arange(1600),
                                 eval_indices=np.arange(1600, 2000), seed=0)
    return canvases, bank, model, accuracy


def test_it_learns_to_retrieve_the_caption_of_a_canvas(trained):
    _, _, _, accuracy = trained
    assert accuracy > 0.5  # chance is about 1 in 100 distinct captions of a batch


def test_a_true_caption_scores_above_a_corrupted_one(trained):
    canvases, bank, model, _ = trained
    items = [canvases[i] for i in range(1600, 2000)]
    corrupted = [it for it in items if it["misalignment"] > 0]
    images = torch.from_numpy(np.stack([it["image"] for it in corrupted]))
    with torch.no_grad():
        true = model.similarity(images, bank.pooled([it["true_caption"] for it in corrupted]))
        said = model.similarity(images, bank.pooled([it["caption"] for it in corrupted]))
    assert (true > said).float().mean() > 0.8
    score = clip_score(model, images, [it["true_caption"] for it in corrupted], bank)
    assert score == pytest.approx(100 * true.clamp(min=0).mean().item(), rel=1e-4)
    assert clip_score(model, images, [it["caption"] for it in corrupted], bank) < score


def test_the_bank_encodes_each_caption_once_and_pools_over_valid_tokens():
    calls = []

    class Counting(PositionalWords):
        def __call__(self, captions):
            calls.append(list(captions))
            return super().__call__(captions)

    bank = CaptionBank(Counting())
    pooled = bank.pooled(["a b", "a b", "c d e"])
    bank.pooled(["a b"])
    assert calls == [["a b", "c d e"]]
    assert torch.allclose(pooled[0].sum(), torch.tensor(1.0)) and torch.equal(pooled[0], pooled[1])


def test_the_two_roles_are_different_networks():
    assert ROLES["coherence"] != ROLES["clipscore"]
    assert ROLES["coherence"]["width"] != ROLES["clipscore"]["width"]
