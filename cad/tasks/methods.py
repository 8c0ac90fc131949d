"""The class-conditional training variants of Table 5(d), read from ``experiments/method/*.yaml``."""
from __future__ import annotations

from dataclasses import dataclass

LABELS = ("clean", "noisy")
LOSSES = ("mean", "weighted")
GUIDANCES = ("none", "cfg", "cacfg")


@dataclass(frozen=True)
class Method:
    name: str
    labels: str  # which labels train the model: "clean" or the classifier-resampled "noisy" ones
    use_coherence: bool  # CAD: the coherence score is its own token
    loss: str  # reduction of the per-sample loss, see cad.diffusion.losses.reduce_loss (Filtered: "mean")
    cond_dropout: float  # probability of replacing the label with the null embedding (plain CFG training)
    filter_threshold: float | None  # Filtered: training samples with coherence below it are dropped
    guidance: str  # guidance used at sampling when the guidance scale is not 0

    def __post_init__(self):
        for field, value, allowed in (("labels", self.labels, LABELS), ("loss", self.loss, LOSSES),
                                      ("guidance", self.guidance, GUIDANCES)):
            if value not in allowed:
                raise ValueError(f"method '{self.name}': {field}={value!r}; allowed: {', '.join(allowed)}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"method '{self.name}': cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if self.guidance == "cacfg" and not self.use_coherence:
            raise ValueError(f"method '{self.name}': CA-CFG (eq. 4) needs use_coherence: true")
        if self.guidance == "cfg" and self.cond_dropout == 0.0:
            raise ValueError(f"method '{self.name}': plain CFG needs cond_dropout > 0 to learn the null branch")
