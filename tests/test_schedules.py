"""Schedules against their closed forms (STYLE habit 4), and the forward process round trips."""
import math

import pytest
import torch

from cad.diffusion import CLIP_MIN, add_noise, available_schedules, eps_from_x0, get_schedule, x0_from_eps
from cad.diffusion.schedules import register_schedule

T = torch.linspace(0, 1, 101, dtype=torch.float64)


def _logistic(v):
    return 1 / (1 + math.exp(-v))


CLOSED_FORMS = {
    "linear": lambda t: 1 - t,
    "cosine": lambda t: math.cos(((t + 2e-4) / (1 + 2.5e-4)) * math.pi / 2) ** 2,
    "sigmoid": lambda t: ((_logistic(3 / 0.9) - _logistic((t * 6 - 3) / 0.9))
                          / (_logistic(3 / 0.9) - _logistic(-3 / 0.9))),
}


def test_registry_holds_the_paper_schedules():
    assert set(CLOSED_FORMS) <= set(available_schedules())


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
def test_endpoints_monotone_and_closed_form(name):
    gamma = get_schedule(name)(T)
    assert gamma.dtype == torch.float64 and gamma.shape == T.shape
    assert gamma[0] == pytest.approx(1.0, abs=1e-6) and gamma[0] <= 1 - CLIP_MIN
    assert gamma[-1] == pytest.approx(0.0, abs=1e-6) and gamma[-1] >= CLIP_MIN
    assert (gamma[1:] <= gamma[:-1]).all()
    expected = torch.tensor([min(max(CLOSED_FORMS[name](t), CLIP_MIN), 1 - CLIP_MIN) for t in T.tolist()],
                            dtype=torch.float64)
    torch.testing.assert_close(gamma, expected, rtol=0, atol=1e-12)


def test_clip_keeps_gamma_inside_the_open_interval():
    gamma = get_schedule("linear")(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert gamma.tolist() == [1 - CLIP_MIN, CLIP_MIN]
    assert torch.isfinite(1 / gamma.sqrt()).all() and torch.isfinite(1 / (1 - gamma).sqrt()).all()


def test_sigmoid_parameters_override():
    t = torch.tensor([0.25, 0.5], dtype=torch.float64)
    gamma = get_schedule("sigmoid", start=0.0, end=3.0, tau=1.0)(t)
    s = _logistic
    expected = [(s(3) - s(t_ * 3)) / (s(3) - s(0)) for t_ in t.tolist()]
    torch.testing.assert_close(gamma, torch.tensor(expected, dtype=torch.float64))


def test_unknown_names_and_parameters_are_refused():
    with pytest.raises(ValueError, match="cosine.*linear.*sigmoid"):
        get_schedule("laplace")
    with pytest.raises(ValueError, match="allowed"):
        get_schedule("linear", tau=1.0)
    with pytest.raises(ValueError, match="never changes"):
        register_schedule("cosine")(lambda t: t)


def test_noising_round_trip():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, 2, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 3, 2, 2, generator=g, dtype=torch.float64)
    gamma = torch.tensor([0.9, 0.5, 0.1, 1e-3], dtype=torch.float64)
    x_t = add_noise(x0, gamma, eps)
    torch.testing.assert_close(x_t[1], 0.5**0.5 * (x0[1] + eps[1]))
    torch.testing.assert_close(x0_from_eps(x_t, gamma, eps), x0)
    torch.testing.assert_close(eps_from_x0(x_t, gamma, x0), eps)
