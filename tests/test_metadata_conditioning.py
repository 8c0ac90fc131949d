"""Control metadata on the time path (issue 14, the multi-level conditioning paper's second level): gated in by the
signal level, a learned null, and the coherence as metadata instead of its own token."""
import pytest
import torch

from cad.backbones import build_backbone
from cad.conditioning import Condition
from cad.conditioning.embedders import ConditioningSpec


def _cond(b: int, metadata: torch.Tensor | None = None, coherence: float = 1.0) -> Condition:
    return Condition(label=torch.arange(b) % 10, label_null=torch.zeros(b, dtype=torch.bool),
                     coherence=torch.full((b,), coherence),
                     metadata=torch.zeros(b, 5) if metadata is None else metadata,
                     metadata_null=torch.zeros(b, dtype=torch.bool))


@pytest.mark.parametrize("preset", ["unet_smoke", "rin_smoke"])
@torch.no_grad()
def test_metadata_is_gated_in_by_the_signal_level(preset):
    torch.manual_seed(0)
    model = build_backbone(preset, metadata_dim=5).eval()
    x = torch.randn(2, 1, 28, 28)
    flipped = _cond(2, torch.tensor([[1.0, 0, 0, 1, 1]] * 2))
    for gamma, differs in ((0.0, False), (0.7, True)):
        g = torch.full((2,), gamma)
        change = (model(x, g, _cond(2))[0] - model(x, g, flipped)[0]).abs().max()
        assert (change > 1e-6) == differs, (gamma, change)


@torch.no_grad()
def test_null_metadata_is_its_own_learned_vector():
    torch.manual_seed(0)
    model = build_backbone("unet_smoke", metadata_dim=5).eval()
    x, g = torch.randn(2, 1, 28, 28), torch.full((2,), 0.7)
    a, b = _cond(2, torch.zeros(2, 5)), _cond(2, torch.ones(2, 5))
    null = torch.ones(2, dtype=torch.bool)
    torch.testing.assert_close(model(x, g, a.replace(metadata_null=null))[0],
                               model(x, g, b.replace(metadata_null=null))[0])
    assert (model(x, g, a)[0] - model(x, g, a.replace(metadata_null=null))[0]).abs().max() > 1e-6


@torch.no_grad()
def test_the_coherence_as_metadata_has_no_token_and_is_gated():
    torch.manual_seed(0)
    token, meta = build_backbone("rin_smoke"), build_backbone("rin_smoke", coherence_as_metadata=True).eval()
    assert meta.latents.shape[0] == token.latents.shape[0] + 1  # its token became a learned latent
    x = torch.randn(2, 1, 28, 28)
    cond = Condition(label=torch.tensor([1, 2]), label_null=torch.zeros(2, dtype=torch.bool), coherence=torch.ones(2))
    for gamma, differs in ((0.0, False), (0.7, True)):
        g = torch.full((2,), gamma)
        change = (meta(x, g, cond)[0] - meta(x, g, cond.with_coherence(0.0))[0]).abs().max()
        assert (change > 1e-6) == differs


def test_settings_are_checked():
    with pytest.raises(ValueError, match="coherence_as_metadata needs a scalar coherence"):
        ConditioningSpec(10, False, coherence_as_metadata=True)
    with pytest.raises(ValueError, match="pick one"):
        ConditioningSpec(10, True, mix_label_coherence=True, coherence_as_metadata=True)
    model = build_backbone("unet_smoke", metadata_dim=5)
    with pytest.raises(ValueError, match="Condition.metadata is None, but the backbone was built with metadata_dim=5"):
        model(torch.randn(1, 1, 28, 28), torch.ones(1), _cond(1).replace(metadata=None))


class _Linear(torch.nn.Module):
    """eps = x * (1 + label) + metadata_sum, metadata nulled to 0: linear, so every guidance term is checkable."""

    def forward(self, x, gamma, cond, self_cond=None):
        label = torch.where(cond.label_null, torch.zeros_like(cond.label), cond.label).float()
        meta = torch.where(cond.metadata_null, torch.zeros(()), cond.metadata.sum(1))
        return x * (1 + label)[:, None, None, None] + meta[:, None, None, None], None


def test_metadata_guidance_adds_its_own_term_beside_the_labels():
    from cad.tasks.generate import make_denoiser
    from cad.guidance import cfg_pair

    x = torch.ones(2, 1, 2, 2)
    cond = Condition(label=torch.tensor([1, 2]), label_null=torch.zeros(2, dtype=torch.bool),
                     metadata=torch.tensor([[1.0, 2.0], [0.5, 0.5]]), metadata_null=torch.zeros(2, dtype=torch.bool))
    model, gamma = _Linear(), torch.full((2,), 0.5)
    full = model(x, gamma, cond)[0]
    no_label = x + cond.metadata.sum(1)[:, None, None, None]
    no_meta = x * (1 + cond.label.float())[:, None, None, None]
    eps, state = make_denoiser(model, cond, 2.0, cfg_pair, metadata_scale=3.0)(x, gamma, None)
    torch.testing.assert_close(eps, full + 2.0 * (full - no_label) + 3.0 * (full - no_meta))
    assert state is None  # no self-conditioning latents from this model
    eps, _ = make_denoiser(model, cond, 0.0, None, metadata_scale=3.0)(x, gamma, None)
    torch.testing.assert_close(eps, full + 3.0 * (full - no_meta))  # the metadata term alone


def test_metadata_dropout_trains_the_null_and_needs_metadata():
    from cad.experiment.config import ConfigError, resolve
    from cad.tasks.registry import get_task

    cfg = resolve("smoke", "fashion_mnist", "cad", ["data.augment.hflip=true", "train.metadata_dropout=0.3"],
                  accelerator="cpu")
    module = get_task("class").build_module(cfg)
    batch = {"image": torch.zeros(2000, 1, 28, 28), "label": torch.zeros(2000, dtype=torch.long),
             "coherence": torch.ones(2000), "metadata": torch.zeros(2000, 5)}
    dropped = module.condition(batch, torch.Generator().manual_seed(0)).metadata_null
    assert abs(dropped.float().mean().item() - 0.3) < 0.03
    for overrides in (["train.metadata_dropout=0.3"], ["sample.metadata_guidance_scale=2"]):
        with pytest.raises(ConfigError, match="control metadata"):
            resolve("smoke", "fashion_mnist", "cad", overrides, accelerator="cpu")


@torch.no_grad()
def test_ungated_metadata_acts_at_every_noise_level_and_equals_the_gated_one_on_clean_data():
    """backbone.metadata_gate=none (the ablation of the gate): the same weights give the gated model's output at
    gamma = 1 and, unlike it, still read the coherence at gamma = 0."""
    torch.manual_seed(0)
    gated = build_backbone("unet_smoke", coherence_as_metadata=True).eval()
    ungated = build_backbone("unet_smoke", coherence_as_metadata=True, metadata_gate="none").eval()
    ungated.load_state_dict(gated.state_dict())
    x = torch.randn(2, 1, 28, 28)
    cond = Condition(label=torch.tensor([1, 2]), label_null=torch.zeros(2, dtype=torch.bool), coherence=torch.ones(2))
    one, zero = torch.ones(2), torch.zeros(2)
    torch.testing.assert_close(ungated(x, one, cond)[0], gated(x, one, cond)[0])
    assert (ungated(x, zero, cond)[0] - ungated(x, zero, cond.with_coherence(0.0))[0]).abs().max() > 1e-6
    assert (gated(x, zero, cond)[0] - gated(x, zero, cond.with_coherence(0.0))[0]).abs().max() <= 1e-6


def test_the_gate_option_is_off_by_default_named_and_checked():
    from cad.experiment.config import ConfigError, TRAIN_KEYS, config_hash, resolve

    with pytest.raises(ValueError, match="metadata_gate='cosine' is not valid; valid: gamma, none"):
        ConditioningSpec(10, True, coherence_as_metadata=True, metadata_gate="cosine")
    gated = resolve("smoke", "mnist", "cad", ["backbone.coherence_as_metadata=true"])
    assert gated.backbone.metadata_gate == "gamma"
    ungated = resolve("smoke", "mnist", "cad", ["backbone.coherence_as_metadata=true", "backbone.metadata_gate=none"])
    assert config_hash(ungated, TRAIN_KEYS) != config_hash(gated, TRAIN_KEYS)
    with pytest.raises(ConfigError, match="backbone.metadata_gate='cosine' is not valid"):
        resolve("smoke", "mnist", "cad", ["backbone.coherence_as_metadata=true", "backbone.metadata_gate=cosine"])
    with pytest.raises(ConfigError, match="this run feeds none"):
        resolve("smoke", "mnist", "cad", ["backbone.metadata_gate=none"])
