"""The authors' noise protocol (authors_entropy) against its closed form and its inverse table."""
import math

import pytest
import torch

from cad.data.entropy_noise import (authors_entropy_labels, flip_probability, flip_table,
                                    normalised_flip_entropy)


def test_entropy_closed_form_at_the_ends_and_a_hand_value():
    k = 10
    assert normalised_flip_entropy(torch.tensor([0.0]), k).item() == 0.0
    assert normalised_flip_entropy(torch.tensor([1 - 1 / k]), k).item() == pytest.approx(1.0, abs=1e-12)
    g = 0.2  # -(0.8 ln 0.8) - 0.2 ln(0.2 / 9), over ln 10
    expected = (-(0.8 * math.log(0.8)) - 0.2 * math.log(0.2 / 9)) / math.log(10)
    value = normalised_flip_entropy(torch.tensor([g], dtype=torch.float64), k).item()
    assert value == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("k", [2, 10, 1000])
def test_the_table_is_increasing_and_its_inverse_solves_the_closed_form(k):
    g_grid, h_grid = flip_table(k)
    assert len(g_grid) == 1000 and torch.all(h_grid[1:] > h_grid[:-1])
    h = torch.linspace(0, 1, 501, dtype=torch.float64)
    g = flip_probability(h, k)
    assert torch.allclose(normalised_flip_entropy(g, k), h, atol=2e-3)  # within the table's resolution
    assert torch.allclose(flip_probability(h_grid, k), g_grid, atol=1e-12)  # exact on the entries
    assert g[0].item() == 0.0 and g[-1].item() == pytest.approx(1 - 1 / k)


def test_ten_classes_flip_about_30_percent_and_the_coherence_is_one_minus_h():
    k, n = 10, 200_000
    clean = torch.arange(n) % k
    labels, coherence = authors_entropy_labels(clean, k, torch.Generator().manual_seed(3407))
    flipped = (labels != clean).double().mean().item()
    assert flipped == pytest.approx(0.305, abs=0.005)  # the figure for K = 10
    assert labels.dtype == torch.int64 and coherence.dtype == torch.float32
    assert coherence.min() >= 0 and coherence.max() <= 1 and coherence.mean().item() == pytest.approx(0.5, abs=0.01)
    # more coherent samples keep their label more often: the top coherence decile flips almost never
    top = coherence > 0.9
    assert (labels[top] != clean[top]).double().mean().item() < 0.03
    # a flip goes to another class, uniformly
    other = labels[labels != clean] - clean[labels != clean]
    assert ((other % k) != 0).all()
    assert torch.equal(authors_entropy_labels(clean, k, torch.Generator().manual_seed(3407))[0], labels)
