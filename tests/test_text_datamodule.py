"""The text task's data module (issue 11): the scorer is trained once and cached, coherence comes in 8 levels, the
Filtered view and a subset shrink the training set, test canvases carry true captions."""
import numpy as np
import pytest

from cad.data import text_datamodule
from cad.data.canvases import CanvasSpec
from cad.data.formats import ImageArrays
from tests.test_canvases import synthetic_sources
from tests.test_contrastive import PositionalWords


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    monkeypatch.setenv("CAD_CACHE", str(tmp_path))
    monkeypatch.setitem(text_datamodule.TRAINING_CANVASES, "smoke", None)  # one canvas per (tiny) source image
    monkeypatch.setitem(text_datamodule.RECIPES, "smoke",
                        text_datamodule.CanvasRecipe(steps=20, batch_size=32, eval_size=100))
    sources = synthetic_sources(per_class=20)
    return {"train": sources, "test": ImageArrays(sources.images[::4], sources.labels[::4])}


def test_the_scorer_is_cached_and_coherence_has_eight_levels(tiny, tmp_path, monkeypatch):
    data = text_datamodule.build_text_datamodule("fashion_mnist", scale="smoke", batch_size=16, filtered=False,
                                                 splits=tiny, encoder=PositionalWords(), spec=CanvasSpec())
    assert len(data.train_set) == 200 and len(np.unique(data.train_set.coherence)) == 8
    assert (tmp_path / "contrastive" / "fashion_mnist-coherence-smoke.pt").is_file()
    assert all(data.test_canvases[i]["caption"] == data.test_canvases[i]["true_caption"] for i in range(20))
    assert 0 < data.noise_stats["relabel_accuracy"] < 1
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (16, 1, 32, 64) and batch["tokens"].shape[0] == 16

    def no_training(*args, **kwargs):
        raise AssertionError("the cached scorer and similarities must be reused")

    monkeypatch.setattr(text_datamodule, "train_contrastive", no_training)
    monkeypatch.setattr(text_datamodule, "pair_similarity", no_training)
    filtered = text_datamodule.build_text_datamodule("fashion_mnist", scale="smoke", batch_size=16, filtered=True,
                                                     splits=tiny, encoder=PositionalWords(), subset=100)
    kept = filtered.train_set
    assert len(kept) == 100 and kept.coherence[kept.indices].min() >= 3 / 7 - 1e-6
