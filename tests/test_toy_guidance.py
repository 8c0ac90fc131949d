"""The guidance-aligned loss on the converged toy, its direction pinned on a smaller run
(results/tables/toy_guidance.md has the full one): the aligned loss's positive branch alone is the weaker model (the
seed paper's known cost), and within its training range of w its guided samples are closer to the data than the plain
loss's at the same w, which sharpen the clusters instead."""
import pytest
import torch

from cad.experiment import toy_guidance


def test_sliced_wasserstein_is_zero_for_one_set_and_the_shift_for_a_shifted_one():
    a = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    assert toy_guidance.sliced_wasserstein(a, a) == 0.0
    shift = torch.tensor([0.3, 0.0])  # a shift by s along x moves each projection by s cos(angle): mean 2s/pi
    assert abs(toy_guidance.sliced_wasserstein(a + shift, a, directions=4096) - 0.3 * 2 / torch.pi) < 0.01


@pytest.mark.slow
def test_the_aligned_loss_trades_the_unguided_model_for_guided_samples_nearer_the_data():
    rows, _ = toy_guidance.run(n=8000, steps=1500, per_class=150, protocols=("classifier",), methods=("cfg",),
                               scales=(0.0, 1.0))
    point = {(r["loss"], r["guidance_scale"]): r for r in rows}
    assert point[("aligned", 0.0)]["accuracy"] < point[("plain", 0.0)]["accuracy"] - 0.1
    assert point[("aligned", 1.0)]["sliced_w1"] < point[("plain", 1.0)]["sliced_w1"]
    assert point[("aligned", 1.0)]["spread"] > point[("plain", 1.0)]["spread"]  # plain guidance sharpens more
