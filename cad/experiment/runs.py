"""Run directories: named by a hash of the resolved config, one ``<stage>.done`` marker per finished stage.

    results/raw/<experiment>/<dataset>-<method>-<train hash>/        config.yaml, train.done, checkpoints/, model_ema.pt
        sample-<sample hash>/                                         config.yaml, samples.npz, seeds.json, grid.png,
                                                                      sample.done
            eval-<evaluate hash>/                                     config.yaml, metrics.json, evaluate.done

A figure that reuses a trained model (fig5a, fig5b reuse table5d's CAD runs) finds the finished training run by its
hash in any experiment's folder instead of training again.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from cad.experiment.config import EVALUATE_KEYS, SAMPLE_KEYS, TRAIN_KEYS, config_hash
from cad.hardware import machine_name
from cad.io import atomic_write_json
from cad.paths import results_dir


@dataclass(frozen=True)
class RunDirs:
    train: Path
    sample: Path
    evaluate: Path


# ``train.init_from=run:<run name>``: start from the EMA weights of that training run (found in any experiment's folder,
# the identity stays the same on every machine, unlike a path); an ablation's variant names it as ``variant:<name>``.
RUN_PREFIX = "run:"
VARIANT_PREFIX = "variant:"


def run_name(cfg: DictConfig) -> str:
    """A training run's folder name: ``<dataset>-<method>-<hash of its training config>``."""
    return f"{cfg.dataset}-{cfg.method.name}-{config_hash(cfg, TRAIN_KEYS)}"


def init_weights_path(init_from: str, raw_root: Path) -> Path:
    """The file ``train.init_from`` names: a path, or ``run:<name>``'s finished ``model_ema.pt`` under ``raw_root``."""
    if not str(init_from).startswith(RUN_PREFIX):
        return Path(init_from)
    name = str(init_from)[len(RUN_PREFIX):]
    found = sorted(raw_root.glob(f"*/{name}/model_ema.pt"))
    if not found:
        raise FileNotFoundError(f"train.init_from={init_from}: no {name}/model_ema.pt under {raw_root}; train that run "
                                f"first (an ablation does, before the variant that starts from it) or park its weights")
    return found[0]


def run_dirs(cfg: DictConfig, experiment: str, root: Path | None = None) -> RunDirs:
    root = root or results_dir() / "raw"
    name = run_name(cfg)
    finished = sorted(root.glob(f"*/{name}/train.done"))
    train = finished[0].parent if finished else root / experiment / name
    sample = train / f"sample-{config_hash(cfg, TRAIN_KEYS + SAMPLE_KEYS)}"
    evaluate = sample / f"eval-{config_hash(cfg, TRAIN_KEYS + SAMPLE_KEYS + EVALUATE_KEYS)}"
    return RunDirs(train=train, sample=sample, evaluate=evaluate)


def is_done(directory: Path, stage: str) -> bool:
    return (directory / f"{stage}.done").is_file()


def mark_done(directory: Path, stage: str, summary: dict) -> None:
    """Written last, atomically: a stage without its marker is redone (or resumed) on the next run. It names the
    machine, so that a wall time read from it later says what it was measured on."""
    atomic_write_json(directory / f"{stage}.done", {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                    "machine": machine_name(), **summary})


def read_done(directory: Path, stage: str) -> dict:
    return json.loads((directory / f"{stage}.done").read_text())


def wall_from_step(train_marker: dict) -> int:
    """The training step a train marker's ``wall_s`` counts from: 0, or the step it was resumed at from a checkpoint that
    did not record the time before it (markers written before ``wall_s_from_step`` existed counted from
    ``resumed_from``)."""
    return int(train_marker.get("wall_s_from_step", train_marker.get("resumed_from", 0)))


def read_metrics(path: Path) -> dict:
    return json.loads(Path(path).read_text())
