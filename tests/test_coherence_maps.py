"""Per-pixel coherence maps (issue 12): Canny coherence low exactly on class boundaries, the confidence map is the
maximum softmax, edits."""
import numpy as np
import pytest
import torch

from cad.conditioning.coherence_maps import (blit_coherence, canny_coherence, confidence_coherence, square_coherence,
                                             uniform_coherence)


def _boundary_pairs(class_map: np.ndarray):
    """Every pair of 4-neighbour pixels whose classes differ."""
    h, w = class_map.shape
    for r in range(h):
        for c in range(w):
            for dr, dc in ((0, 1), (1, 0)):
                if r + dr < h and c + dc < w and class_map[r, c] != class_map[r + dr, c + dc]:
                    yield (r, c), (r + dr, c + dc)


def _hand_map() -> np.ndarray:
    m = np.zeros((16, 20), dtype=np.int64)
    m[:, 10:] = 3          # a vertical boundary touching the top and bottom borders
    m[4:9, 2:7] = 1        # a square inside region 0
    m[12:, 14:] = 7        # a corner block
    return m


def test_canny_coherence_is_low_exactly_on_class_boundaries():
    m = _hand_map()
    coherence = canny_coherence(m, low=0.2)
    assert set(np.unique(coherence).tolist()) == {np.float32(0.2), 1.0}
    on_boundary = np.zeros_like(m, dtype=bool)
    for a, b in _boundary_pairs(m):
        assert coherence[a] < 1 or coherence[b] < 1, (a, b)  # every change of class is marked on one side
        on_boundary[a] = on_boundary[b] = True
    assert (coherence[~on_boundary] == 1).all()  # and nothing else is


def test_a_map_of_one_class_is_coherent_everywhere():
    assert (canny_coherence(np.full((8, 8), 5)) == 1).all()


def test_the_confidence_map_is_the_maximum_softmax():
    logits = torch.randn(2, 5, 4, 6)
    expected = torch.stack([torch.stack([torch.stack([logits[b, :, i, j].softmax(0).max() for j in range(6)])
                                         for i in range(4)]) for b in range(2)])[:, None]
    torch.testing.assert_close(confidence_coherence(logits), expected)
    confident = torch.zeros(1, 3, 2, 2)
    confident[:, 1] = 50.0
    torch.testing.assert_close(confidence_coherence(confident), torch.ones(1, 1, 2, 2))


def test_a_blitted_map_takes_the_window_from_the_other_map_and_nothing_else():
    base, other = uniform_coherence(6, 8, 1.0), np.arange(48, dtype=np.float32).reshape(6, 8) / 48
    blitted = blit_coherence(base, other, 1, 4, 3, 4)
    assert np.array_equal(blitted[1:4, 4:8], other[1:4, 4:8])
    outside = np.ones((6, 8), dtype=bool)
    outside[1:4, 4:8] = False
    assert (blitted[outside] == 1).all() and (base == 1).all()  # the base itself is left as it was
    with pytest.raises(ValueError, match="same shape"):
        blit_coherence(base, other[:, :4], 0, 0, 2, 2)


def test_an_edited_map_has_its_square():
    edited = square_coherence(uniform_coherence(8, 8), 2, 3, 4, value=0.0)
    assert edited[2:6, 3:7].max() == 0 and edited.sum() == 64 - 16
