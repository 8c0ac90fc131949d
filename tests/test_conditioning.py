"""The condition embedders: sinusoid, explicit null label, masked token mean, condition maps, missing-field errors."""
from __future__ import annotations

import pytest
import torch

from cad.conditioning import Condition
from cad.conditioning.embedders import (
    ConditionEmbedder,
    ConditioningSpec,
    LabelEmbedder,
    ScalarEmbedder,
    append_condition_maps,
    masked_mean,
    sinusoidal_embedding,
)


def test_sinusoid_shape_and_range():
    emb = sinusoidal_embedding(torch.tensor([0.0, 500.0, 1000.0]), 16)
    assert emb.shape == (3, 16)
    assert emb.abs().max() <= 1.0
    assert torch.equal(emb[0], torch.cat([torch.ones(8), torch.zeros(8)]))


def test_sinusoid_rejects_odd_dim():
    with pytest.raises(ValueError, match="even"):
        sinusoidal_embedding(torch.zeros(2), 7)


def test_scalar_embedder_separates_coherence_bins():
    """8 equally spaced coherence bins (paper sec. 4.1) map to 8 distinct embeddings."""
    torch.manual_seed(0)
    embedder = ScalarEmbedder(dim=32, sinusoid_dim=16, scale=1000.0)
    emb = embedder(torch.linspace(0, 1, 8))
    assert emb.shape == (8, 32)
    assert torch.cdist(emb, emb).add(torch.eye(8)).min() > 1e-3


def test_label_null_is_an_explicit_parameter():
    torch.manual_seed(0)
    embedder = LabelEmbedder(num_classes=5, dim=8)
    assert any(p is embedder.null for p in embedder.parameters())
    assert embedder.null.abs().sum() > 0  # not a zero vector
    label = torch.tensor([1, 1, -1])  # a nulled sample's label is ignored, even if out of range
    out = embedder(label, torch.tensor([False, True, True]))
    assert torch.equal(out[0], embedder.table.weight[1])
    assert torch.equal(out[1], embedder.null) and torch.equal(out[2], embedder.null)


def test_masked_mean_ignores_masked_tokens():
    tokens = torch.randn(2, 4, 3)
    mask = torch.tensor([[True, True, False, False], [True, False, False, False]])
    changed = tokens.clone()
    changed[0, 3] = 1e6
    changed[1, 1:] = float("nan")
    torch.testing.assert_close(masked_mean(tokens, mask), masked_mean(changed, mask))
    torch.testing.assert_close(masked_mean(tokens, mask)[1], tokens[1, 0])


def test_condition_embedder_outputs():
    spec = ConditioningSpec(num_classes=3, use_coherence=True, token_dim=5)
    embedder = ConditionEmbedder(spec, dim=8, sinusoid_dim=4)
    cond = Condition(
        label=torch.tensor([0, 2]), coherence=torch.tensor([0.0, 1.0]),
        tokens=torch.randn(2, 6, 5), token_mask=torch.ones(2, 6, dtype=torch.bool),
    )
    out = embedder(torch.tensor([0.1, 0.9]), cond)
    assert out.vectors.shape == (2, 3, 8) and spec.num_vectors == 3
    assert out.tokens.shape == (2, 6, 8) and out.token_mask.shape == (2, 6)


def test_coherence_map_replaces_scalar_token_when_maps_are_used():
    spec = ConditioningSpec(num_classes=None, use_coherence=True, map_channels=4)
    assert spec.coherence_map and not spec.coherence_token and spec.extra_channels == 5
    x = torch.randn(2, 3, 8, 8)
    cond = Condition(spatial_map=torch.randn(2, 4, 8, 8), coherence_map=torch.rand(2, 1, 8, 8))
    out = append_condition_maps(x, cond, spec)
    assert out.shape == (2, 8, 8, 8)
    assert torch.equal(out[:, 3:7], cond.spatial_map) and torch.equal(out[:, 7:], cond.coherence_map)


@pytest.mark.parametrize(
    "spec, cond, field",
    [
        (ConditioningSpec(3, False), Condition(coherence=torch.zeros(2)), "label"),
        (ConditioningSpec(3, True), Condition(label=torch.zeros(2, dtype=torch.long)), "coherence"),
        (ConditioningSpec(None, False, token_dim=4), Condition(label=torch.zeros(2)), "tokens"),
        (ConditioningSpec(None, False, map_channels=2), Condition(label=torch.zeros(2)), "spatial_map"),
        (ConditioningSpec(None, True, map_channels=2), Condition(spatial_map=torch.zeros(2, 2, 4, 4)), "coherence_map"),
    ],
)
def test_missing_field_names_it(spec, cond, field):
    with pytest.raises(ValueError, match=f"Condition.{field} is None"):
        spec.check(cond, batch_size=2)


def test_wrong_token_width_is_reported():
    spec = ConditioningSpec(None, False, token_dim=4)
    with pytest.raises(ValueError, match="token_dim=4"):
        spec.check(Condition(tokens=torch.zeros(2, 3, 5)), batch_size=2)
