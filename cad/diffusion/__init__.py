from cad.diffusion.losses import per_sample_mse, reduce_loss
from cad.diffusion.noising import add_noise, eps_from_x0, x0_from_eps
from cad.diffusion.schedules import CLIP_MIN, Schedule, available_schedules, get_schedule, register_schedule
from cad.diffusion.self_conditioning import self_conditioned_forward

__all__ = [
    "CLIP_MIN",
    "Schedule",
    "add_noise",
    "available_schedules",
    "eps_from_x0",
    "get_schedule",
    "per_sample_mse",
    "reduce_loss",
    "register_schedule",
    "self_conditioned_forward",
    "x0_from_eps",
]
