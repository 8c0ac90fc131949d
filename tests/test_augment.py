"""Augmentation whose flags are control metadata (issue 14): the flags say what was done, the step's generator decides
it, sampling asks for the neutral metadata."""
import pytest
import torch

from cad.data.augment import NEUTRAL, augment_batch
from cad.experiment.config import ConfigError, TRAIN_KEYS, config_hash, resolve
from cad.tasks.class_task import label_condition
from tests.test_class_conditional import make_batch, make_module


def test_flips_are_recorded_and_done():
    images = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(2, 1, 4, 6)
    out, meta = augment_batch(images.repeat(20, 1, 1, 1), torch.Generator().manual_seed(0), hflip=True, crop_min=None)
    flipped = meta[:, 0] == 1
    assert 0 < flipped.sum() < 40 and torch.equal(meta[:, 1:], torch.tensor(NEUTRAL[1:]).expand(40, 4))
    source = images.repeat(20, 1, 1, 1)
    assert torch.equal(out[flipped], source[flipped].flip(-1)) and torch.equal(out[~flipped], source[~flipped])


def test_a_crop_records_its_box_and_shows_what_is_in_it():
    image = torch.zeros(256, 1, 16, 16)
    image[:, :, :, :8] = 1.0  # left half bright
    out, meta = augment_batch(image, torch.Generator().manual_seed(1), hflip=False, crop_min=0.1)
    top, left, bottom, right = meta[:, 1:].T
    assert torch.allclose(bottom - top, right - left) and ((bottom - top) >= 0.1 - 1e-6).all() and (bottom <= 1).all()
    inside_left = right <= 0.45  # the whole box in the bright half: the crop is bright everywhere
    assert inside_left.any() and (out[inside_left] > 0.99).all()
    same, meta_same = augment_batch(image, torch.Generator().manual_seed(1), hflip=False, crop_min=1.0)
    torch.testing.assert_close(same, image)  # a full-size crop is the image
    assert torch.equal(meta_same, torch.tensor(NEUTRAL).expand(256, 5))


def test_the_model_trains_on_flags_and_samples_with_the_neutral_ones():
    module = make_module("cad", augment={"hflip": True, "crop_min": 0.7})
    batch = make_batch()
    prepared = module.prepare(batch, torch.Generator().manual_seed(0))
    assert prepared["metadata"].shape == (16, 5) and module.condition(prepared).metadata is not None
    a = module.model_step(batch, torch.Generator().manual_seed(2))[1]
    b = module.model_step(batch, torch.Generator().manual_seed(2))[1]
    assert torch.equal(a, b)  # the augmentation draws from the step's generator
    cond = label_condition([1, 2], torch.device("cpu"), use_coherence=True, coherence=1.0, metadata=NEUTRAL)
    assert torch.equal(cond.metadata, torch.tensor([NEUTRAL, NEUTRAL]))
    eps, _ = module.sampling_model(torch.randn(2, 1, 28, 28), torch.full((2,), 0.5), cond)
    assert torch.isfinite(eps).all()


def test_the_options_are_off_by_default_named_and_checked():
    plain = resolve("smoke", "mnist", "cad")
    assert not plain.data.augment.hflip and plain.data.augment.crop_min is None
    flipped = resolve("smoke", "mnist", "cad", ["data.augment.hflip=true"])
    assert config_hash(flipped, TRAIN_KEYS) != config_hash(plain, TRAIN_KEYS)
    with pytest.raises(ConfigError, match="crop_min=1.5 is not valid"):
        resolve("smoke", "mnist", "cad", ["data.augment.crop_min=1.5"])
    with pytest.raises(ConfigError, match="method 'baseline' has none"):
        resolve("smoke", "mnist", "baseline", ["backbone.coherence_as_metadata=true"])
