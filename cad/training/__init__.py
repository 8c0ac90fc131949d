from cad.training.ema import build_ema, ema_decay, ema_multi_avg_fn
from cad.training.lr_schedule import build_scheduler, warmup_cosine
from cad.training.optim import NO_DECAY_NAME_PATTERNS, build_optimizer, no_weight_decay_names, param_groups

__all__ = [
    "NO_DECAY_NAME_PATTERNS",
    "build_ema",
    "build_optimizer",
    "build_scheduler",
    "ema_decay",
    "ema_multi_avg_fn",
    "no_weight_decay_names",
    "param_groups",
    "warmup_cosine",
]
