"""Values of a composed run config, checked before anything runs: a bad value is one line naming the valid choices,
not a failure after an hour of training. Also where ``auto`` settings become what this machine does natively."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from benchmarks.manifold import PRDC_PROTOCOLS
from cad import hardware
from cad.backbones import PRESETS
from cad.backbones.sd_controlnet import SD_CONTROLNET  # built from SD's weights by its task, not by build_backbone
from cad.conditioning.embedders import METADATA_GATES
from cad.data.augment import augments
from cad.data.noise import PROTOCOLS, PROTOCOL_ALIASES
from cad.diffusion.schedules import available_schedules
from cad.experiment.config import ConfigError
from cad.experiment.runs import RUN_PREFIX
from cad.sampling import available_samplers
from cad.tasks.registry import get_task, task_choices


def _one_of(key: str, value, valid) -> None:
    if value not in valid:
        raise ConfigError(f"{key}={value!r} is not valid; valid: {', '.join(map(str, valid))}")


def validate(cfg: DictConfig) -> None:
    """The values every task shares; then the task's own checks (its method, guidance and extractors)."""
    _one_of("task", cfg.task, task_choices())
    _one_of("backbone.preset", cfg.backbone.preset, sorted(PRESETS) + [SD_CONTROLNET])
    _one_of("sample.sampler", cfg.sample.sampler, available_samplers())
    _one_of("train.schedule.name", cfg.train.schedule.name, available_schedules())
    _one_of("sample.schedule.name", cfg.sample.schedule.name, available_schedules())
    _one_of("data.noise.protocol", cfg.data.noise.protocol, PROTOCOLS + tuple(PROTOCOL_ALIASES))
    _one_of("evaluate.prdc_protocol", cfg.evaluate.prdc_protocol, PRDC_PROTOCOLS)
    for key in ("train.precision", "sample.precision", "evaluate.precision"):
        _one_of(key, cfg[key.split(".")[0]].precision, hardware.PRECISIONS)
    if not 0.0 <= cfg.sample.coherence <= 1.0:
        raise ConfigError(f"sample.coherence={cfg.sample.coherence} is not valid; valid: a value in [0, 1]")
    for key in ("train.total_steps", "data.batch_size", "sample.num_samples", "sample.batch_size", "sample.steps",
                "evaluate.batch_size", "evaluate.reference_size"):
        section, name = key.split(".")
        if not isinstance(cfg[section][name], int) or cfg[section][name] < 1:
            raise ConfigError(f"{key}={cfg[section][name]!r} is not valid; valid: an integer >= 1")
    init = cfg.train.init_from
    if init is not None and not str(init).startswith(RUN_PREFIX) and not Path(init).is_file():
        raise ConfigError(f"train.init_from={init!r}: no such file; valid: null, the model_ema.pt of a trained run, or "
                          f"{RUN_PREFIX}<its run folder name>")
    step = cfg.sample.train_step
    if step is not None and (not isinstance(step, int) or not 1 <= step <= cfg.train.total_steps):
        raise ConfigError(f"sample.train_step={step!r} is not valid; valid: null (the end of training) or an integer "
                          f"in [1, train.total_steps={cfg.train.total_steps}]")
    workers = cfg.data.num_workers
    if workers != "auto" and (not isinstance(workers, int) or workers < 0):
        raise ConfigError(f"data.num_workers={workers!r} is not valid; valid: auto or an integer >= 0")
    if not 0.0 <= cfg.train.metadata_dropout < 1.0:
        raise ConfigError(f"train.metadata_dropout={cfg.train.metadata_dropout} is not valid; valid: a value in [0, 1)")
    if not isinstance(cfg.data.resolution_metadata, bool):
        raise ConfigError(f"data.resolution_metadata={cfg.data.resolution_metadata!r} is not valid; "
                          f"valid: true or false")
    has_metadata = augments(cfg.data.augment) or cfg.data.resolution_metadata
    if (cfg.sample.metadata_guidance_scale != 0 or cfg.train.metadata_dropout != 0) and not has_metadata:
        raise ConfigError("sample.metadata_guidance_scale and train.metadata_dropout act on control metadata, which "
                          "this run has none of; valid: 0, or a class run with data.augment.hflip=true, "
                          "data.augment.crop_min set or data.resolution_metadata=true")
    gate = cfg.backbone.metadata_gate
    if gate not in METADATA_GATES:
        raise ConfigError(f"backbone.metadata_gate={gate!r} is not valid; valid: {', '.join(METADATA_GATES)}")
    if gate != "gamma" and not (has_metadata or cfg.backbone.coherence_as_metadata):
        raise ConfigError(f"backbone.metadata_gate={gate} changes the control metadata, but this run feeds none; "
                          f"valid: with backbone.coherence_as_metadata=true, data.augment or "
                          f"data.resolution_metadata=true, or backbone.metadata_gate=gamma")
    get_task(cfg.task).validate(cfg)


def resolve_hardware(cfg: DictConfig, *, accelerator: str, devices: int = 1) -> DictConfig:
    """``auto`` precisions and worker counts -> what ``accelerator`` does natively here (cad.hardware)."""
    try:
        device_type = hardware.accelerator_device_type(accelerator)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    for section in ("train", "sample", "evaluate"):
        cfg[section].precision = hardware.resolve_precision(cfg[section].precision, device_type)
    cfg.data.num_workers = hardware.resolve_num_workers(cfg.data.num_workers, device_type, devices)
    return cfg
