"""Config composition: defaults -> scale -> dataset section -> method -> user overrides.

A run's config is composed from files under ``experiments/`` and never copied:
    experiments/defaults.yaml           every key, with the paper's values; the other files may only change these keys
    experiments/task/<task>.yaml        what a task (class, text, map) sets for every scale (its evaluation), and in
                                        its ``scales`` section what it sets at one scale (merged after the scale file)
    experiments/scale/<scale>.yaml      hyperparameters of a scale, with a ``datasets`` section of per-dataset overrides
    experiments/method/<method>.yaml    a Table 5(d) variant (labels, coherence token, loss, dropout, guidance)
    experiments/paper/<experiment>.yaml which methods (and sweep) a paper table or figure needs
User overrides are ``key=value`` dot-paths (``train.total_steps=100``); an unknown key is an error naming the valid
ones.
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
    sweep_values: list | dict  # one list, or one per scale ({smoke: [...], cpu: [...], paper: [...]})
    paper_datasets: list[str] | None = None  # the paper's datasets it covers (None: all of the scale's)
    task: str = "class"
    figure: dict | None = None  # a sweep's plot: x ("sweep" or a metric), y (metrics), labels (see report.plot_sweep)
    overrides: dict | None = None  # per scale: the overrides the experiment itself needs (a learning curve's length)
    variants: dict | None = None  # an ablation: name -> overrides; every method runs once per variant
    datasets: list[str] | None = None  # the datasets it runs by default (the text task: its canvases' sources)
    best_of: str | None = None  # a sweep shown as its task's table: each method at the value with the lowest metric
    context: dict | None = None  # an ablation: variant -> what the seed paper reports for it (cad.experiment.ablation)

    def values_at(self, scale: str) -> list:
        values = self.sweep_values
        if isinstance(values, dict):
            if scale not in values:
                raise ConfigError(f"experiment {self.name} sweeps {self.sweep_key} at scales {', '.join(values)} "
                                  f"only; valid: --scale {' or '.join(values)}")
            values = values[scale]
        return list(values)

    def overrides_at(self, scale: str) -> list[str]:
        return list((self.overrides or {}).get(scale, []))


def load_experiment(name: str) -> Experiment:
    cfg = load_group("paper", name)
    sweep = cfg.get("sweep")
    values = OmegaConf.to_container(sweep["values"]) if sweep else []
    return Experiment(
        name=cfg.experiment,
        methods=list(cfg.methods),
        sweep_key=sweep.key if sweep else None,
        sweep_values=values,
        paper_datasets=list(cfg.paper_datasets) if cfg.get("paper_datasets") else None,
        task=cfg.get("task", "class"),
        figure=OmegaConf.to_container(cfg.figure) if cfg.get("figure") else None,
        overrides=OmegaConf.to_container(cfg.overrides) if cfg.get("overrides") else None,
        variants=OmegaConf.to_container(cfg.variants) if cfg.get("variants") else None,
        datasets=list(cfg.datasets) if cfg.get("datasets") else None,
        best_of=cfg.get("best_of"),
        context=OmegaConf.to_container(cfg.context) if cfg.get("context") else None,
    )


def experiment_choices() -> list[str]:
    return _choices("paper")


def _paper_name(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def scale_datasets(scale: str, paper_datasets: list[str] | None = None) -> list[str]:
    """The scale's datasets; with ``paper_datasets``, only those that are (or stand in for) one of them
    (cad.data.registry), so a figure the paper draws on ImageNet runs on imagenet64 at the paper scale and on its
    stand-in (MNIST) below it."""
    from cad.data.registry import paper_dataset, pretty_name

    datasets = list(load_group("scale", scale).datasets.keys())
    if paper_datasets is None:
        return datasets
    wanted = {_paper_name(d) for d in paper_datasets}
    return [name for name in datasets if _paper_name(pretty_name(paper_dataset(name))) in wanted]


def scale_value(scale: str, key: str, task: str = "class"):
    """A dot-path's value at ``scale`` before any dataset, method or override: the task file's for the scale, else the
    scale file's, else the task file's, else the default."""
    task_cfg = load_group("task", task)
    for source in (task_cfg.get("scales", {}).get(scale), load_group("scale", scale), task_cfg,
                   OmegaConf.load(EXPERIMENTS_DIR / "defaults.yaml")):
        value = None if source is None else OmegaConf.select(source, key)
        if value is not None:
            return value
    return None


def _leaf_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        keys.extend(_leaf_keys(value, path + ".") if isinstance(value, DictConfig) else [path])
    return keys


def _merge_checked(cfg: DictConfig, update, where: str) -> DictConfig:
    """``cfg`` updated by ``update`` (a config or a dot-list); a key ``cfg`` lacks is an error naming the valid keys."""
    OmegaConf.set_struct(cfg, True)
    try:
        update = OmegaConf.from_dotlist(list(update)) if isinstance(update, (list, tuple)) else update
        merged = OmegaConf.merge(cfg, update)
    except ConfigKeyError as err:
        raise ConfigError(f"unknown config key in {where}: {err.msg.splitlines()[0]}; "
                          f"valid keys: {', '.join(_leaf_keys(cfg))}") from None
    finally:
        OmegaConf.set_struct(cfg, False)
    OmegaConf.set_struct(merged, False)
    return merged


def resolve(scale: str, dataset: str, method: str, overrides: list[str] = (), *, task: str = "class",
            accelerator: str = "auto", devices: int = 1) -> DictConfig:
    """The full config of one run: what trains, samples and evaluates one (dataset, method) pair.

    defaults.yaml <- task file <- scale file <- the scale's section for ``dataset`` <- the task file's section for the
    scale <- method file <- user overrides,
    each checked against the keys of defaults.yaml; then every value is validated (before anything runs) and
    ``auto`` precisions and worker counts are resolved for ``accelerator`` (the resolved values are what the run
    records)."""
    from cad.data.registry import get_spec, pretty_name
    from cad.experiment.validate import resolve_hardware, validate

    scale_cfg = load_group("scale", scale)
    if dataset not in scale_cfg.datasets:
        raise ConfigError(f"dataset '{dataset}' is not part of scale '{scale}'; valid: {', '.join(scale_cfg.datasets)}")
    section = OmegaConf.to_container(scale_cfg.datasets[dataset]) or {}
    stand_in = get_spec(dataset).stands_in_for
    cfg = OmegaConf.load(EXPERIMENTS_DIR / "defaults.yaml")
    cfg.scale = scale
    cfg.task = task
    task_cfg = load_group("task", task)
    cfg = _merge_checked(cfg, OmegaConf.masked_copy(task_cfg, [k for k in task_cfg if k != "scales"]),
                         f"experiments/task/{task}.yaml")
    cfg = _merge_checked(cfg, OmegaConf.masked_copy(scale_cfg, [k for k in scale_cfg if k != "datasets"]),
                         f"experiments/scale/{scale}.yaml")
    cfg = _merge_checked(cfg, OmegaConf.create(section), f"experiments/scale/{scale}.yaml, datasets.{dataset}")
    # What a task sets at one scale only (its network and budget) comes after the scale's shared values.
    at_scale = task_cfg.get("scales", {}).get(scale)
    if at_scale is not None:
        cfg = _merge_checked(cfg, at_scale, f"experiments/task/{task}.yaml, scales.{scale}")
    cfg.dataset = dataset
    cfg.stands_in_for = pretty_name(stand_in) if stand_in else None
    cfg.method = load_group("method", method)
    renamed = [o for o in overrides if o.startswith("method.")]
    if renamed:
        raise ConfigError(f"{renamed[0]}: a run's method is its file, and the table row it fills is named by it; "
                          f"valid: another method (--methods {', '.join(_choices('method'))}) or a new file "
                          f"experiments/method/<name>.yaml")
    cfg = _merge_checked(cfg, list(overrides), f"overrides {list(overrides)}")
    _apply_steps_factor(cfg)
    validate(cfg)
    return resolve_hardware(cfg, accelerator=accelerator, devices=devices)


def _apply_steps_factor(cfg: DictConfig) -> None:
    """``train.total_steps_factor``: the run trains that share of ``train.total_steps`` (rounded), so that one variant
    list sets a budget relative to every scale's (resolution transfer at equal compute, experiments/paper/
    conditioning.yaml). The resolved config records both, the factor and the steps it gave."""
    factor = cfg.train.total_steps_factor
    if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not factor > 0:
        raise ConfigError(f"train.total_steps_factor={factor!r} is not valid; valid: a number > 0")
    if factor != 1 and isinstance(cfg.train.total_steps, int):
        steps = round(cfg.train.total_steps * factor)
        if steps <= cfg.train.warmup_steps:
            raise ConfigError(f"train.total_steps_factor={factor} leaves {steps} of train.total_steps="
                              f"{cfg.train.total_steps}, not more than train.warmup_steps={cfg.train.warmup_steps}; "
                              f"valid: a larger factor or total, or fewer warmup steps")
        cfg.train.total_steps = steps


# Keys that change how fast a run goes, never what it computes: left out of a run's identity.
# Paths to data and weights are where things are, not what a run is: moving them keeps its identity.
EXECUTION_KEYS = ("data.num_workers", "data.shards", "data.shard_scores", "data.coco", "evaluate.clip_checkpoint",
                  "data.ade20k", "data.ade20k_captions", "data.ade20k_predicted", "data.ade20k_confidence",
                  "backbone.sd_weights", "evaluate.segmenter")
# Keys added after runs were committed, with the value those runs had without naming it: a run with that value keeps
# the identity (hash) it had before the key existed, so committed results stay found.
IMPLICIT_VALUES = {"sample.precision": "32-true", "task": "class", "backbone.mix_labels_and_confidence": False,
                   "sample.train_step": None,
                   "train.guidance_loss": {"w": 0.0, "w_max": None, "stop_gradient": False, "plain_share": 0.0},
                   "train.schedule.shift": 1.0, "sample.schedule.shift": 1.0, "train.init_from": None,
                   "data.augment": {"hflip": False, "crop_min": None}, "backbone.coherence_as_metadata": False,
                   "data.caption_noise": 0.5, "backbone.text_encoder": "minilm", "sample.coherence_map": "uniform",
                   "data.resolution": None, "sample.metadata_guidance_scale": 0.0, "train.metadata_dropout": 0.0,
                   "backbone.latent_vae": None, "sample.null_label": False, "data.resolution_metadata": False,
                   "backbone.metadata_gate": "gamma", "train.total_steps_factor": 1.0}


def _parent(container: dict, path: str) -> tuple[dict, str]:
    """The dict holding a dot-path's leaf (an empty one when a parent is missing) and the leaf's name."""
    *parents, leaf = path.split(".")
    for key in parents:
        container = container.get(key) or {}
    return container, leaf


def _identity(container: dict) -> dict:
    """What a run's hash is taken over: the config less its execution keys and its implicit values."""
    container = json.loads(json.dumps(container))
    for path in EXECUTION_KEYS:
        node, leaf = _parent(container, path)
        node.pop(leaf, None)
    for path, value in IMPLICIT_VALUES.items():
        node, leaf = _parent(container, path)
        if leaf in node and node[leaf] == value:
            node.pop(leaf)
    return container


def config_hash(cfg: DictConfig | dict, keys: list[str]) -> str:
    """A short stable hash of the listed top-level sections: the run's identity."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, (DictConfig, ListConfig)) else cfg
    container = _identity(container)
    payload = json.dumps({k: container[k] for k in keys if k in container}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


TRAIN_KEYS = ["task", "dataset", "data", "backbone", "train", "method"]
SAMPLE_KEYS = ["sample"]
EVALUATE_KEYS = ["evaluate"]


def save_config(cfg: DictConfig, path: Path) -> None:
    from cad.io import atomic_write_text

    atomic_write_text(path, OmegaConf.to_yaml(cfg, resolve=True))
