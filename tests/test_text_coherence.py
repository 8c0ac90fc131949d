"""Quantile coherence bins for image-text pairs and the random-character negative."""
import numpy as np
import pytest

from cad.conditioning.text_coherence import (NEGATIVE_CHARACTERS, binned_coherence, quantile_edges,
                                             random_character_prompt)


def test_quantile_bins_give_eight_equal_mass_levels():
    scores = np.random.default_rng(0).normal(0.2, 0.05, size=8000) ** 3  # any monotone scale
    coherence = binned_coherence(scores, quantile_edges(scores))
    levels, counts = np.unique(coherence, return_counts=True)
    np.testing.assert_allclose(levels, np.arange(8) / 7, atol=1e-6)
    assert counts.tolist() == [1000] * 8
    order = np.argsort(scores)
    assert np.all(np.diff(coherence[order]) >= 0)  # a higher similarity never gets a lower coherence


def test_scores_outside_the_training_range_take_the_end_bins():
    edges = quantile_edges(np.linspace(0, 1, 80))
    assert binned_coherence(np.array([-5.0, 5.0]), edges).tolist() == [0.0, 1.0]


def test_too_few_training_scores_are_refused():
    with pytest.raises(ValueError, match="at least num_bins=8"):
        quantile_edges(np.zeros(5))


def test_the_negative_prompt_is_random_characters_of_its_length():
    rng = np.random.default_rng(0)
    prompts = [random_character_prompt(rng) for _ in range(3)]
    assert all(len(p) == 32 and set(p) <= set(NEGATIVE_CHARACTERS) for p in prompts)
    assert len(set(prompts)) == 3
