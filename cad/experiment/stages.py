"""The stages of one run: train -> sample -> evaluate. Each is skipped when its ``done`` marker exists and writes
its outputs atomically, so a killed command re-run picks up where it stopped."""
from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from benchmarks.samples import save_samples
from cad import hardware
from cad.experiment.checkpoints import latest_good_checkpoint
from cad.experiment.config import save_config
from cad.experiment.data_order import StepDataModule
from cad.experiment.runs import RunDirs, init_weights_path, is_done, mark_done, read_metrics
from cad.io import atomic_path, atomic_write_json, sha256_file
from cad.tasks.base import DiffusionModule
from cad.tasks.drawn_batches import DrawnBatches
from cad.tasks.generate import generate, generate_distributed, to_uint8
from cad.tasks.registry import get_task
from cad.training.wall_clock import WallClock, machine_fields


def noise_summary(stats: dict) -> dict:
    """What a table says about a run's label noise, from the noisy labels' statistics: the protocol, its temperature
    (None where the protocol has none) and the measured relabelling accuracy. The train stage writes it to the run's
    ``noise.json``, so a table renders from files and never rebuilds the labels."""
    summary = {"protocol": stats.get("protocol"), "temperature": stats.get("temperature"),
               "relabel_accuracy": stats.get("relabel_accuracy")}
    for key in ("accuracy_label", "detail"):  # what the accuracy measures where it is not a relabelling (the text and
        if key in stats:                     # map tasks'), and what else the table should say of the noise
            summary[key] = stats[key]
    return summary


class _TrackLastCheckpoint(Callback):
    """Tells the module which checkpoint is the last good one, for the NaN-loss error message."""

    def __init__(self, checkpoint: ModelCheckpoint):
        self.checkpoint = checkpoint

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        pl_module.last_checkpoint = self.checkpoint.last_model_path or self.checkpoint.best_model_path or None


class _WallClock(WallClock, Callback):
    """The training's wall time (cad.training.wall_clock), carried across resumes in the checkpoints: Lightning saves a
    callback's state, so the done marker's ``wall_s`` covers every step kept, not only the last session's. After a
    resume from a checkpoint written before this was recorded, the marker counts from that step (``wall_s_from_step``).
    Made just before the trainer: the segment is the whole fit, as it was."""

    def state_dict(self) -> dict:
        return self.state()

    def load_state_dict(self, state_dict: dict) -> None:
        self.restore(state_dict)


class _SampleGrid(Callback):
    """Logs a grid of EMA samples (the task's first 20 evaluation requests) to TensorBoard every ``every`` steps."""

    def __init__(self, cfg: DictConfig, every: int):
        self.cfg, self.every = cfg, every

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if not self.every or step % self.every or not trainer.is_global_zero:
            return
        requests = get_task(self.cfg.task).eval_requests(self.cfg, 20)
        images = _generate(pl_module, self.cfg, requests, list(range(len(requests))), progress=False)
        grid = (images.clamp(-1, 1) + 1) / 2
        import torchvision
        trainer.logger.experiment.add_image("samples", torchvision.utils.make_grid(grid, nrow=10), step)
        pl_module.train()


def train_until(cfg: DictConfig) -> int:
    """The step the sampling stage reads the EMA weights at: ``sample.train_step`` (a snapshot of the run, for a
    learning curve; the LR schedule is still the one of ``train.total_steps``), else the end of training."""
    step = cfg.sample.get("train_step")
    return cfg.train.total_steps if step is None else int(step)


def ema_weights(dirs: RunDirs, step: int, total_steps: int) -> Path:
    """The EMA weights after ``step`` steps: ``model_ema.pt`` at the end of training, else a snapshot file."""
    return dirs.train / ("model_ema.pt" if step == total_steps else f"model_ema-step{step}.pt")


def train(cfg: DictConfig, dirs: RunDirs, *, accelerator: str, devices: int, num_nodes: int,
          progress: bool = True) -> None:
    """Train to ``train.total_steps``, or only up to ``sample.train_step`` (saving that step's EMA snapshot), resuming
    from the newest readable checkpoint; a later call with a later step goes on from there."""
    until, total = train_until(cfg), cfg.train.total_steps
    weights = ema_weights(dirs, until, total)
    if until < total and weights.is_file():
        print(f"[train] snapshot at step {until} done already: {weights}")
        return
    if is_done(dirs.train, "train"):
        if until == total and weights.is_file():
            print(f"[train] done already: {dirs.train}")
            return
        if until == total:
            # Committed results carry the done markers but not the weights (too large for git): a later stage that
            # needs the model (a new sampling config) trains it again, from the same seeds.
            print(f"[train] {dirs.train.name}: done marker but no model_ema.pt here; training again")
            (dirs.train / "train.done").unlink()
        else:  # a finished run (another experiment's, or committed) without this snapshot: the same run, redone
            print(f"[train] {dirs.train.name}: finished, but without a snapshot at step {until}; training to it again")
    dirs.train.mkdir(parents=True, exist_ok=True)
    if not (dirs.train / "config.yaml").is_file():  # a run found by its hash keeps the config it was made with
        save_config(cfg, dirs.train / "config.yaml")
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    task = get_task(cfg.task)
    device = run_device(accelerator)
    data = task.datamodule(cfg, device=device)
    data.splits  # noqa: B018 -- read the dataset now: a missing one fails before the model is built
    module = task.build_module(cfg)
    # save_top_k=1 keeps the newest; Lightning deletes the previous one only after the new one is written, so a kill
    # mid-write leaves a readable checkpoint beside the truncated one.
    checkpoint = ModelCheckpoint(dirpath=dirs.train / "checkpoints", filename="{step}",
                                 every_n_train_steps=cfg.train.checkpoint_every, save_top_k=1, save_last=False)
    # Training and the randomness are functions of (seed, step): a snapshot before the newest checkpoint is reached
    # again from an earlier one (or from step 0), to the same weights.
    resume, start_step = latest_good_checkpoint(dirs.train / "checkpoints", max_step=until) or (None, 0)
    datamodule = StepDataModule(data, global_batch_size=cfg.data.batch_size, pin_memory=device.type == "cuda",
                                total_steps=total, seed=cfg.train.seed, start_step=start_step)
    clock = _WallClock()
    if resume:
        clock.restore(None)  # until the checkpoint's own state is loaded: earlier time unknown
    trainer = L.Trainer(
        max_steps=until, accelerator=accelerator, devices=devices, num_nodes=num_nodes,
        strategy="ddp" if devices * num_nodes > 1 else "auto", precision=cfg.train.precision,
        logger=TensorBoardLogger(dirs.train, name="tensorboard", version=0),
        callbacks=[checkpoint, _TrackLastCheckpoint(checkpoint), clock,
                   _SampleGrid(cfg, cfg.train.grid_every)],
        log_every_n_steps=cfg.train.log_every, enable_progress_bar=progress, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, use_distributed_sampler=False)
    if resume:
        print(f"[train] resuming from {resume.name} (step {start_step})")
    elif cfg.train.init_from:
        source = init_weights_path(cfg.train.init_from, dirs.train.parent.parent)
        print(f"[train] starting from the weights of {cfg.train.init_from} ({source})")
        module.init_weights(torch.load(source, map_location="cpu", weights_only=True))
    start = time.time()
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None)
    if trainer.global_step < until:
        raise RuntimeError(f"training stopped at step {trainer.global_step} of {until}")
    if until < total and not (dirs.train / "checkpoints" / f"step={until}.ckpt").is_file():
        trainer.save_checkpoint(dirs.train / "checkpoints" / f"step={until}.ckpt")  # the next snapshot goes on here
    if trainer.is_global_zero:
        with atomic_path(weights) as tmp:
            torch.save(module.sampling_model.state_dict(), tmp)
        if getattr(data, "noise_stats", None) is not None:  # what the table notes say of the noise: from this file
            atomic_write_json(dirs.train / "noise.json", noise_summary(data.noise_stats))
        loss = trainer.callback_metrics.get("train/loss")
        segment = clock.segment()
        summary = {"steps": trainer.global_step, "wall_s": round((clock.before or 0.0) + segment, 1),
                   "wall_s_from_step": start_step if clock.before is None else 0, "resumed_from": start_step,
                   "final_loss": None if loss is None else float(loss),
                   "parameters": sum(p.numel() for p in module.model.parameters())}
        summary.update(machine_fields(clock.machines(segment)))  # several machines: all named (else the marker's)
        mark_done(dirs.train, "train" if until == total else f"snapshot-{until}", summary)
        print(f"[train] {cfg.dataset}/{cfg.method.name}: {trainer.global_step} steps in {time.time() - start:.0f} s")


def run_device(accelerator: str) -> torch.device:
    """The device this process computes on: its CUDA device (the rank's own under DDP) or the CPU."""
    if hardware.accelerator_device_type(accelerator) == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def load_sampling_model(cfg: DictConfig, dirs: RunDirs, device: torch.device | str = "cpu") -> DiffusionModule:
    module = get_task(cfg.task).build_module(cfg)
    weights = ema_weights(dirs, train_until(cfg), cfg.train.total_steps)
    module.model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return module.to(device).eval()


def drawn_batches(cfg: DictConfig, dirs: RunDirs) -> DrawnBatches:
    """Where the sample stage keeps its batches until its samples file is written, tagged with its weights' hash."""
    return DrawnBatches(dirs.sample / "batches", tag=sha256_file(ema_weights(dirs, train_until(cfg),
                                                                              cfg.train.total_steps)))


def _generate(module: DiffusionModule, cfg: DictConfig, requests: list, seeds: list[int], *, progress=True,
              model=None, distributed: bool = False, store: DrawnBatches | None = None) -> torch.Tensor:
    s, task = cfg.sample, get_task(cfg.task)
    draw = generate_distributed if distributed else generate
    return draw(model if model is not None else module.sampling_model, requests, seeds, store=store,
                condition=task.condition_fn(cfg), pair=task.pair_fn(cfg),
                image_shape=module.sample_shape(task.image_shape(cfg)), to_images=module.to_images,
                sampler=s.sampler, steps=s.steps, schedule=OmegaConf.to_container(s.schedule),
                guidance_scale=s.guidance_scale, eta=s.eta, clip_x0=s.clip_x0, batch_size=s.batch_size,
                progress=progress, device=module.device, precision=s.precision,
                metadata_scale=s.metadata_guidance_scale)


def sample(cfg: DictConfig, dirs: RunDirs, *, progress: bool = True, accelerator: str = "cpu") -> None:
    if is_done(dirs.sample, "sample") and (dirs.sample / "samples.npz").is_file():
        print(f"[sample] done already: {dirs.sample}")
        return
    dirs.sample.mkdir(parents=True, exist_ok=True)
    save_config(cfg, dirs.sample / "config.yaml")
    task = get_task(cfg.task)
    module = load_sampling_model(cfg, dirs, run_device(accelerator))
    requests = task.eval_requests(cfg)
    seeds = [cfg.sample.seed * 1_000_000 + i for i in range(cfg.sample.num_samples)]
    store = drawn_batches(cfg, dirs)
    kept = store.begin()  # batches drawn by an earlier, killed call: not in this call's wall time
    if kept:
        print(f"[sample] going on from {kept} batches drawn before: {store.folder}")
    start = time.time()
    images = _generate(module, cfg, requests, seeds, progress=progress, model=module.model, distributed=True,
                       store=store)
    if not is_global_zero():
        return
    uint8 = to_uint8(images)
    extras = task.sample_extras(requests)
    save_samples(dirs.sample / "samples.npz", uint8, extras.pop("labels", None), np.asarray(seeds), **extras)
    atomic_write_json(dirs.sample / "seeds.json",
                      {"rule": task.seed_rule_at(cfg.scale), "seeds": seeds, "labels": requests})
    task.save_grid(dirs.sample / "grid.png", uint8, requests, cfg)
    mark_done(dirs.sample, "sample", {"num_samples": len(seeds), "wall_s": round(time.time() - start, 1),
                                      **({"batches_drawn_before": kept} if kept else {})})
    store.clear()
    print(f"[sample] {cfg.dataset}/{cfg.method.name}: {len(seeds)} samples in {time.time() - start:.0f} s")


def evaluate(cfg: DictConfig, dirs: RunDirs, *, progress: bool = True, accelerator: str = "cpu") -> dict:
    if is_done(dirs.evaluate, "evaluate"):
        print(f"[evaluate] done already: {dirs.evaluate}")
        return read_metrics(dirs.evaluate / "metrics.json")
    dirs.evaluate.mkdir(parents=True, exist_ok=True)
    save_config(cfg, dirs.evaluate / "config.yaml")
    start = time.time()
    metrics = get_task(cfg.task).evaluate(cfg, dirs.sample / "samples.npz", progress=progress,
                                          device=run_device(accelerator))
    atomic_write_json(dirs.evaluate / "metrics.json", metrics)
    mark_done(dirs.evaluate, "evaluate", {"wall_s": round(time.time() - start, 1)})
    print(f"[evaluate] {cfg.dataset}/{cfg.method.name}: " +
          ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
    return metrics


def is_global_zero() -> bool:
    """True outside torch.distributed and on rank 0: the process that writes files after a DDP training."""
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or \
        torch.distributed.get_rank() == 0


def run(cfg: DictConfig, dirs: RunDirs, *, accelerator: str, devices: int, num_nodes: int,
        progress: bool = True) -> dict | None:
    """train (DDP across devices) -> sample (split across the same processes) -> evaluate (rank 0). Returns the
    metrics on rank 0, None on the other ranks. A finished evaluation needs nothing else: committed results render
    without the (uncommitted) weights and samples."""
    if is_done(dirs.evaluate, "evaluate"):
        return evaluate(cfg, dirs, progress=progress) if is_global_zero() else None
    train(cfg, dirs, accelerator=accelerator, devices=devices, num_nodes=num_nodes, progress=progress)
    sample(cfg, dirs, progress=progress, accelerator=accelerator)
    return evaluate(cfg, dirs, progress=progress, accelerator=accelerator) if is_global_zero() else None


