"""Optimizer groups, the learning-rate multiplier and the EMA recursion, on tiny modules."""
import math

import pytest
import torch
from timm.optim import Lamb
from torch import nn

from cad.training import (
    build_ema,
    build_optimizer,
    build_scheduler,
    ema_decay,
    no_weight_decay_names,
    warmup_cosine,
)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.pos_emb = nn.Parameter(torch.zeros(8, 4))
        self.null_label = nn.Parameter(torch.zeros(1, 4))
        self.labels = nn.Embedding(10, 4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.frozen = nn.Parameter(torch.zeros(4, 4), requires_grad=False)

    def no_weight_decay(self):
        return {"cls_token"}


def test_optimizer_is_lamb_with_decay_on_matrices_only():
    model = Tiny()
    opt = build_optimizer(model, lr=3e-3, weight_decay=0.05)
    assert isinstance(opt, Lamb)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {g["group_name"]: ({names[id(p)] for p in g["params"]}, g["weight_decay"], g["lr"])
              for g in opt.param_groups}
    assert groups["decay"] == ({"proj.weight", "labels.weight"}, 0.05, 3e-3)
    assert groups["no_decay"] == ({"proj.bias", "norm.weight", "norm.bias", "pos_emb", "null_label", "cls_token"},
                                  0.0, 3e-3)
    assert no_weight_decay_names(model) == groups["no_decay"][0]


def test_warmup_cosine_closed_form():
    kw = dict(warmup_steps=10, total_steps=110, rate=0.8)
    assert warmup_cosine(0, **kw) == 0.0
    assert warmup_cosine(5, **kw) == pytest.approx(0.5)
    assert warmup_cosine(10, **kw) == pytest.approx(1.0)
    assert warmup_cosine(60, **kw) == pytest.approx(0.5 * (1 + math.cos(0.4 * math.pi)))
    assert warmup_cosine(110, **kw) == pytest.approx(0.5 * (1 + math.cos(0.8 * math.pi)))
    assert warmup_cosine(10_000, **kw) == warmup_cosine(110, **kw)  # clipped past total_steps
    with pytest.raises(ValueError, match="total_steps"):
        warmup_cosine(0, warmup_steps=10, total_steps=10, rate=0.8)
    with pytest.raises(ValueError, match="rate"):
        warmup_cosine(0, warmup_steps=1, total_steps=10, rate=1.5)


def test_scheduler_drives_the_optimizer():
    model = nn.Linear(2, 2)
    opt = build_optimizer(model, lr=2e-3)
    sched = build_scheduler(opt, warmup_steps=4, total_steps=20, rate=0.7)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([0.0, 5e-4, 1e-3, 1.5e-3, 2e-3])
    assert lrs[5] == pytest.approx(2e-3 * 0.5 * (1 + math.cos(0.7 * math.pi / 16)))


def test_no_weight_decay_lists_of_submodules_are_honoured():
    wrapper = nn.Module()
    wrapper.model = Tiny()
    assert "model.cls_token" in no_weight_decay_names(wrapper)


def test_ema_copy_is_frozen():
    assert not any(p.requires_grad for p in build_ema(Tiny(), decay=0.9, warmup=None).parameters())


def test_ema_shares_frozen_parameters_and_averages_the_rest():
    """A ControlNet's frozen base is referenced by the EMA, not copied; the trainable part is averaged as before."""
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    model[0].requires_grad_(False)
    ema = build_ema(model, decay=0.5, warmup=None)
    assert ema.module[0].weight is model[0].weight and ema.module[0].bias is model[0].bias
    assert ema.module[1].weight is not model[1].weight
    assert ema.module[1].weight.data_ptr() != model[1].weight.data_ptr()
    ema.update_parameters(model)
    start = model[1].weight.detach().clone()
    with torch.no_grad():
        model[1].weight.add_(1.0)
    ema.update_parameters(model)
    torch.testing.assert_close(ema.module[1].weight, start + 0.5)
    torch.testing.assert_close(ema.module[0].weight, model[0].weight)
    assert {k for k in ema.module.state_dict()} == {k for k in model.state_dict()}


def test_ema_decay_rule():
    assert ema_decay(5, decay=0.9999, warmup=None) == 0.9999
    assert ema_decay(1, decay=0.9999, warmup=10) == pytest.approx(2 / 11)
    assert ema_decay(10**6, decay=0.9999, warmup=10) == 0.9999
    with pytest.raises(ValueError, match="warmup"):
        ema_decay(1, decay=0.99, warmup=1)


@pytest.mark.parametrize("warmup", [None, 10])
def test_ema_matches_the_hand_recursion_for_params_and_buffers(warmup):
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = build_ema(model, decay=0.9, warmup=warmup)
    expected = None
    for n in range(6):
        value = float(n + 1) ** 2  # the "trained" weights at step n
        with torch.no_grad():
            for t in list(model.parameters()) + [model[1].running_mean]:
                t.fill_(value)
        model[1].num_batches_tracked.fill_(n)
        ema.update_parameters(model)
        expected = (value if n == 0
                    else (lambda d: d * expected + (1 - d) * value)(ema_decay(n, decay=0.9, warmup=warmup)))
    for t in list(ema.module.parameters()) + [ema.module[1].running_mean]:
        torch.testing.assert_close(t, torch.full_like(t, expected))
    assert ema.module[1].num_batches_tracked.item() == 5  # integer buffers are copied, not averaged
    assert ema.n_averaged.item() == 6
