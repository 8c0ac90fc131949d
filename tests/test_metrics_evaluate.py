"""The evaluation harness on tiny synthetic images with tiny extractors."""
import numpy as np
import pytest
import torch

from benchmarks.evaluate import IS_UNAVAILABLE, ReferenceSet, evaluate_samples
from benchmarks.features import DomainExtractor


class PixelNet(torch.nn.Module):
    """Features: the first 8 pixels; logits: brightness decides class 0/1."""

    def features(self, x):
        return x.flatten(1)[:, :8]

    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True)
        return torch.cat([0.5 - m, m - 0.5], dim=1)


class FakeInception(DomainExtractor):
    inception_logits = True


def _images(seed, n, low, high):
    return np.random.default_rng(seed).integers(low, high, size=(n, 4, 4, 1), dtype=np.uint8)


def test_evaluate_samples_flat_metrics_and_meta(tmp_path, monkeypatch):
    monkeypatch.setenv("CAD_CACHE", str(tmp_path))
    real = _images(0, 40, 0, 256)
    samples = {"images": _images(1, 30, 128, 256), "labels": np.ones(30, np.int64), "seeds": np.arange(30)}
    net = PixelNet()
    primary = DomainExtractor(net, "pixels-a")
    domain = DomainExtractor(net, "pixels-b", with_logits=True, tag="domain")
    reference = ReferenceSet("toy", "test", 4, 40, lambda: real)
    out = evaluate_samples(
        samples, reference=reference, extractors=[primary, domain], classifier=domain, progress=False
    )
    for key in ("fid", "precision", "recall", "density", "coverage", "fid_domain", "coverage_domain", "accuracy"):
        assert isinstance(out[key], float), key
    assert out["is"] == IS_UNAVAILABLE
    assert out["accuracy"] == pytest.approx(1.0)  # all bright images -> class 1, as requested
    assert out["meta"]["extractors"] == {"fid": "pixels-a", "fid_domain": "pixels-b"}
    assert out["meta"]["num_samples"] == 30 and out["meta"]["num_reference"] == 40
    assert len(list((tmp_path / "reference_stats").glob("*.npz"))) == 2  # one cached entry per extractor
    # an in-memory reference gives the same numbers without the cache
    direct = evaluate_samples(samples, reference=real, extractors=[primary, domain], classifier=domain, progress=False)
    assert {k: v for k, v in direct.items() if k != "meta"} == {k: v for k, v in out.items() if k != "meta"}


def test_inception_score_from_inception_logits_and_authors_protocol():
    real = _images(0, 60, 0, 256)
    samples = {"images": _images(1, 50, 0, 256), "labels": np.zeros(50, np.int64), "seeds": np.arange(50)}
    inception = FakeInception(PixelNet(), "fake-inception", with_logits=True)
    out = evaluate_samples(samples, reference=real, extractors=[inception], prdc_protocol="authors", progress=False)
    assert isinstance(out["is"], float) and out["is"] >= 1.0
    assert out["meta"]["is_splits"] == 10 and out["meta"]["prdc_split_size"] == 10


def test_classifier_without_logits_is_refused():
    net = DomainExtractor(PixelNet(), "pixels")
    samples = {"images": _images(1, 5, 0, 256), "labels": np.zeros(5, np.int64), "seeds": np.arange(5)}
    with pytest.raises(ValueError, match="with_logits"):
        evaluate_samples(samples, reference=samples["images"], extractors=[net], classifier=net, progress=False)
