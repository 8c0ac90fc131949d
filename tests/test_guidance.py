"""Guidance wrappers on a fake model whose output depends on label, null flag and coherence (STYLE habit 5)."""
import pytest
import torch
from torch import nn

from cad.conditioning import Condition
from cad.diffusion import get_schedule
from cad.guidance import (available_guidance, cacfg_prompt_pair, classifier_free, coherence_aware, conditional,
                          get_guidance, guided)
from cad.sampling import SeededGenerator, get_sampler


class FakeModel(nn.Module):
    """eps_hat = x_t * (1 + label_used) + 3 * coherence + mean(self_cond); latents record the branch.

    latents = previous latents + 1 + 10 * coherence + 100 * null, so each branch's running state is recognisable.
    """

    uses_self_conditioning = True

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x_t, gamma, cond, self_cond=None):
        self.calls.append((x_t.shape[0], self_cond))
        b = x_t.shape[0]
        null = cond.label_null.float() if cond.label_null is not None else torch.zeros(b)
        label = cond.label.float() * (1 - null)
        c = cond.coherence if cond.coherence is not None else torch.ones(b)
        prev = torch.zeros(b, 2) if self_cond is None else self_cond
        shape = (-1,) + (1,) * (x_t.ndim - 1)
        eps = x_t * (1 + label).reshape(shape) + 3 * c.reshape(shape) + prev.mean(1).reshape(shape)
        return eps, prev + (1 + 10 * c + 100 * null)[:, None]


COND = Condition(label=torch.tensor([2, 5, 0]), coherence=torch.tensor([0.2, 0.9, 0.5]))
X = torch.randn(3, 2, 4, 4)
GAMMA = torch.full((3,), 0.5)


def eps(model, cond):
    return model(X, GAMMA, cond)[0]


def test_conditional_is_the_model_and_carries_latents():
    model = FakeModel()
    out, state = conditional(model, COND)(X, GAMMA, None)
    ref, latents = FakeModel()(X, GAMMA, COND)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(state, latents)
    with pytest.raises(ValueError, match="no scale"):
        conditional(model, COND, 2.0)


def test_cfg_is_eq3():
    model = FakeModel()
    w = 2.5
    out, _ = classifier_free(model, COND, w)(X, GAMMA, None)
    e_cond, e_null = eps(FakeModel(), COND), eps(FakeModel(), COND.as_null())
    torch.testing.assert_close(out, e_cond + w * (e_cond - e_null))
    assert [n for n, _ in model.calls] == [6]  # both branches in one batched forward


def test_cfg_scale_zero_is_conditional_and_skips_the_null_branch():
    model = FakeModel()
    out, (state_pos, state_neg) = classifier_free(model, COND, 0.0)(X, GAMMA, None)
    torch.testing.assert_close(out, eps(FakeModel(), COND))
    assert [n for n, _ in model.calls] == [3] and state_neg is None


def test_cacfg_is_eq4():
    w = 3.0
    out, _ = coherence_aware(FakeModel(), COND, w)(X, GAMMA, None)
    e1, e0 = eps(FakeModel(), COND.with_coherence(1.0)), eps(FakeModel(), COND.with_coherence(0.0))
    torch.testing.assert_close(out, e1 + w * (e1 - e0))
    assert not torch.allclose(e1, e0)  # the fake model does depend on coherence


def test_cacfg_with_equal_coherences_collapses_to_the_conditional_branch():
    out, _ = coherence_aware(FakeModel(), COND, 4.0, coherence_pos=1.0, coherence_neg=1.0)(X, GAMMA, None)
    torch.testing.assert_close(out, eps(FakeModel(), COND.with_coherence(1.0)))


@pytest.mark.parametrize("wrapper", [classifier_free, coherence_aware])
def test_each_branch_carries_its_own_latents(wrapper):
    model = FakeModel()
    denoise = wrapper(model, COND, 1.5)
    states = [None]
    for _ in range(3):
        _, state = denoise(X, GAMMA, states[-1])
        states.append(state)
    state_pos, state_neg = states[-1]
    assert not torch.allclose(state_pos, state_neg)
    # step k's batched forward is fed the concatenation of both branches' latents from step k - 1
    assert model.calls[0][1] is None
    for k in (1, 2):
        torch.testing.assert_close(model.calls[k][1], torch.cat(states[k]))
    ref_pos = ref_neg = None
    pos_model, neg_model = FakeModel(), FakeModel()
    cond_pos, cond_neg = ((COND.with_coherence(1.0), COND.with_coherence(0.0)) if wrapper is coherence_aware
                          else (COND, COND.as_null()))
    for _ in range(3):
        _, ref_pos = pos_model(X, GAMMA, cond_pos, self_cond=ref_pos)
        _, ref_neg = neg_model(X, GAMMA, cond_neg, self_cond=ref_neg)
    torch.testing.assert_close(state_pos, ref_pos)
    torch.testing.assert_close(state_neg, ref_neg)


def test_registry_and_sampling_end_to_end():
    assert available_guidance() == ["cacfg", "cfg", "none"]
    with pytest.raises(ValueError, match="cacfg, cfg, none"):
        get_guidance("autoguidance")
    gen = SeededGenerator([0, 1, 2])
    out = get_sampler("ddim")(get_guidance("cacfg")(FakeModel(), COND, 2.0), gen.randn(2, 4, 4), 4,
                              schedule=get_schedule("cosine"), generator=gen)
    assert out.shape == X.shape and torch.isfinite(out).all()


def test_text_cacfg_pairs_the_prompt_at_coherence_1_with_a_random_prompt_at_coherence_0():
    prompt = Condition(tokens=torch.ones(2, 3, 4), token_mask=torch.ones(2, 3, dtype=torch.bool),
                       coherence=torch.tensor([0.3, 0.6]))
    random_prompt = Condition(tokens=torch.full((2, 3, 4), 7.0), token_mask=torch.tensor([[1, 1, 0]] * 2).bool())
    pos, neg = cacfg_prompt_pair(prompt, random_prompt)
    assert torch.equal(pos.tokens, prompt.tokens) and torch.equal(pos.coherence, torch.ones(2))
    assert torch.equal(neg.tokens, random_prompt.tokens) and torch.equal(neg.token_mask, random_prompt.token_mask)
    assert torch.equal(neg.coherence, torch.zeros(2))

    class TokenModel(nn.Module):
        def forward(self, x_t, gamma, cond, self_cond=None):
            return x_t + cond.tokens.mean((1, 2)).view(-1, 1) + cond.coherence.view(-1, 1), None

    x, gamma, w = torch.zeros(2, 5), torch.rand(2), 2.0
    out, _ = guided(TokenModel(), pos, neg, w)(x, gamma, None)
    torch.testing.assert_close(out, torch.full((2, 5), 2.0 + w * (2.0 - 7.0)))
