"""The text RIN (issue 11): text tokens -> a tower with the coherence token and registers, cross-attended by the
latents in every block; masked tokens have no influence; only the learned latents self-condition; it overfits."""
import pytest
import torch

from cad.backbones import build_backbone
from cad.conditioning import Condition

TEXT = dict(image_size=(16, 32), num_classes=None, token_dim=24, text_layers=2, num_registers=4)


def _cond(b: int, length: int = 6, coherence: float = 1.0, seed: int = 0) -> Condition:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[:, length // 2:] = False
    return Condition(tokens=torch.randn(b, length, 24, generator=g), token_mask=mask,
                     coherence=torch.full((b,), coherence))


def test_shapes_and_where_the_coherence_and_text_go():
    torch.manual_seed(0)
    model = build_backbone("rin_smoke", **TEXT).eval()
    x = torch.randn(3, 1, 16, 32)
    eps, latents = model(x, torch.full((3,), 0.5), _cond(3))
    assert eps.shape == x.shape
    assert latents.shape == (3, model.num_learned, 64)  # only the learned latents self-condition
    assert model.num_learned == 16 - 1  # the time token is a latent; the coherence token is in the text context
    assert model.text.layers[0].scale_attn.gamma.eq(0.1).all()  # LayerScale, init 0.1
    eps2, _ = model(x, torch.full((3,), 0.5), _cond(3), self_cond=latents)
    torch.testing.assert_close(eps, eps2)  # self-conditioning is zero at init (its output LayerNorm starts at 0)


@torch.no_grad()
def test_masked_tokens_have_no_influence_and_the_text_and_coherence_do():
    torch.manual_seed(0)
    model = build_backbone("rin_smoke", **TEXT).eval()
    x, gamma = torch.randn(2, 1, 16, 32), torch.full((2,), 0.5)
    cond = _cond(2)
    base, _ = model(x, gamma, cond)
    tokens = cond.tokens.clone()
    tokens[:, 3:] = 100.0  # masked positions
    torch.testing.assert_close(model(x, gamma, cond.replace(tokens=tokens))[0], base)
    tokens[:, :3] = torch.randn(2, 3, 24)  # valid positions
    assert (model(x, gamma, cond.replace(tokens=tokens))[0] - base).abs().max() > 1e-4
    assert (model(x, gamma, cond.with_coherence(0.0))[0] - base).abs().max() > 1e-4


def test_text_mode_needs_the_token_width():
    with pytest.raises(ValueError, match="text_layers > 0 needs token_dim"):
        build_backbone("rin_smoke", image_size=(16, 32), num_classes=None, text_layers=2)


def test_a_tiny_text_rin_overfits_four_captioned_images():
    """Four images, each with its own caption: the eps loss at noise levels gamma ~ U(0.25, 0.75) falls below half its
    start."""
    torch.manual_seed(0)
    model = build_backbone("rin_smoke", **TEXT)
    x0 = torch.rand(4, 1, 16, 32) * 2 - 1
    cond = _cond(4, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for step in range(150):
        gamma = torch.rand(4, generator=g) * 0.5 + 0.25
        eps = torch.randn(x0.shape, generator=g)
        x_t = gamma.sqrt()[:, None, None, None] * x0 + (1 - gamma).sqrt()[:, None, None, None] * eps
        loss = (model(x_t, gamma, cond)[0] - eps).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
