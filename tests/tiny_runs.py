"""A tiny real training run (6 steps on 256 MNIST images, a checkpoint every 2 steps) shared by the pipeline tests."""
import pytest
import torch

from cad.experiment import stages
from cad.tasks.class_conditional import ClassConditionalDiffusion

TINY = ["train.total_steps=6", "train.checkpoint_every=2", "train.warmup_steps=2", "data.subset=256",
        "data.batch_size=16", "train.log_every=1"]


def train(cfg, dirs) -> dict:
    """Train (or go on training) the run and return its final EMA weights."""
    stages.train(cfg, dirs, accelerator="cpu", devices=1, num_nodes=1, progress=False)
    return torch.load(dirs.train / "model_ema.pt", weights_only=True)


def train_killed_at(cfg, dirs, step: int, monkeypatch) -> None:
    """Train the run until it is killed at ``step`` (the checkpoints before it are on disk)."""
    original = ClassConditionalDiffusion.training_step

    def killed(self, batch, batch_idx):
        if self.global_step == step:
            raise KeyboardInterrupt("simulated kill")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(ClassConditionalDiffusion, "training_step", killed)
    with pytest.raises(BaseException):  # Lightning turns the interrupt into SystemExit
        stages.train(cfg, dirs, accelerator="cpu", devices=1, num_nodes=1, progress=False)
    monkeypatch.setattr(ClassConditionalDiffusion, "training_step", original)
