"""Resumable one-off training loops (cad.training.loop_checkpoint): a loop killed mid-way and called again ends on
the uninterrupted loop's weights bit for bit; stale or unreadable snapshots are ignored; the cache removes the
snapshot once the weights are written."""
import numpy as np
import pytest
import torch
from torch import nn

from cad import hardware
from cad.data.classifier_training import load_or_train
from cad.data.canvases import CanvasRecipe
from cad.data.contrastive import ContrastiveModel, train_contrastive
from cad.training.loop_checkpoint import LoopCheckpoint, partial_path
from cad.training.pretrain import pretrain_unconditional


class Killed(Exception):
    pass


class TinyDenoiser(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Dropout(0.2), nn.Conv2d(4, 1, 3, padding=1))

    def forward(self, x_t, gamma, cond, self_cond=None):
        return self.net(x_t) * gamma.view(-1, 1, 1, 1), None


DATA = torch.rand(32, 1, 8, 8) * 2 - 1


def _pretrain(checkpoint, kill_at=None):
    torch.manual_seed(0)
    model, calls = TinyDenoiser(), [0]

    def images(indices):
        calls[0] += 1
        if calls[0] == kill_at:
            raise Killed
        return DATA[torch.as_tensor(indices)]

    loss = pretrain_unconditional(model, images, len(DATA), steps=10, batch_size=4, lr=1e-2, seed=3,
                                  schedule={"name": "cosine", "shift": 1.0}, checkpoint=checkpoint)
    return model, loss


def test_a_killed_pretraining_resumes_to_the_uninterrupted_weights(tmp_path):
    reference, reference_loss = _pretrain(None)
    snapshots = LoopCheckpoint(tmp_path / "base.partial.pt", {"steps": 10}, every=3)
    with pytest.raises(Killed):
        _pretrain(snapshots, kill_at=8)  # killed during step 8: the snapshot after step 6 is the newest
    assert torch.load(snapshots.path, weights_only=False)["step"] == 6
    resumed, resumed_loss = _pretrain(snapshots)
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed_loss == reference_loss  # the losses logged before the kill are restored too


def test_snapshots_of_other_settings_or_unreadable_ones_start_over(tmp_path):
    path = tmp_path / "base.partial.pt"
    with pytest.raises(Killed):
        _pretrain(LoopCheckpoint(path, {"steps": 10}, every=3), kill_at=8)
    model = TinyDenoiser()
    optimizer = torch.optim.AdamW(model.parameters())
    rng = np.random.default_rng(0)
    assert LoopCheckpoint(path, {"steps": 20}, every=3).resume(model, optimizer, numpy=rng) == 0
    path.write_bytes(b"truncated")
    assert LoopCheckpoint(path, {"steps": 10}, every=3).resume(model, optimizer, numpy=rng) == 0
    with pytest.raises(ValueError, match="every"):
        LoopCheckpoint(path, {}, every=0)


class CountingBank:
    """A stand-in caption bank: one pooled text vector per caption; ``kill_at``: raise at that call (one per step)."""
    dim = 6

    def __init__(self, kill_at=None):
        self.calls, self.kill_at = 0, kill_at

    def pooled(self, captions):
        self.calls += 1
        if self.calls == self.kill_at:
            raise Killed
        return torch.stack([torch.full((6,), float(c[1:])) + torch.arange(6.0) for c in captions])


def test_the_contrastive_loop_resumes_too(tmp_path):
    recipe = CanvasRecipe(steps=6, batch_size=4, eval_size=100)
    canvases = [{"image": np.full((1, 8, 16), i * 2, dtype=np.uint8), "true_caption": f"c{i % 5}"} for i in range(120)]

    def run(checkpoint, kill_at=None):
        torch.manual_seed(0)
        model = ContrastiveModel(CountingBank.dim, width=4, embed_dim=8)
        train_contrastive(model, canvases, CountingBank(kill_at), recipe, train_indices=np.arange(100),
                          eval_indices=np.arange(100, 120), seed=1, checkpoint=checkpoint)
        return model

    reference = run(None)
    snapshots = LoopCheckpoint(tmp_path / "c.partial.pt", {"steps": 6}, every=2)
    with pytest.raises(Killed):
        run(snapshots, kill_at=6)  # killed in step 6: the snapshot after step 4 is the newest
    assert torch.load(snapshots.path, weights_only=False)["step"] == 4
    resumed = run(snapshots)
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_the_cache_removes_the_snapshot_once_the_weights_are_written(tmp_path):
    weights = tmp_path / "model.pt"
    partial_path(weights).write_bytes(b"an unfinished loop's snapshot")
    assert partial_path(weights) == tmp_path / "model.partial.pt"
    load_or_train(weights, {"k": 1}, lambda: nn.Linear(2, 2), lambda model: 0.5)
    assert weights.is_file() and not partial_path(weights).exists()


def _cache_a_resumed_pretraining(tmp_path, edit_snapshot):
    """Kill a loop at step 8 (snapshot after step 6), ``edit_snapshot`` the snapshot, then cache the model through
    ``load_or_train`` with a fresh LoopCheckpoint (as a new process would): the cache entry's metadata."""
    weights = tmp_path / "base.pt"
    with pytest.raises(Killed):
        _pretrain(LoopCheckpoint(partial_path(weights), {"steps": 10}, every=3), kill_at=8)
    snap = torch.load(partial_path(weights), weights_only=False)
    edit_snapshot(snap)
    torch.save(snap, partial_path(weights))
    snapshots = LoopCheckpoint(partial_path(weights), {"steps": 10}, every=3)

    def fit(model):
        return pretrain_unconditional(model, lambda i: DATA[torch.as_tensor(i)], len(DATA), steps=10, batch_size=4,
                                      lr=1e-2, seed=3, schedule={"name": "cosine", "shift": 1.0}, checkpoint=snapshots)

    _, meta = load_or_train(weights, {"steps": 10}, TinyDenoiser, fit, snapshots)
    return meta


def test_a_resumed_loop_caches_the_time_of_every_segment_per_machine(tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "machine_name", lambda: "machine B")

    def earlier_segment_on_machine_a(snap):
        snap["clock"] = {"wall_s": 1000.0, "machines": {"machine A": 1000.0}}

    meta = _cache_a_resumed_pretraining(tmp_path, earlier_segment_on_machine_a)
    assert list(meta["train_machines"]) == ["machine A", "machine B"]
    assert meta["train_machines"]["machine A"] == 1000.0 and 0 <= meta["train_machines"]["machine B"] < 60
    assert meta["train_seconds"] == pytest.approx(1000.0 + meta["train_machines"]["machine B"], abs=0.2)
    assert "train_seconds_from_step" not in meta


def test_a_snapshot_without_its_time_counts_from_its_step(tmp_path):
    meta = _cache_a_resumed_pretraining(tmp_path, lambda snap: snap.pop("clock"))
    assert meta["train_seconds_from_step"] == 6
    assert list(meta["train_machines"]) == [hardware.machine_name()]
    assert meta["train_seconds"] == meta["train_machines"][hardware.machine_name()]


def test_a_loop_snapshot_records_its_time_so_far(tmp_path):
    snapshots = LoopCheckpoint(tmp_path / "base.partial.pt", {"steps": 10}, every=3)
    with pytest.raises(Killed):
        _pretrain(snapshots, kill_at=8)
    clock = torch.load(snapshots.path, weights_only=False)["clock"]
    assert clock["wall_s"] > 0 and list(clock["machines"]) == [hardware.machine_name()]


def test_cached_weights_without_their_metadata_are_trained_again(tmp_path):
    """Why --park carries a finished cache file's .json with its weights (cad.experiment.park.PARKED_CACHES)."""
    weights, fits = tmp_path / "model.pt", []
    load_or_train(weights, {"k": 1}, lambda: nn.Linear(2, 2), lambda model: fits.append(1) or 0.5)
    load_or_train(weights, {"k": 1}, lambda: nn.Linear(2, 2), lambda model: fits.append(1) or 0.5)
    assert len(fits) == 1  # cached: the second call loads it
    weights.with_suffix(".json").unlink()
    load_or_train(weights, {"k": 1}, lambda: nn.Linear(2, 2), lambda model: fits.append(1) or 0.5)
    assert len(fits) == 2
