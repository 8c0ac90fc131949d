"""Tasks by name (the config's ``task`` key): what the pipeline asks of a task, and the registry of tasks.

Stages, sampling, evaluation and rendering hold a ``Task`` and call it; they never test which task it is.
A task declares:
- ``validate(cfg)``: its checks of a resolved config (method, guidance), before anything runs;
- ``image_shape(cfg)``, ``build_module(cfg)`` (a ``cad.tasks.base.DiffusionModule``), ``datamodule(cfg, device)``;
- ``eval_requests(cfg)``: what each evaluation sample asks for (class labels, captions, maps), ``seed_rule``;
- ``condition_fn(cfg)``: requests -> ``Condition``; ``pair_fn(cfg)``: the (positive, negative) conditions of the
  run's guidance, or None for a method without a guided branch;
- ``sample_extras(requests)``: the arrays its sample file stores besides images and seeds; ``save_grid``;
- ``evaluate(cfg, samples_path, device, progress)``: its metrics; ``write_table(...)``: its table.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from omegaconf import DictConfig


class Task:
    name: str = ""
    request_note: str = ""  # how evaluation requests are chosen, for table notes
    seed_rule: str = ""  # how sample i's seed and request are chosen, written beside the samples (seeds.json)
    paper_request_note: str | None = None  # the same two at the paper scale, where they differ
    paper_seed_rule: str | None = None
    paper_samples: str = "50k"  # how many samples the paper evaluates on, for table notes

    def request_note_at(self, scale: str) -> str:
        return self.paper_request_note if scale == "paper" and self.paper_request_note else self.request_note

    def seed_rule_at(self, scale: str) -> str:
        return self.paper_seed_rule if scale == "paper" and self.paper_seed_rule else self.seed_rule

    def validate(self, cfg: DictConfig) -> None: ...

    def image_shape(self, cfg: DictConfig) -> tuple[int, int, int]:
        raise NotImplementedError

    def build_module(self, cfg: DictConfig):
        raise NotImplementedError

    def datamodule(self, cfg: DictConfig, device: torch.device | str = "cpu"):
        raise NotImplementedError

    def eval_requests(self, cfg: DictConfig, num_samples: int | None = None) -> list:
        raise NotImplementedError

    seed_rule: str = "seed = sample.seed * 1e6 + i"

    def condition_fn(self, cfg: DictConfig) -> Callable:
        raise NotImplementedError

    def pair_fn(self, cfg: DictConfig) -> Callable | None:
        return None

    def sample_extras(self, requests: list) -> dict[str, np.ndarray]:
        return {}

    def method_label(self, method: str) -> str:
        """What tables' notes and figures' legends call a method."""
        from cad.experiment.report import pretty_method

        return pretty_method(method)

    def dataset_label(self, cfg: DictConfig) -> str:
        """What a figure panel calls the run's data (a stand-in says for what)."""
        return cfg.dataset + (f" (stand-in for {cfg.stands_in_for})" if cfg.stands_in_for else "")

    def noise_label(self, cfg: DictConfig) -> str:
        """How a figure's title names the run's condition noise."""
        return f"noise protocol {cfg.data.noise.protocol}"

    def save_grid(self, path: Path, images: np.ndarray, requests: list, cfg: DictConfig) -> None: ...

    def evaluate(self, cfg: DictConfig, samples_path: Path, *, device: torch.device | str, progress: bool) -> dict:
        raise NotImplementedError

    def write_sweep_figures(self, experiment, results: list, directory: Path, stem: str) -> list[Path]:
        """Figures of a sweep's runs beside its metric plot (the map task's Figure 6(a) grid); the paths written."""
        return []

    def write_table(self, name: str, results: list, notes: dict, directory: Path, output: str | None = None) -> str:
        """Render table ``name`` into ``directory`` as ``<output or name>.*``; return the text to print."""
        raise NotImplementedError


_TASKS: dict[str, Callable[[], Task]] = {}


def register_task(name: str, factory: Callable[[], Task]) -> None:
    _TASKS[name] = factory


def task_choices() -> list[str]:
    _load_builtin()
    return sorted(_TASKS)


def get_task(name: str) -> Task:
    _load_builtin()
    if name not in _TASKS:
        raise ValueError(f"unknown task '{name}'; valid: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]()


def _load_builtin() -> None:
    """The suite's own tasks register on import (imported late: they pull in the data and benchmark modules)."""
    import cad.tasks.class_task  # noqa: F401
    import cad.tasks.map_task  # noqa: F401
    import cad.tasks.text_task  # noqa: F401
