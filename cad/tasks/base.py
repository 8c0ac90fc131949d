"""The diffusion training step every task shares (paper eq. 1-2), as a LightningModule a task subclasses.

t ~ U(0, 1), gamma = gamma(t), x_t = sqrt(gamma) x0 + sqrt(1 - gamma) eps; the denoiser predicts eps from
(x_t, gamma, condition) with RIN latent self-conditioning; the unweighted per-sample MSE is reduced by ``loss``
("mean", or "weighted": x c_i / mean(c)). The EMA of the weights is what samples. A task says only how a batch
becomes a ``Condition`` (``condition``) and which backbone it builds (``build_model``); with the guidance-aligned loss
(``guidance_loss``, cad.diffusion.guidance_loss) also which negative branch guidance uses (``training_pair``). A
latent-space task maps images to latents in ``prepare`` and back in ``to_images`` (``sample_shape``: what it samples).
"""
from __future__ import annotations

import lightning as L
import torch
from torch import Tensor, nn

from cad.conditioning import Condition
from cad.diffusion.guidance_loss import GuidanceLoss, guided_prediction
from cad.diffusion.losses import per_sample_mse, reduce_loss
from cad.diffusion.noising import add_noise
from cad.diffusion.schedules import get_schedule
from cad.diffusion.self_conditioning import self_conditioned_forward
from cad.training.ema import build_ema
from cad.training.lr_schedule import build_scheduler
from cad.training.optim import build_optimizer


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


class DiffusionModule(L.LightningModule):
    def __init__(self, *, schedule: dict, lr: float, betas: tuple[float, float], weight_decay: float,
                 warmup_steps: int, total_steps: int, lr_rate: float, ema_decay: float, ema_warmup: int | None,
                 self_cond_keep_prob: float = 0.9, seed: int = 0, loss: str = "mean",
                 guidance_loss: dict | None = None):
        super().__init__()
        self.save_hyperparameters()  # the subclass's arguments too: Lightning collects every __init__ frame
        self.loss_reduction = loss
        self.guidance_loss = GuidanceLoss(**(guidance_loss or {}))
        self.model = self.build_model()
        if getattr(self.model, "channels_last", False):
            # A convolutional denoiser's 4-D weights in NHWC make every convolution's output NHWC too: unet_cpu
            # trained 1.22-1.36x and sampled 1.12-1.39x faster in fp32 on one core of an AVX512 Xeon
            # (python -m benchmarks.memory_format; results/benchmarks/memory_format.md).
            # The layout changes rounding only, never what is computed, so it is not part of a run's identity.
            self.model.to(memory_format=torch.channels_last)
        self.ema = build_ema(self.model, decay=ema_decay, warmup=ema_warmup)
        self.gamma = get_schedule(**schedule)
        self.last_checkpoint: str | None = None  # set by the checkpoint callback's owner, for error messages

    # --- what a task defines ------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def condition(self, batch: dict, generator: torch.Generator | None = None) -> Condition:
        """The training condition of a batch; randomness (condition dropout) from ``generator``."""
        raise NotImplementedError

    def init_weights(self, state: dict) -> None:
        """Start from another run's EMA weights (``train.init_from``; another resolution: cad.backbones.transfer),
        the EMA restarted from them."""
        from cad.backbones.transfer import load_at_resolution

        load_at_resolution(self.model, state)
        self.ema.module.load_state_dict(self.model.state_dict())

    def prepare(self, batch: dict, generator: torch.Generator) -> dict:
        """The batch before noising (a task's augmentation draws from the step's generator here); as is by default."""
        return batch

    @property
    def latent_codec(self):
        """A latent-space task's frozen VAE (cad.backbones.latent_vae), None in pixel space. Set with
        ``set_latent_codec``: kept out of the registered submodules, so in no optimiser, EMA or checkpoint."""
        return self.__dict__.get("_latent_codec")

    def set_latent_codec(self, codec) -> None:
        self.__dict__["_latent_codec"] = codec  # past nn.Module.__setattr__: not a submodule

    def sample_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """The shape the sampler draws in for images of ``image_shape``: the images' own in pixel space, the latents'
        in latent space."""
        codec = self.latent_codec
        return tuple(image_shape) if codec is None else codec.latent_shape(tuple(image_shape))

    def to_images(self, x: Tensor) -> Tensor:
        """Sampler outputs -> images in [-1, 1] (``generate(..., to_images=module.to_images)``): the identity in pixel
        space, the VAE's decoder (to the run's image channels) in latent space."""
        codec = self.latent_codec
        return x if codec is None else codec.decode(x, channels=self.hparams.image_shape[0])

    def training_pair(self, cond: Condition) -> tuple[Condition, Condition]:
        """The (positive, negative) branches the guidance-aligned loss combines; a task with guidance defines it."""
        raise NotImplementedError(f"{type(self).__name__} has no guided branch for the guidance-aligned loss")

    # --- the shared step ----------------------------------------------------------------------------------------
    def step_generator(self, device: torch.device) -> torch.Generator:
        """The randomness of one training step (t, eps, condition dropout, the self-conditioning keep mask) is drawn
        from a generator seeded by (seed, global step), so a run resumed from a checkpoint draws what an
        uninterrupted run would have drawn."""
        step = self.global_step * self.trainer.world_size + self.global_rank if self._trainer else self.global_step
        return torch.Generator(device=device).manual_seed(self.hparams.seed * 1_000_003 + step)

    def model_step(self, batch: dict, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """The loss shared by training and validation: (reduced loss, per-sample loss). The randomness comes from
        ``generator``, by default the step's own (see ``step_generator``)."""
        generator = generator or self.step_generator(batch["image"].device)
        batch = self.prepare(batch, generator)
        x0 = batch["image"]
        t = torch.rand(x0.shape[0], device=x0.device, generator=generator)
        gamma = self.gamma(t)
        eps = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        x_t = add_noise(x0, gamma, eps)
        cond = self.condition(batch, generator)
        keep_prob = self.hparams.self_cond_keep_prob
        if self.guidance_loss.enabled:  # both branches in one forward, positive half first (as guided sampling)
            w = self.guidance_loss.draw_scales(x0.shape[0], x0.device, generator)
            pos, neg = self.training_pair(cond)
            both = self_conditioned_forward(self.model, torch.cat([x_t, x_t]), torch.cat([gamma, gamma]),
                                            Condition.cat([pos, neg]), keep_prob=keep_prob, generator=generator)
            eps_pos, eps_neg = both.float().chunk(2)
            eps_hat = guided_prediction(eps_pos, eps_neg, w, self.guidance_loss.stop_gradient)
        else:
            eps_hat = self_conditioned_forward(self.model, x_t, gamma, cond, keep_prob=keep_prob, generator=generator)
        per_sample = per_sample_mse(eps_hat.float(), eps)
        coherence = batch["coherence"].float() if "coherence" in batch else None
        return reduce_loss(per_sample, coherence, self.loss_reduction), per_sample

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
        scheduler = build_scheduler(optimizer, warmup_steps=hp.warmup_steps, total_steps=hp.total_steps,
                                    rate=hp.lr_rate)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    @property
    def sampling_model(self) -> nn.Module:
        """The EMA weights, which are what the paper samples from."""
        return self.ema.module
