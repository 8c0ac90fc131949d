"""A sampling stage killed mid-way goes on from the batches it drew (cad.tasks.drawn_batches): the resumed draw is the
uninterrupted one bit for bit and draws only the missing batches; batches of other weights are never reused."""
import functools
import shutil

import numpy as np
import pytest
import torch

from cad.backbones import build_backbone
from cad.experiment import stages
from cad.experiment.config import resolve
from cad.experiment.park import park_list
from cad.experiment.runs import read_done, run_dirs
from cad.guidance import cacfg_pair
from cad.tasks.class_task import label_condition
from cad.tasks.drawn_batches import DrawnBatches
from cad.tasks.generate import generate
from tests.tiny_runs import TINY, train

LABELS, SEEDS = [3, 1, 4, 1, 5, 9, 2], [10, 11, 12, 13, 14, 15, 16]
KWARGS = dict(image_shape=(1, 28, 28), pair=cacfg_pair, sampler="ddpm", steps=3, schedule={"name": "cosine"},
              guidance_scale=1.5, eta=0.0, clip_x0=True, batch_size=2, progress=False)


class Killed(Exception):
    pass


def tiny_model():
    torch.manual_seed(0)
    return build_backbone("rin_smoke", image_size=28, in_channels=1, num_classes=10, use_coherence=True).eval()


def counting_condition(calls, kill_at=None):
    """The label condition, counting its calls (one per batch drawn) and raising at call ``kill_at``."""
    base = functools.partial(label_condition, use_coherence=True, coherence=1.0)

    def condition(requests, device):
        calls.append(list(requests))
        if len(calls) == kill_at:
            raise Killed
        return base(requests, device)
    return condition


def test_a_killed_draw_goes_on_from_its_batches_to_the_uninterrupted_samples(tmp_path):
    reference = generate(tiny_model(), LABELS, SEEDS, condition=counting_condition([]), **KWARGS)
    store = DrawnBatches(tmp_path / "batches", tag="weights-1")
    assert store.begin() == 0
    with pytest.raises(Killed):  # killed while drawing the third of four batches
        generate(tiny_model(), LABELS, SEEDS, condition=counting_condition([], kill_at=3), store=store, **KWARGS)
    assert len(store.files()) == 2

    calls = []
    resumed = generate(tiny_model(), LABELS, SEEDS, condition=counting_condition(calls), store=store, **KWARGS)
    assert torch.equal(resumed, reference)
    assert calls == [[5, 9], [2]]  # only the batches not drawn before
    store.clear()
    assert not store.folder.exists()


def test_batches_of_other_weights_or_another_split_are_not_reused(tmp_path):
    folder = tmp_path / "batches"
    first = DrawnBatches(folder, tag="weights-1")
    first.begin()
    generate(tiny_model(), LABELS, SEEDS, condition=counting_condition([]), store=first, **KWARGS)
    assert len(first.files()) == 4

    calls = []  # another batch size splits the samples into other batches: drawn again, but for the last, [2] in both
    generate(tiny_model(), LABELS, SEEDS, condition=counting_condition(calls), store=first,
             **{**KWARGS, "batch_size": 3})
    assert calls == [[3, 1, 4], [1, 5, 9]]

    retrained = DrawnBatches(folder, tag="weights-2")
    assert retrained.begin() == 0 and not any(p.name.startswith("batch-") for p in folder.iterdir())
    assert DrawnBatches(folder, tag="weights-2").begin() == 0  # its own tag kept: nothing to drop, nothing drawn yet


def test_a_damaged_batch_is_drawn_again(tmp_path):
    store = DrawnBatches(tmp_path / "batches", tag="w")
    store.begin()
    reference = generate(tiny_model(), LABELS, SEEDS, condition=counting_condition([]), store=store, **KWARGS)
    store.path(SEEDS[:2], LABELS[:2]).write_bytes(b"truncated")
    calls = []
    again = generate(tiny_model(), LABELS, SEEDS, condition=counting_condition(calls), store=store, **KWARGS)
    assert calls == [[3, 1]] and torch.equal(again, reference)


def test_the_sample_stage_killed_mid_way_goes_on_parks_its_batches_and_clears_them(tmp_path, monkeypatch):
    cfg = resolve("smoke", "mnist", "conditional", TINY + ["sample.num_samples=6", "sample.batch_size=2",
                                                           "sample.steps=2"])
    reference = run_dirs(cfg, "x", tmp_path / "reference")
    train(cfg, reference)
    stages.sample(cfg, reference, progress=False, accelerator="cpu")
    killed = run_dirs(cfg, "x", tmp_path / "killed")
    shutil.copytree(reference.train, killed.train)
    shutil.rmtree(killed.sample)  # the trained run alone (its sample folder lives inside it)

    original_save = DrawnBatches.save

    def killed_after_one_batch(self, seeds, requests, images):
        if self.files():
            raise Killed
        original_save(self, seeds, requests, images)

    monkeypatch.setattr(DrawnBatches, "save", killed_after_one_batch)
    with pytest.raises(Killed):
        stages.sample(cfg, killed, progress=False, accelerator="cpu")
    monkeypatch.setattr(DrawnBatches, "save", original_save)
    weights = stages.ema_weights(killed, cfg.train.total_steps, cfg.train.total_steps)
    parked = park_list("class", "smoke", [(killed, weights, cfg.train.total_steps)], cache_root=tmp_path / "cache")
    drawn = killed.sample / "batches"
    assert parked == [weights, *sorted(drawn.glob("batch-*.pt")), drawn / "tag.txt"] and len(parked) == 3

    stages.sample(cfg, killed, progress=False, accelerator="cpu")
    assert read_done(killed.sample, "sample")["batches_drawn_before"] == 1 and not drawn.exists()
    ours, theirs = np.load(killed.sample / "samples.npz"), np.load(reference.sample / "samples.npz")
    assert np.array_equal(ours["images"], theirs["images"])
