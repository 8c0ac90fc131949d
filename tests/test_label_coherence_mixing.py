"""The ``mix_labels_and_confidence`` option (issue 13, part 3): label and coherence merged into one vector by an MLP,
so the coherence can change what the label does, which a sum of the two embeddings cannot."""
from __future__ import annotations

import pytest
import torch

from cad.backbones import build_backbone
from cad.conditioning import Condition
from cad.conditioning.embedders import ConditionEmbedder, ConditioningSpec
from cad.experiment.config import TRAIN_KEYS, ConfigError, config_hash, load_experiment, resolve
from cad.experiment.report import RunResult, output_name


def _label_effect(embedder: ConditionEmbedder, coherence: float) -> torch.Tensor:
    """The change of the summed condition vector when the label goes from 0 to 1, at ``coherence``."""
    gamma = torch.zeros(2)
    cond = Condition(label=torch.tensor([0, 1]), label_null=torch.zeros(2, dtype=torch.bool),
                     coherence=torch.full((2,), coherence))
    total = embedder(gamma, cond).vectors.sum(dim=1)  # what the U-Net feeds its blocks
    return total[1] - total[0]


@torch.no_grad()
def test_a_sum_cannot_let_coherence_change_the_label_but_the_mix_can():
    torch.manual_seed(0)
    summed = ConditionEmbedder(ConditioningSpec(10, True), dim=16, sinusoid_dim=8)
    mixed = ConditionEmbedder(ConditioningSpec(10, True, mix_label_coherence=True), dim=16, sinusoid_dim=8)
    torch.testing.assert_close(_label_effect(summed, 0.0), _label_effect(summed, 1.0))
    at_0, at_1 = _label_effect(mixed, 0.0), _label_effect(mixed, 1.0)
    assert (at_0 - at_1).norm() > 0.05 * at_1.norm() > 0  # the label's effect depends on the coherence


def test_mixing_makes_one_vector_of_two():
    spec = ConditioningSpec(10, True, mix_label_coherence=True)
    assert spec.num_vectors == ConditioningSpec(10, True).num_vectors - 1 == 2
    out = ConditionEmbedder(spec, dim=16, sinusoid_dim=8)(
        torch.zeros(3), Condition(label=torch.zeros(3, dtype=torch.long), coherence=torch.ones(3)))
    assert out.vectors.shape == (3, 2, 16)


@pytest.mark.parametrize("kwargs", [dict(num_classes=None, use_coherence=True),
                                    dict(num_classes=10, use_coherence=False),
                                    dict(num_classes=10, use_coherence=True, map_channels=3)])
def test_mixing_needs_a_label_and_a_scalar_coherence(kwargs):
    with pytest.raises(ValueError, match="mix_label_coherence"):
        ConditioningSpec(**kwargs, mix_label_coherence=True)


@pytest.mark.parametrize("preset", ["unet_smoke", "rin_smoke"])
def test_backbones_take_the_option_and_rin_gains_a_latent(preset):
    torch.manual_seed(0)
    plain, mixed = build_backbone(preset), build_backbone(preset, mix_labels_and_confidence=True)
    if preset.startswith("rin"):
        assert mixed.latents.shape[0] == plain.latents.shape[0] + 1
    x = torch.randn(2, 1, 28, 28)
    cond = Condition(label=torch.tensor([1, 2]), label_null=torch.zeros(2, dtype=torch.bool),
                     coherence=torch.tensor([0.0, 1.0]))
    eps, _ = mixed(x, torch.full((2,), 0.5), cond)
    assert eps.shape == x.shape and torch.isfinite(eps).all()
    eps.square().mean().backward()
    assert mixed.condition.mixer.mlp[0].weight.grad.abs().sum() > 0


def test_config_option_is_named_off_by_default_and_checked():
    plain = resolve("smoke", "mnist", "cad")
    assert plain.backbone.mix_labels_and_confidence is False
    mixed = resolve("smoke", "mnist", "cad", ["backbone.mix_labels_and_confidence=true"])
    assert config_hash(mixed, TRAIN_KEYS) != config_hash(plain, TRAIN_KEYS)
    with pytest.raises(ConfigError, match="method 'baseline' has none"):
        resolve("smoke", "mnist", "baseline", ["backbone.mix_labels_and_confidence=true"])
    table5d = load_experiment("table5d")
    as_result = lambda cfg: RunResult("mnist", "cad", None, cfg, None, {})  # noqa: E731
    assert output_name(table5d, [as_result(plain)]) == "table5d"
    assert output_name(table5d, [as_result(mixed)]) == "table5d-mix"
    rin = resolve("smoke", "mnist", "cad", ["backbone.preset=rin_smoke"])
    assert output_name(table5d, [as_result(rin)]) == "table5d-rin_smoke"


def test_the_table_of_a_mixed_run_leaves_out_the_methods_without_coherence():
    from cad.experiment import cli

    args = cli.parse_args(["table5d", "--scale", "smoke", "backbone.mix_labels_and_confidence=true"])
    table5d = load_experiment("table5d")
    assert {c.method for c in cli.shown_configs(table5d, args, ["mnist"])} == {"cad"}
