"""Backbones: preset sizes, the shared interface, and that every condition really reaches (or not) the output."""
from __future__ import annotations

import pytest
import torch

from cad.backbones import PRESETS, build_backbone, count_parameters
from cad.conditioning import Condition

SMALL = ["rin_smoke", "unet_smoke"]
B, C, S = 3, 1, 28


@pytest.fixture(autouse=True)
def no_onednn():
    """oneDNN compiles kernels for every new convolution shape (~1 s each on 2 cores); the tests' tiny convolutions
    run faster on the native path."""
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = enabled


def make(preset: str, perturb: bool = True, **overrides) -> torch.nn.Module:
    """A small backbone in eval mode; ``perturb`` moves every weight off its (partly zero) initialisation so that
    a condition's effect is tested, not hidden by a zero-initialised layer."""
    torch.manual_seed(0)
    model = build_backbone(preset, **overrides).eval()
    if perturb:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return model


def inputs(batch: int = B, **fields) -> tuple[torch.Tensor, torch.Tensor, Condition]:
    g = torch.Generator().manual_seed(1)
    x_t = torch.randn(batch, C, S, S, generator=g)
    gamma = torch.rand(batch, generator=g)
    cond = dict(label=torch.arange(batch) % 10, coherence=torch.rand(batch, generator=g))
    cond.update(fields)
    return x_t, gamma, Condition(**cond)


def changed(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a - b).abs().max().item() > 1e-5


# --- presets -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset, expected", [("rin_cifar10", 31.3e6), ("rin_imagenet64", 158.5e6)])
def test_paper_preset_parameter_counts(preset, expected):
    """The authors' CIFAR-10 / ImageNet-64 RIN with the CAD coherence token."""
    with torch.device("meta"):
        model = build_backbone(preset)
    assert abs(count_parameters(model) / expected - 1) < 0.02


@pytest.mark.parametrize("preset, low, high", [
    ("rin_cpu", 1.5e6, 2.5e6), ("rin_smoke", 0, 200e3), ("unet_cpu", 0.8e6, 1.2e6), ("unet_smoke", 0, 100e3),
])
def test_small_preset_sizes(preset, low, high):
    with torch.device("meta"):
        assert low <= count_parameters(build_backbone(preset)) <= high


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ValueError) as err:
        build_backbone("rin_cifar100")
    assert all(name in str(err.value) for name in PRESETS)


def test_unknown_override_is_named():
    with pytest.raises(ValueError, match="latent_width"):
        build_backbone("rin_smoke", latent_width=3)


# --- interface -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", SMALL)
def test_output_shapes(preset):
    model = make(preset, perturb=False)
    eps_hat, latents = model(*inputs())
    assert eps_hat.shape == (B, C, S, S)
    if model.uses_self_conditioning:
        assert latents.shape == (B, model.num_latents, model.latent_dim)
    else:
        assert latents is None


def test_rin_cifar10_shapes():
    model = build_backbone("rin_cifar10", num_blocks=1).eval()  # one block keeps the test fast
    x_t = torch.randn(2, 3, 32, 32)
    cond = Condition(label=torch.tensor([0, 9]), coherence=torch.tensor([0.0, 1.0]))
    eps_hat, latents = model(x_t, torch.rand(2), cond)
    assert eps_hat.shape == x_t.shape and latents.shape == (2, 128, 512)


@pytest.mark.parametrize("preset", SMALL)
def test_each_sample_is_independent_of_the_batch(preset):
    model = make(preset)
    x_t, gamma, cond = inputs()
    full, _ = model(x_t, gamma, cond)
    single, _ = model(x_t[1:2], gamma[1:2], cond[1])
    torch.testing.assert_close(full[1:2], single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("preset", SMALL)
def test_missing_condition_names_the_field(preset):
    model = make(preset, perturb=False)
    x_t, gamma, cond = inputs()
    with pytest.raises(ValueError, match="coherence"):
        model(x_t, gamma, cond.replace(coherence=None))
    with pytest.raises(ValueError, match="label"):
        model(x_t, gamma, cond.replace(label=None))


@pytest.mark.parametrize("preset", ["rin_smoke", "unet_smoke"])
def test_eval_is_deterministic_and_train_is_not(preset):
    overrides = dict(dropout=0.5, drop_path=0.5) if preset.startswith("rin") else dict(dropout=0.5)
    model = make(preset, **overrides)
    args = inputs()
    torch.testing.assert_close(model(*args)[0], model(*args)[0], atol=0, rtol=0)
    model.train()
    assert changed(model(*args)[0], model(*args)[0])


# --- conditions ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", SMALL)
def test_coherence_changes_the_output(preset):
    model = make(preset)
    x_t, gamma, cond = inputs()
    assert changed(model(x_t, gamma, cond.with_coherence(0.0))[0], model(x_t, gamma, cond.with_coherence(1.0))[0])


@pytest.mark.parametrize("preset", SMALL)
def test_label_and_null_label_change_the_output(preset):
    model = make(preset)
    x_t, gamma, cond = inputs()
    base = model(x_t, gamma, cond)[0]
    assert changed(base, model(x_t, gamma, cond.replace(label=(cond.label + 1) % 10))[0])
    nulled = model(x_t, gamma, cond.as_null())[0]
    assert changed(base, nulled)
    # Under the null embedding the label itself is ignored.
    torch.testing.assert_close(nulled, model(x_t, gamma, cond.replace(label=(cond.label + 3) % 10).as_null())[0])
    null = model.condition.label.null
    assert isinstance(null, torch.nn.Parameter) and null.requires_grad


@pytest.mark.parametrize("preset", SMALL)
def test_masked_text_tokens_have_no_influence(preset):
    model = make(preset, token_dim=6)
    g = torch.Generator().manual_seed(2)
    tokens = torch.randn(B, 5, 6, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    x_t, gamma, cond = inputs(tokens=tokens, token_mask=mask)
    base, latents = model(x_t, gamma, cond)
    if model.uses_self_conditioning:
        assert latents.shape == (B, model.num_latents + 5, model.latent_dim)
    masked_changed = tokens.clone()
    masked_changed[0, 3:] = torch.randn(2, 6, generator=g) * 10
    masked_changed[1, 1:] = torch.randn(4, 6, generator=g) * 10
    out, _ = model(x_t, gamma, cond.replace(tokens=masked_changed))
    torch.testing.assert_close(out, base, atol=1e-5, rtol=1e-5)
    valid_changed = tokens.clone()
    valid_changed[:, 0] += 1.0
    assert changed(base, model(x_t, gamma, cond.replace(tokens=valid_changed))[0])


@pytest.mark.parametrize("preset", SMALL)
def test_spatial_and_coherence_maps_change_the_output(preset):
    model = make(preset, map_channels=4, num_classes=None)
    g = torch.Generator().manual_seed(3)
    spatial = torch.randn(B, 4, S, S, generator=g)
    coherence_map = torch.rand(B, 1, S, S, generator=g)
    x_t, gamma, _ = inputs()
    cond = Condition(spatial_map=spatial, coherence_map=coherence_map)
    base = model(x_t, gamma, cond)[0]
    assert changed(base, model(x_t, gamma, cond.replace(spatial_map=spatial.flip(0)))[0])
    assert changed(base, model(x_t, gamma, cond.with_coherence(0.0))[0])
    with pytest.raises(ValueError, match="coherence_map"):
        model(x_t, gamma, cond.replace(coherence_map=None))


# --- self-conditioning ---------------------------------------------------------------------------------------


def test_self_conditioning_has_no_effect_at_init():
    model = make("rin_smoke", perturb=False)
    assert model.uses_self_conditioning
    x_t, gamma, cond = inputs()
    eps_hat, latents = model(x_t, gamma, cond)
    again, _ = model(x_t, gamma, cond, self_cond=torch.randn_like(latents))
    torch.testing.assert_close(eps_hat, again, atol=0, rtol=0)


def test_self_conditioning_feeds_latents_back_after_training():
    model = make("rin_smoke")
    x_t, gamma, cond = inputs()
    eps_hat, latents = model(x_t, gamma, cond)
    fed, next_latents = model(x_t, gamma, cond, self_cond=latents)
    assert changed(eps_hat, fed)
    assert next_latents.shape == latents.shape == (B, model.num_latents, model.latent_dim)
    with pytest.raises(ValueError, match="self_cond"):
        model(x_t, gamma, cond, self_cond=latents[:, :-1])


def test_unet_ignores_self_conditioning():
    model = make("unet_smoke")
    x_t, gamma, cond = inputs()
    assert not model.uses_self_conditioning
    torch.testing.assert_close(model(x_t, gamma, cond)[0], model(x_t, gamma, cond, self_cond=torch.randn(B, 4))[0])


@pytest.mark.parametrize("preset", SMALL)
def test_gradients_reach_every_parameter(preset):
    model = make(preset).train()
    x_t, gamma, cond = inputs(label_null=torch.tensor([False, True, False]))
    eps_hat, latents = model(x_t, gamma, cond)
    if model.uses_self_conditioning:
        eps_hat, _ = model(x_t, gamma, cond, self_cond=latents.detach())
    eps_hat.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []
