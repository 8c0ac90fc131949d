"""Class-conditional diffusion with noisy labels: the Table 5(d) variants over one shared denoiser.

Training (paper eq. 1-2): t ~ U(0, 1), gamma = gamma(t), x_t = sqrt(gamma) x0 + sqrt(1 - gamma) eps, the denoiser predicts
eps from (x_t, gamma, label[, coherence]) with RIN latent self-conditioning, unweighted MSE reduced per method
(mean / filtered / weighted). The EMA of the weights is what samples.
"""
from __future__ import annotations

import lightning as L
import torch
from torch import Tensor

from cad.backbones import build_backbone
from cad.conditioning import Condition
from cad.diffusion.losses import per_sample_mse, reduce_loss
from cad.diffusion.noising import add_noise
from cad.diffusion.schedules import get_schedule
from cad.diffusion.self_conditioning import self_conditioned_forward
from cad.tasks.methods import Method
from cad.training.ema import build_ema
from cad.training.lr_schedule import warmup_cosine
from cad.training.optim import build_optimizer


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


class ClassConditionalDiffusion(L.LightningModule):
    def __init__(self, *, backbone: str, image_shape: tuple[int, int, int], num_classes: int, method: dict,
                 schedule: dict, lr: float, betas: tuple[float, float], weight_decay: float, warmup_steps: int,
                 total_steps: int, lr_rate: float, ema_decay: float, ema_warmup: int | None,
                 self_cond_keep_prob: float = 0.9, seed: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self.method = Method(**method)
        channels, height, width = image_shape
        self.model = build_backbone(backbone, image_size=height, in_channels=channels, num_classes=num_classes,
                                    use_coherence=self.method.use_coherence)
        self.ema = build_ema(self.model, decay=ema_decay, warmup=ema_warmup)
        self.gamma = get_schedule(**schedule)
        self.last_checkpoint: str | None = None  # set by the checkpoint callback's owner, for error messages

    def step_generator(self, device: torch.device) -> torch.Generator:
        """The randomness of one training step (t, eps, dropout of the label, self-conditioning keep mask) is drawn
        from a generator seeded by (seed, global step), so a run resumed from a checkpoint draws what an
        uninterrupted run would have drawn."""
        step = self.global_step * self.trainer.world_size + self.global_rank if self._trainer else self.global_step
        return torch.Generator(device=device).manual_seed(self.hparams.seed * 1_000_003 + step)

    def condition(self, batch: dict, generator: torch.Generator | None = None) -> Condition:
        """The training condition: the (possibly noisy) label, dropped to the null embedding with probability
        ``cond_dropout`` (plain CFG), and the coherence score for CAD."""
        label = batch["label"]
        drop = torch.rand(label.shape, device=label.device, generator=generator) < self.method.cond_dropout
        coherence = batch["coherence"].float() if self.method.use_coherence else None
        return Condition(label=label, label_null=drop, coherence=coherence)

    def model_step(self, batch: dict, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """The loss shared by training and validation: (reduced loss, per-sample loss). The randomness comes from
        ``generator``, by default the step's own (see ``step_generator``)."""
        x0 = batch["image"]
        generator = generator or self.step_generator(x0.device)
        t = torch.rand(x0.shape[0], device=x0.device, generator=generator)
        gamma = self.gamma(t)
        eps = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        x_t = add_noise(x0, gamma, eps)
        eps_hat = self_conditioned_forward(self.model, x_t, gamma, self.condition(batch, generator),
                                           keep_prob=self.hparams.self_cond_keep_prob, generator=generator)
        per_sample = per_sample_mse(eps_hat.float(), eps)
        threshold = self.method.filter_threshold if self.method.filter_threshold is not None else 0.5
        loss = reduce_loss(per_sample, batch["coherence"].float(), self.method.loss, threshold=threshold)
        return loss, per_sample

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss, _ = self.model_step(batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at step {self.global_step}; "
                f"last good checkpoint: {self.last_checkpoint or 'none saved yet'}")
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss, _ = self.model_step(batch)
        self.log("val/loss", loss, prog_bar=True)

    def optimizer_step(self, *args, **kwargs) -> None:
        """The EMA follows every optimiser step here, not in ``on_train_batch_end``: Lightning runs callbacks' batch-end
        hooks (the checkpoint's) before the module's, so a checkpoint would otherwise miss the step's EMA update and a
        resumed run would drift from an uninterrupted one."""
        super().optimizer_step(*args, **kwargs)
        self.ema.update_parameters(self.model)

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = build_optimizer(self.model, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: warmup_cosine(step, warmup_steps=hp.warmup_steps, total_steps=hp.total_steps, rate=hp.lr_rate))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    @property
    def sampling_model(self) -> torch.nn.Module:
        """The EMA weights, which are what the paper samples from."""
        return self.ema.module

