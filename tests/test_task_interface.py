"""A second task runs through train -> sample -> evaluate -> render on the shared core, with no class-task code:
the pipeline only calls the ``Task`` interface (cad/tasks/registry.py)."""
import json

import lightning as L
import numpy as np
import torch
from torch import nn

from benchmarks.samples import load_samples
from cad.conditioning import Condition
from cad.experiment import cli, config
from cad.tasks.base import DiffusionModule
from cad.tasks.registry import Task, register_task


class TinyDenoiser(nn.Module):
    """eps_hat from x_t, gamma and the coherence: an MLP over the 64 pixels."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(66, 256), nn.SiLU(), nn.Linear(256, 64))

    def forward(self, x_t, gamma, cond, self_cond=None):
        h = torch.cat([x_t.flatten(1), gamma[:, None], cond.coherence[:, None]], 1)
        return self.net(h).view_as(x_t), None


class BlobModule(DiffusionModule):
    def build_model(self):
        return TinyDenoiser()

    def condition(self, batch, generator=None):
        return Condition(coherence=batch["coherence"].float())


class BlobData(L.LightningDataModule):
    """64 images of a bright square, no labels: everything the stages read of a data module."""

    num_workers, noise_stats, splits = 0, None, {}

    def setup(self, stage=None):
        g = torch.Generator().manual_seed(0)
        images = -torch.ones(64, 1, 8, 8)
        images[:, :, 2:6, 2:6] = 1.0
        self.train_set = [{"image": images[i] + 0.05 * torch.randn(1, 8, 8, generator=g),
                           "coherence": torch.tensor(1.0)} for i in range(64)]


class BlobTask(Task):
    name, request_note, seed_rule = "blob", "coherence only", "seed = sample.seed * 1e6 + i"
    calls: list = []

    def image_shape(self, cfg):
        return (1, 8, 8)

    def build_module(self, cfg):
        t = cfg.train
        return BlobModule(schedule=dict(t.schedule), lr=1e-2, betas=(0.9, 0.999), weight_decay=0.0,
                          warmup_steps=1, total_steps=t.total_steps, lr_rate=0.8, ema_decay=0.9, ema_warmup=None)

    def datamodule(self, cfg, device="cpu"):
        return BlobData()

    def eval_requests(self, cfg, num_samples=None):
        return [float(cfg.sample.coherence)] * (num_samples or cfg.sample.num_samples)

    def condition_fn(self, cfg):
        return lambda requests, device: Condition(coherence=torch.tensor(requests, device=device))

    def sample_extras(self, requests):
        return {"coherence": np.asarray(requests)}

    def evaluate(self, cfg, samples_path, *, device="cpu", progress=True):
        samples = load_samples(samples_path)
        BlobTask.calls.append(sorted(samples))
        centre = samples["images"][:, 2:6, 2:6].astype(float).mean() / 255
        return {"centre_brightness": float(centre), "meta": {}}

    def write_table(self, name, results, notes, directory, output=None):
        directory.mkdir(parents=True, exist_ok=True)
        text = "\n".join(f"{r.dataset} {r.method} {r.metrics['centre_brightness']:.3f}" for r in results)
        (directory / f"{output or name}.md").write_text(text + "\n" + json.dumps(notes) + "\n")
        return text


def test_a_second_task_runs_every_stage_without_class_code(tmp_path, monkeypatch):
    register_task("blob", BlobTask)
    experiments = tmp_path / "experiments"
    for group in ("scale", "method", "paper", "task"):
        (experiments / group).mkdir(parents=True)
    (experiments / "defaults.yaml").write_text((config.EXPERIMENTS_DIR / "defaults.yaml").read_text())
    (experiments / "task" / "blob.yaml").write_text("evaluate: {extractors: []}\n")
    (experiments / "method" / "plain.yaml").write_text("name: plain\n")
    (experiments / "paper" / "blobs.yaml").write_text("experiment: blobs\ntask: blob\nmethods: [plain]\n")
    (experiments / "scale" / "smoke.yaml").write_text(
        "scale: smoke\ndatasets: {mnist: {}}\ndata: {batch_size: 16}\n"
        "train: {total_steps: 300, warmup_steps: 1, checkpoint_every: 100, grid_every: 0, log_every: 5}\n"
        "sample: {num_samples: 6, batch_size: 6, sampler: ddim, steps: 10}\n")
    monkeypatch.setattr(config, "EXPERIMENTS_DIR", experiments)
    monkeypatch.setenv("CAD_RESULTS", str(tmp_path / "results"))

    assert cli.main(["blobs", "--scale", "smoke", "--no-progress", "--accelerator", "cpu"]) == 0
    table = (tmp_path / "results" / "smoke" / "tables" / "blobs.md").read_text()
    assert table.startswith("mnist plain ") and "coherence only" in table
    assert BlobTask.calls == [["coherence", "images", "seeds"]]  # no labels: the task stores what it needs
    assert float(table.split()[2]) > 0.6  # the trained model draws the bright centre
