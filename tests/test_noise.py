"""Label-noise protocols: the coherence formula, the sampling law, seeding, the temperature search, the cache."""
import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from cad.data.noise import (NoiseConfig, coherence_from_probs, expected_relabel_accuracy, find_temperature,
                            label_distribution, resample_labels, symmetric_entropy_labels)
from cad.data.noisy_labels import make_noisy_labels


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CAD_DATA", str(tmp_path / "data"))


def gen(seed=3407):
    return torch.Generator().manual_seed(seed)


def test_uniform_logits_have_zero_coherence():
    _, coherence = resample_labels(torch.zeros(5, 10), 1.0, gen())
    assert torch.allclose(coherence, torch.zeros(5), atol=1e-6)


def test_near_one_hot_logits_have_coherence_near_one():
    logits = torch.full((4, 10), -30.0)
    logits[torch.arange(4), torch.tensor([0, 3, 7, 9])] = 30.0
    labels, coherence = resample_labels(logits, 1.0, gen())
    assert torch.all(coherence > 0.999)
    assert labels.tolist() == [0, 3, 7, 9]


def test_coherence_matches_hand_computed_entropy():
    probs = torch.tensor([[0.5, 0.5, 0.0, 0.0]], dtype=torch.float64)
    # H = log 2, K = 4: c = 1 - log 2 / log 4 = 0.5
    assert coherence_from_probs(probs).item() == pytest.approx(0.5, abs=1e-6)
    assert coherence_from_probs(probs).dtype == torch.float32


def test_temperature_divides_logits():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    expected = torch.softmax(logits.double() / 2.0, dim=-1)
    assert torch.allclose(label_distribution(logits, 2.0), expected)
    # a higher temperature flattens p, so coherence falls
    assert resample_labels(logits, 4.0, gen())[1] < resample_labels(logits, 0.5, gen())[1]


def test_draws_follow_the_label_distribution():
    logits = torch.tensor([[1.0, 0.0, -0.5, 2.0, 0.3]]).repeat(40_000, 1)
    labels, _ = resample_labels(logits, 1.3, gen(0))
    probs = label_distribution(logits[:1], 1.3)[0].numpy()
    counts = np.bincount(labels.numpy(), minlength=5)
    assert chisquare(counts, probs * len(labels)).pvalue > 1e-3
    assert np.allclose(counts / len(labels), probs, atol=0.01)


def test_same_seed_same_labels():
    logits = torch.randn(500, 10, generator=gen(1))
    a, ca = resample_labels(logits, 1.0, gen(3407))
    b, cb = resample_labels(logits, 1.0, gen(3407))
    c, _ = resample_labels(logits, 1.0, gen(1))
    assert torch.equal(a, b) and torch.equal(ca, cb)
    assert not torch.equal(a, c)
    assert a.dtype == torch.int64 and ca.dtype == torch.float32


def _synthetic_logits(n=4000, k=10, seed=0):
    g = gen(seed)
    clean = torch.randint(0, k, (n,), generator=g)
    logits = torch.randn(n, k, generator=g)
    logits[torch.arange(n), clean] += 4.0  # a confident, mostly right classifier
    return logits, clean


@pytest.mark.parametrize("target", [0.54, 0.3, 0.8])
def test_find_temperature_hits_its_target(target):
    logits, clean = _synthetic_logits()
    temperature = find_temperature(logits, clean, target, 3407)
    assert expected_relabel_accuracy(logits, clean, temperature) == pytest.approx(target, abs=1e-3)
    labels, _ = resample_labels(logits, temperature, gen())
    assert (labels == clean).double().mean().item() == pytest.approx(target, abs=0.03)


def test_find_temperature_rejects_unreachable_targets():
    logits, clean = _synthetic_logits()
    with pytest.raises(ValueError, match="out of reach"):
        find_temperature(logits, clean, 0.999, 3407)


def test_expected_accuracy_falls_with_temperature():
    logits, clean = _synthetic_logits()
    accs = [expected_relabel_accuracy(logits, clean, t) for t in (0.5, 1.0, 2.0, 4.0, 16.0)]
    assert all(a > b for a, b in zip(accs, accs[1:]))
    assert accs[-1] == pytest.approx(0.1, abs=0.05)


def test_symmetric_entropy_statistics():
    n, k = 60_000, 10
    clean = torch.randint(0, k, (n,), generator=gen(5))
    labels, coherence = symmetric_entropy_labels(clean, k, gen())
    kept = labels == clean
    assert coherence.mean().item() == pytest.approx(0.5, abs=0.01)  # c = 1 - e, e ~ U(0, 1)
    assert kept.double().mean().item() == pytest.approx(0.5, abs=0.01)  # E[1 - e] = 1/2
    high = coherence > 0.9  # e < 0.1: kept with probability 1 - E[e | e < 0.1] = 0.95
    assert kept[high].double().mean().item() == pytest.approx(0.95, abs=0.015)
    # a flip is a uniform *other* class: shifts 1..K-1 equally often, never 0
    shift = ((labels - clean) % k)[~kept]
    counts = np.bincount(shift.numpy(), minlength=k)
    assert counts[0] == 0
    assert chisquare(counts[1:]).pvalue > 1e-3
    assert torch.equal(symmetric_entropy_labels(clean, k, gen())[0], labels)


def test_noise_config_validates_and_accepts_the_alias():
    assert NoiseConfig(protocol="resample").protocol == "classifier"
    with pytest.raises(ValueError, match="allowed"):
        NoiseConfig(protocol="pairflip")
    with pytest.raises(ValueError, match="temperature"):
        NoiseConfig(temperature=0.0)
    # the keys of experiments/scale/*.yaml construct it directly
    NoiseConfig(**{"protocol": "classifier", "target_relabel_accuracy": 0.54, "temperature": None, "seed": 3407})


def test_noisy_labels_are_cached_with_stats_and_histogram(tmp_path):
    logits, clean = _synthetic_logits(n=2000)
    calls = []

    def logits_fn():
        calls.append(1)
        return logits

    config = NoiseConfig(target_relabel_accuracy=0.54)
    first = make_noisy_labels("toy", clean, 10, config, fingerprint="abc", classifier="lenet-cpu", logits_fn=logits_fn)
    second = make_noisy_labels("toy", clean, 10, config, fingerprint="abc", classifier="lenet-cpu", logits_fn=logits_fn)
    assert len(calls) == 1  # logits computed once, then read from the cache
    assert torch.equal(first.labels, second.labels) and torch.equal(first.coherence, second.coherence)
    stats = json.loads((first.directory / "stats.json").read_text())
    assert stats["relabel_accuracy"] == pytest.approx((first.labels == clean).double().mean().item())
    assert stats["expected_relabel_accuracy"] == pytest.approx(0.54, abs=1e-3)
    assert sum(stats["coherence_histogram"]["counts"]) == 2000
    assert (first.directory / "coherence_hist.png").read_bytes()[:4] == b"\x89PNG"
    parts = first.directory.relative_to(tmp_path / "cache").parts
    assert parts[:4] == ("noisy_labels", "toy-abc", "lenet-cpu", "classifier") and parts[4].endswith("seed3407")
    # an explicit temperature overrides the target and gets its own entry
    fixed = make_noisy_labels("toy", clean, 10, NoiseConfig(temperature=1.0), fingerprint="abc",
                              classifier="lenet-cpu", logits_fn=logits_fn)
    assert fixed.stats["temperature"] == 1.0 and fixed.directory != first.directory


def test_corrupt_noisy_label_cache_is_rebuilt():
    clean = torch.randint(0, 10, (300,), generator=gen())
    config = NoiseConfig(protocol="symmetric_entropy")
    first = make_noisy_labels("toy", clean, 10, config, fingerprint="f")
    (first.directory / "labels.npz").write_bytes(b"not an npz")
    again = make_noisy_labels("toy", clean, 10, config, fingerprint="f")
    assert torch.equal(first.labels, again.labels)
    assert math.isclose(again.stats["mean_coherence"], first.stats["mean_coherence"])


def test_coherence_by_class_reports_who_owns_the_high_coherence_samples():
    from cad.data.noise import coherence_by_class

    # class 0: coherence 0.9 (all kept, owns the top), class 1: 0.2 (none kept), class 2: half 0.6, half 0.1
    clean = torch.tensor([0] * 10 + [1] * 10 + [2] * 10)
    coherence = torch.tensor([0.9] * 10 + [0.2] * 10 + [0.6] * 5 + [0.1] * 5)
    noisy = clean.clone()
    noisy[0] = 2  # one top sample carries a wrong label: the top share is counted by the noisy label
    rows = coherence_by_class(coherence, clean, noisy, num_classes=3, threshold=0.5, top_fraction=0.3)
    assert [round(r["mean_coherence"], 6) for r in rows] == [0.9, 0.2, 0.35]
    assert [r["kept_by_filter"] for r in rows] == [1.0, 0.0, 0.5]
    assert rows[0]["share_of_top"] == pytest.approx(0.9) and rows[2]["share_of_top"] == pytest.approx(0.1)
    assert rows[1]["share_of_top"] == 0.0
