"""The eps-prediction loss, its batch reductions, and RIN-style self-conditioning during training."""
import pytest
import torch
from torch import nn

from cad.conditioning import Condition
from cad.diffusion import per_sample_mse, reduce_loss, self_conditioned_forward


def test_per_sample_mse_means_over_non_batch_dims():
    eps = torch.zeros(2, 3, 4)
    eps_hat = torch.stack([torch.ones(3, 4), 2 * torch.ones(3, 4)])
    torch.testing.assert_close(per_sample_mse(eps_hat, eps), torch.tensor([1.0, 4.0]))


LOSS = torch.tensor([1.0, 2.0, 3.0, 4.0])
COHERENCE = torch.tensor([0.0, 0.5, 1.0, 0.25])


def test_mean():
    assert reduce_loss(LOSS, None, "mean").item() == pytest.approx(2.5)


def test_filtered_is_not_a_reduction_the_dataset_drops_its_samples_once():
    with pytest.raises(ValueError, match="allowed: mean, weighted"):
        reduce_loss(LOSS, COHERENCE, "filtered")


def test_weighted():
    expected = (LOSS * COHERENCE / (COHERENCE.mean() + 1e-8)).mean()
    torch.testing.assert_close(reduce_loss(LOSS, COHERENCE, "weighted"), expected)
    # uniform coherence gives the plain mean
    torch.testing.assert_close(reduce_loss(LOSS, torch.full((4,), 0.3), "weighted"), LOSS.mean())


def test_bad_modes_and_missing_coherence():
    with pytest.raises(ValueError, match="mean, weighted"):
        reduce_loss(LOSS, None, "median")
    with pytest.raises(ValueError, match="coherence"):
        reduce_loss(LOSS, None, "weighted")


class FakeSelfCondModel(nn.Module):
    """eps_hat = w * x_t + mean(self_cond); latents = x_t summed per sample plus 1, so kept latents are never zero."""

    def __init__(self, uses_self_conditioning: bool):
        super().__init__()
        self.uses_self_conditioning = uses_self_conditioning
        self.w = nn.Parameter(torch.tensor(2.0))
        self.calls = []

    def forward(self, x_t, gamma, cond, self_cond=None):
        self.calls.append((self_cond, torch.is_grad_enabled()))
        latents = x_t.flatten(1).abs().sum(1, keepdim=True) + 1
        shift = 0 if self_cond is None else self_cond.reshape(-1, 1, 1)
        return self.w * x_t + shift, latents


def test_self_conditioning_two_forwards_first_without_grad_and_per_sample_mask():
    model = FakeSelfCondModel(True)
    x_t = torch.randn(64, 2, 3)
    eps_hat = self_conditioned_forward(model, x_t, torch.rand(64), Condition(), keep_prob=0.5,
                                       generator=torch.Generator().manual_seed(0))
    (first, grad_first), (second, grad_second) = model.calls
    assert first is None and not grad_first and grad_second
    kept = second[:, 0] != 0
    assert 0 < kept.sum() < 64  # decided per sample, not per batch
    torch.testing.assert_close(second[kept], x_t.flatten(1).abs().sum(1, keepdim=True)[kept] + 1)
    eps_hat.sum().backward()
    assert model.w.grad is not None


def test_self_conditioning_keep_prob_extremes_and_plain_models():
    x_t = torch.randn(8, 2, 3)
    model = FakeSelfCondModel(True)
    self_conditioned_forward(model, x_t, torch.rand(8), Condition(), keep_prob=0.0)
    assert (model.calls[1][0] == 0).all()
    plain = FakeSelfCondModel(False)
    torch.testing.assert_close(self_conditioned_forward(plain, x_t, torch.rand(8), Condition()), 2 * x_t)
    assert len(plain.calls) == 1
