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
