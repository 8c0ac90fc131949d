"""Samplers on fake denoisers (STYLE habits 4 and 9): exact reconstruction, determinism, per-sample seeds, state."""
import pytest
import torch

from cad.diffusion import get_schedule
from cad.sampling import SeededGenerator, available_samplers, get_sampler

COSINE = get_schedule("cosine")
SHAPE = (3, 4, 4)


def true_noise_denoiser(x0):
    """Returns the exact noise that would take the known x0 to x_t."""

    def denoise(x_t, gamma, state):
        g = gamma.reshape(-1, 1, 1, 1)
        return (x_t - g.sqrt() * x0) / (1 - g).sqrt(), state

    return denoise


def elementwise_denoiser(x_t, gamma, state):
    """Batch-independent: each sample's output depends only on that sample."""
    g = gamma.reshape(-1, *([1] * (x_t.ndim - 1)))
    return torch.tanh(x_t) * (1 - g).sqrt() + 0.1 * g, state


@pytest.mark.parametrize("steps", [1, 2, 7, 50])
@pytest.mark.parametrize("schedule", ["cosine", "linear", "sigmoid"])
def test_ddim_eta0_with_true_noise_recovers_x0(steps, schedule):
    gen = SeededGenerator(range(4))
    x0 = gen.randn(*SHAPE, dtype=torch.float64).clamp(-1, 1)
    x_T = gen.randn(*SHAPE, dtype=torch.float64)
    out = get_sampler("ddim")(true_noise_denoiser(x0), x_T, steps, schedule=get_schedule(schedule), generator=gen,
                              eta=0.0)
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-6)


def test_ddim_eta0_is_deterministic_and_draws_no_noise():
    x_T = SeededGenerator(range(3)).randn(*SHAPE)
    a = get_sampler("ddim")(elementwise_denoiser, x_T, 10, schedule=COSINE, generator=SeededGenerator([7, 8, 9]))
    b = get_sampler("ddim")(elementwise_denoiser, x_T, 10, schedule=COSINE, generator=SeededGenerator([1, 2, 3]))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_ddim_eta1_equals_ddpm_draw_for_draw():
    x_T = SeededGenerator(range(3)).randn(*SHAPE, dtype=torch.float64)
    ddim = get_sampler("ddim")(elementwise_denoiser, x_T, 12, schedule=COSINE, generator=SeededGenerator([5, 6, 7]),
                               eta=1.0)
    ddpm = get_sampler("ddpm")(elementwise_denoiser, x_T, 12, schedule=COSINE, generator=SeededGenerator([5, 6, 7]))
    torch.testing.assert_close(ddim, ddpm, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name,options", [("ddim", {"eta": 0.0}), ("ddim", {"eta": 0.7}), ("ddpm", {})])
def test_a_sample_depends_only_on_its_seed(name, options):
    seeds = [11, 12, 13, 14]
    gen = SeededGenerator(seeds)
    batch = get_sampler(name)(elementwise_denoiser, gen.randn(*SHAPE), 8, schedule=COSINE, generator=gen, **options)
    for i, seed in enumerate(seeds):
        one = SeededGenerator([seed])
        alone = get_sampler(name)(elementwise_denoiser, one.randn(*SHAPE), 8, schedule=COSINE, generator=one, **options)
        torch.testing.assert_close(alone[0], batch[i], rtol=0, atol=1e-6)


def test_seeded_generator_views_and_chunks():
    gen = SeededGenerator([3, 4, 5])
    full = SeededGenerator([3, 4, 5]).randn(2)
    chunks = torch.cat([c.randn(2) for c in gen.split(2)])
    torch.testing.assert_close(chunks, full, rtol=0, atol=0)
    assert len(gen[1]) == 1 and gen[1:].seeds == [4, 5]


@pytest.mark.parametrize("name", ["ddim", "ddpm"])
def test_state_is_threaded_between_steps(name):
    seen = []

    def counting(x_t, gamma, state):
        seen.append(state)
        return torch.zeros_like(x_t), (0 if state is None else state) + 1

    gen = SeededGenerator([0, 1])
    get_sampler(name)(counting, gen.randn(*SHAPE), 5, schedule=COSINE, generator=gen, progress=True)
    assert seen == [None, 1, 2, 3, 4]


def test_denoiser_sees_decreasing_noise_and_no_t0_call():
    gammas = []

    def record(x_t, gamma, state):
        gammas.append(gamma)
        return torch.zeros_like(x_t), state

    gen = SeededGenerator([0, 1])
    get_sampler("ddim")(record, gen.randn(*SHAPE), 4, schedule=get_schedule("linear"), generator=gen, clip_x0=False)
    assert [g.shape for g in gammas] == [(2,)] * 4
    torch.testing.assert_close(torch.stack(gammas)[:, 0], torch.tensor([1e-9, 0.25, 0.5, 0.75]))


def test_ddpm_on_gaussian_data_matches_its_moments():
    """Data x0 ~ N(mu, s^2): the optimal eps predictor is known in closed form; samples should have mean mu, std s.

    Coarse grids shrink the spread (0.17 at 50 steps, 0.19 at 100, 0.197 at 1000), hence 100 steps and a loose bound."""
    mu, s = 0.3, 0.2

    def optimal(x_t, gamma, state):
        g = gamma.reshape(-1, 1)
        var_t = g * s**2 + (1 - g)
        x0_mean = mu + g.sqrt() * s**2 / var_t * (x_t - g.sqrt() * mu)
        return (x_t - g.sqrt() * x0_mean) / (1 - g).sqrt(), state

    gen = SeededGenerator(range(2000))
    out = get_sampler("ddpm")(optimal, gen.randn(1, dtype=torch.float64), 100, schedule=COSINE, generator=gen)
    assert out.mean().item() == pytest.approx(mu, abs=0.02)
    assert out.std().item() == pytest.approx(s, abs=0.02)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="ddim, ddpm"):
        get_sampler("euler")
    assert available_samplers() == ["ddim", "ddpm"]
    gen = SeededGenerator([0])
    with pytest.raises(ValueError, match="one per sample"):
        get_sampler("ddim")(elementwise_denoiser, torch.zeros(2, 1), 3, schedule=COSINE, generator=gen)
    with pytest.raises(ValueError, match="steps"):
        get_sampler("ddpm")(elementwise_denoiser, torch.zeros(1, 1), 0, schedule=COSINE, generator=gen)
