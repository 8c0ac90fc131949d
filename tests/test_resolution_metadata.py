"""The image resolution as control metadata (issue 14, the multi-level conditioning paper's third metadata kind):
one value per sample after the augmentation flags, the same in training and sampling, off by default."""
import pytest
import torch

from cad.backbones.transfer import load_at_resolution
from cad.data.augment import NEUTRAL, RESOLUTION_SCALE, augment_batch, neutral_row
from cad.experiment.config import ConfigError, TRAIN_KEYS, config_hash, resolve
from cad.tasks.class_task import label_condition
from cad.tasks.registry import get_task
from tests.test_class_conditional import make_batch, make_module


def test_the_row_puts_the_resolution_after_the_flags():
    flags = {"hflip": True, "crop_min": None}
    assert neutral_row(None, None) == () and neutral_row(flags, None) == NEUTRAL
    assert neutral_row(None, 28) == (28 / RESOLUTION_SCALE,)
    assert neutral_row(flags, 56) == NEUTRAL + (56 / RESOLUTION_SCALE,)


def test_training_appends_the_resolution_and_keeps_the_flags_draws():
    batch = make_batch()
    only = make_module("cad", resolution_metadata=True).prepare(batch, torch.Generator().manual_seed(0))
    assert torch.equal(only["image"], batch["image"])  # no augmentation: the images as they are
    assert torch.equal(only["metadata"], torch.full((16, 1), 28 / RESOLUTION_SCALE))
    assert make_module("cad", resolution_metadata=True).model.condition.metadata.num_values == 1

    augment = {"hflip": True, "crop_min": 0.7}
    both = make_module("cad", augment=augment, resolution_metadata=True).prepare(batch,
                                                                                 torch.Generator().manual_seed(3))
    images, flags = augment_batch(batch["image"], torch.Generator().manual_seed(3), **augment)
    assert torch.equal(both["image"], images) and torch.equal(both["metadata"][:, :5], flags)
    assert torch.equal(both["metadata"][:, 5], torch.full((16,), 28 / RESOLUTION_SCALE))
    assert "metadata" not in make_module("cad").prepare(batch, torch.Generator().manual_seed(0))


@torch.no_grad()
def test_sampling_asks_for_the_runs_resolution_and_the_model_reads_it():
    cfg = resolve("smoke", "fashion_mnist", "cad", ["data.resolution=56", "data.resolution_metadata=true"],
                  accelerator="cpu")
    task = get_task("class")
    assert task.metadata_row(cfg) == (56 / RESOLUTION_SCALE,)
    cond = task.condition_fn(cfg)([1, 2], torch.device("cpu"))
    assert torch.equal(cond.metadata, torch.full((2, 1), 56 / RESOLUTION_SCALE))
    # the 28 px run's weights, metadata embedder included, continue at 56 px (the transfer both runs take it in)
    small, large = (make_module("cad", preset="rin_smoke", resolution_metadata=True, image_shape=(1, s, s))
                    for s in (28, 56))
    load_at_resolution(large.model, small.model.state_dict())
    x, t = torch.randn(2, 1, 56, 56, generator=torch.Generator().manual_seed(0)), torch.full((2,), 0.3)
    eps56 = large.sampling_model(x, t, cond)[0]
    eps28 = large.sampling_model(x, t, cond.replace(metadata=torch.full((2, 1), 28 / RESOLUTION_SCALE)))[0]
    assert torch.isfinite(eps56).all() and not torch.allclose(eps56, eps28)


def test_off_by_default_named_and_checked():
    plain = resolve("smoke", "mnist", "cad")
    assert plain.data.resolution_metadata is False
    with_it = resolve("smoke", "mnist", "cad", ["data.resolution_metadata=true"])
    assert config_hash(with_it, TRAIN_KEYS) != config_hash(plain, TRAIN_KEYS)
    assert label_condition([0], torch.device("cpu"), use_coherence=True, coherence=1.0).metadata is None
    with pytest.raises(ConfigError, match="resolution_metadata=56 is not valid"):
        resolve("smoke", "mnist", "cad", ["data.resolution_metadata=56"])
    # metadata guidance has something to act on once the resolution is metadata
    resolve("smoke", "mnist", "cad", ["data.resolution_metadata=true", "train.metadata_dropout=0.1"])
    with pytest.raises(ConfigError, match="no control metadata"):
        resolve("smoke", "fashion_mnist", "cad", ["data.resolution_metadata=true"], task="text")
