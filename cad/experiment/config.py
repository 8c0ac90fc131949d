"""Config composition: scale -> dataset section -> method -> user overrides.

A run's config is composed from files under ``experiments/`` and never copied:
    experiments/scale/<scale>.yaml      hyperparameters of a scale, with a ``datasets`` section of per-dataset overrides
    experiments/method/<method>.yaml    a Table 5(d) variant (labels, coherence token, loss, dropout, guidance)
    experiments/paper/<experiment>.yaml which methods (and sweep) a paper table or figure needs
User overrides are ``key=value`` dot-paths (``train.total_steps=100``); an unknown key is an error naming the valid ones.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError

from cad.paths import REPO_ROOT

EXPERIMENTS_DIR = REPO_ROOT / "experiments"


class ConfigError(ValueError):
    """A bad experiment, scale, method or override; the message names the valid choices."""


def _choices(group: str) -> list[str]:
    return sorted(p.stem for p in (EXPERIMENTS_DIR / group).glob("*.yaml"))


def load_group(group: str, name: str) -> DictConfig:
    path = EXPERIMENTS_DIR / group / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown {group} '{name}'; valid: {', '.join(_choices(group))}")
    return OmegaConf.load(path)


@dataclass(frozen=True)
class Experiment:
    name: str
    methods: list[str]
    sweep_key: str | None
    sweep_values: list[float]
    paper_datasets: list[str] | None = None  # the paper's datasets it covers (None: all of the scale's)


def load_experiment(name: str) -> Experiment:
    cfg = load_group("paper", name)
    sweep = cfg.get("sweep")
    return Experiment(
        name=cfg.experiment,
        methods=list(cfg.methods),
        sweep_key=sweep.key if sweep else None,
        sweep_values=list(sweep["values"]) if sweep else [],
        paper_datasets=list(cfg.paper_datasets) if cfg.get("paper_datasets") else None,
    )


def experiment_choices() -> list[str]:
    return _choices("paper")


def _paper_name(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def scale_datasets(scale: str, paper_datasets: list[str] | None = None) -> list[str]:
    """The scale's datasets; with ``paper_datasets``, only those that are (or stand in for) one of them, so a
    figure the paper draws on ImageNet runs on imagenet64 at the paper scale and on its stand-in (MNIST) below it."""
    datasets = load_group("scale", scale).datasets
    if paper_datasets is None:
        return list(datasets.keys())
    wanted = {_paper_name(d) for d in paper_datasets}
    return [name for name, section in datasets.items()
            if _paper_name(section.get("stands_in_for") or name) in wanted]


def _leaf_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        keys.extend(_leaf_keys(value, path + ".") if isinstance(value, DictConfig) else [path])
    return keys


def resolve(scale: str, dataset: str, method: str, overrides: list[str] = ()) -> DictConfig:
    """The full config of one run: what trains, samples and evaluates one (dataset, method) pair."""
    scale_cfg = load_group("scale", scale)
    if dataset not in scale_cfg.datasets:
        raise ConfigError(f"dataset '{dataset}' is not part of scale '{scale}'; valid: {', '.join(scale_cfg.datasets)}")
    section = OmegaConf.to_container(scale_cfg.datasets[dataset])
    stands_in_for = section.pop("stands_in_for", None)
    base = OmegaConf.masked_copy(scale_cfg, [k for k in scale_cfg if k != "datasets"])
    cfg = OmegaConf.merge(base, section)
    cfg.dataset = dataset
    cfg.stands_in_for = stands_in_for
    cfg.method = load_group("method", method)
    OmegaConf.set_struct(cfg, True)
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    except ConfigKeyError as err:
        raise ConfigError(f"unknown config key in overrides {list(overrides)}: {err.msg.splitlines()[0]}; "
                          f"valid keys: {', '.join(_leaf_keys(cfg))}") from None
    OmegaConf.set_struct(cfg, False)
    return cfg


def config_hash(cfg: DictConfig | dict, keys: list[str]) -> str:
    """A short stable hash of the listed top-level sections: the run's identity."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, (DictConfig, ListConfig)) else cfg
    payload = json.dumps({k: container.get(k) for k in keys}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


TRAIN_KEYS = ["dataset", "data", "backbone", "train", "method"]
SAMPLE_KEYS = ["sample"]
EVALUATE_KEYS = ["evaluate"]


def save_config(cfg: DictConfig, path: Path) -> None:
    from cad.io import atomic_write_text

    atomic_write_text(path, OmegaConf.to_yaml(cfg, resolve=True))
