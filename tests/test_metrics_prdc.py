"""Chunked precision / recall / density / coverage against the reference ``prdc`` package."""
import contextlib
import io

import numpy as np
import pytest

from benchmarks.manifold import authors_split_size, knn_radii, prdc_with_protocol
from benchmarks.metrics import prdc

KEYS = ("precision", "recall", "density", "coverage")


def _reference(real, fake, k):
    import prdc as reference

    with contextlib.redirect_stdout(io.StringIO()):  # it prints the set sizes
        return reference.compute_prdc(real, fake, nearest_k=k)


def _sets(seed, n_real, n_fake, dim, dtype=np.float64):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n_real, dim)).astype(dtype)
    fake = (rng.normal(size=(n_fake, dim)) * 1.1 + 0.15).astype(dtype)
    return real, fake


@pytest.mark.parametrize(
    "n_real,n_fake,dim,k,dtype",
    [(300, 250, 16, 3, np.float64), (200, 260, 64, 5, np.float32), (150, 150, 2048, 3, np.float32)],
)
def test_prdc_equals_reference(n_real, n_fake, dim, k, dtype):
    real, fake = _sets(0, n_real, n_fake, dim, dtype)
    ref = _reference(real, fake, k)
    ours = prdc(real, fake, nearest_k=k, chunk_size=64)
    for key in KEYS:
        assert ours[key] == pytest.approx(float(ref[key]), abs=1e-6), key


def test_knn_radii_equal_reference():
    from prdc.prdc import compute_nearest_neighbour_distances

    x = np.random.default_rng(1).normal(size=(120, 32))
    np.testing.assert_allclose(knn_radii(x, 3, chunk_size=17), compute_nearest_neighbour_distances(x, 3), rtol=1e-9)


def test_chunked_equals_unchunked_and_float64_bulk():
    real, fake = _sets(2, 230, 170, 24)
    unchunked = prdc(real, fake, 3, chunk_size=10**6)
    for chunk in (7, 50, 128):
        assert prdc(real, fake, 3, chunk_size=chunk) == unchunked
    assert prdc(real, fake, 3, chunk_size=33, compute="float64") == unchunked


def test_tight_cluster_against_a_spread_one():
    rng = np.random.default_rng(3)
    spread = rng.normal(size=(300, 8))
    tight = rng.normal(size=(300, 8)) * 0.05
    # generated samples in a tight cluster inside the real manifold: all plausible (precision), little of the
    # real variety reproduced (recall, coverage)
    scores = prdc(spread, tight, 3)
    assert scores["precision"] > 0.9
    assert scores["recall"] < 0.1
    assert scores["coverage"] < 0.2


def test_identical_sets_are_perfect():
    x = np.random.default_rng(4).normal(size=(100, 6))
    scores = prdc(x, x.copy(), 3)
    assert scores["precision"] == 1.0 and scores["recall"] == 1.0 and scores["coverage"] == 1.0


def test_authors_protocol_averages_even_splits():
    real, fake = _sets(5, 103, 96, 8)
    size = authors_split_size(len(real), len(fake))  # min(10000, 103 // 5, 96 // 5) = 19
    assert size == 19
    expected = [prdc(real[i * size : (i + 1) * size], fake[i * size : (i + 1) * size], 3) for i in range(5)]
    ours = prdc_with_protocol(real, fake, 3, "authors", split_seed=None)
    for key in KEYS:
        assert ours[key] == pytest.approx(np.mean([e[key] for e in expected]))
    # the default shuffles before splitting (samples stored class by class must not give class-biased splits)
    sorted_fake = fake[np.argsort(fake[:, 0])]
    shuffled = prdc_with_protocol(real, sorted_fake, 3, "authors")
    assert shuffled == prdc_with_protocol(real, sorted_fake, 3, "authors")  # deterministic
    assert shuffled != prdc_with_protocol(real, sorted_fake, 3, "authors", split_seed=None)
    assert prdc_with_protocol(real, fake, 3, "standard") == prdc(real, fake, 3)


def test_authors_split_size_caps_at_ten_thousand():
    assert authors_split_size(50_000, 60_000) == 10_000
    assert authors_split_size(20_000, 50_000) == 4_000


def test_errors_speak_to_the_user():
    real, fake = _sets(6, 20, 20, 4)
    with pytest.raises(ValueError, match=r"\(20, 4\).*\(20, 5\)"):
        prdc(real, np.zeros((20, 5)), 3)
    with pytest.raises(ValueError, match="more than nearest_k"):
        prdc(real[:3], fake, 3)
    with pytest.raises(ValueError, match="unknown PRDC protocol"):
        prdc_with_protocol(real, fake, 3, "nope")
    with pytest.raises(ValueError, match="NaN"):
        prdc(np.full((10, 4), np.nan), fake, 3)
