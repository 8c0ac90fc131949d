"""ControlNet over the suite's U-Net (issue 12): the zero convolutions give the base's output at initialisation, move
under AdamW, and the frozen base never changes."""
import pytest
import torch

from cad.backbones import build_backbone
from cad.backbones.controlnet import ControlledUNet
from cad.conditioning import Condition


def _setup(use_coherence: bool = True):
    torch.manual_seed(0)
    base = build_backbone("unet_smoke", num_classes=None, use_coherence=False)
    model = ControlledUNet(base, map_channels=4, use_coherence=use_coherence)
    x = torch.randn(4, 1, 28, 28)
    classes = torch.randint(0, 4, (4, 28, 28))
    cond = Condition(spatial_map=torch.nn.functional.one_hot(classes, 4).permute(0, 3, 1, 2).float(),
                     coherence_map=torch.rand(4, 1, 28, 28))
    return base, model, x, torch.full((4,), 0.5), cond


@torch.no_grad()
def test_at_initialisation_the_output_is_the_base_models():
    base, model, x, gamma, cond = _setup()
    torch.testing.assert_close(model(x, gamma, cond)[0], base(x, gamma, Condition())[0], rtol=0, atol=0)


def test_the_zero_convolutions_move_under_adamw_and_the_base_stays_frozen():
    base, model, x, gamma, cond = _setup()
    frozen = {k: v.clone() for k, v in base.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and not any(p.requires_grad for p in model.base.parameters())
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    target = torch.randn_like(x)
    model.train()
    for _ in range(5):
        loss = (model(x, gamma, cond)[0] - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(z.weight.abs().sum() > 0 for z in model.zero_skips) and model.zero_mid.weight.abs().sum() > 0
    assert all(torch.equal(v, frozen[k]) for k, v in base.state_dict().items())
    model.eval()
    with torch.no_grad():
        assert (model(x, gamma, cond)[0] - base(x, gamma, Condition())[0]).abs().max() > 1e-5
        changed = cond.replace(coherence_map=torch.zeros_like(cond.coherence_map))
        assert (model(x, gamma, changed)[0] - model(x, gamma, cond)[0]).abs().max() > 1e-6  # the coherence is read


def test_the_baseline_controlnet_takes_the_map_alone_and_bad_maps_are_named():
    _, model, x, gamma, cond = _setup(use_coherence=False)
    assert model.hint[0].in_channels == 4
    model(x, gamma, cond.replace(coherence_map=None))
    with pytest.raises(ValueError, match="spatial_map must have 4 channels, got 3"):
        model(x, gamma, cond.replace(spatial_map=cond.spatial_map[:, :3]))
    _, with_coherence, *_ = _setup()
    with pytest.raises(ValueError, match="coherence_map is None"):
        with_coherence(x, gamma, cond.replace(coherence_map=None))
