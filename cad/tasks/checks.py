"""Config checks that several tasks share (each a ConfigError naming the valid choices)."""
from __future__ import annotations

from omegaconf import DictConfig

from cad.experiment.config import ConfigError


def check_canvas_run(cfg: DictConfig, task: str) -> None:
    """A task built on captioned canvases (its cpu and smoke scales) needs a source dataset with caption words."""
    from cad.data.canvases import VOCABULARIES

    if cfg.dataset not in VOCABULARIES:
        raise ConfigError(f"the {task} task builds canvases from {cfg.dataset!r}, which has no caption words; valid: "
                          f"{', '.join(VOCABULARIES)} (or --scale paper: its own data)")


def check_no_null_label(cfg: DictConfig, task: str) -> None:
    """``sample.null_label`` (the unconditional model) is built for the class task only."""
    if cfg.sample.null_label:
        raise ConfigError(f"sample.null_label=true: the {task} task has no null-label sampling; valid: "
                          f"sample.null_label=false (the class task has it)")


def check_class_conditioning_only(cfg: DictConfig, task: str) -> None:
    """The label-coherence mixing and the control metadata (augmentation flags, the resolution, the coherence on that
    path) are built for the class task only."""
    from cad.data.augment import augments

    b = cfg.backbone
    if b.mix_labels_and_confidence or b.coherence_as_metadata or augments(cfg.data.augment) \
            or cfg.data.resolution_metadata or b.metadata_gate != "gamma":
        raise ConfigError(f"the {task} task has no label to mix and no control metadata; valid: "
                          f"backbone.mix_labels_and_confidence=false, backbone.coherence_as_metadata=false, "
                          f"data.augment at its defaults, data.resolution_metadata=false, backbone.metadata_gate=gamma "
                          f"(the class task has them)")


def check_extractors(cfg: DictConfig, domain: str) -> None:
    """``evaluate.extractors``: the registered feature extractors, or the task's own ``domain`` one."""
    from benchmarks.features import EXTRACTORS

    valid = sorted(EXTRACTORS) + [domain]
    for name in cfg.evaluate.extractors:
        if name not in valid:
            raise ConfigError(f"evaluate.extractors: {name!r} is not valid; valid: {', '.join(valid)}")
