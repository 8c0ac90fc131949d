"""Feature extraction: batch-size independence, input handling, registry, offline/online Inception selection."""
import numpy as np
import pytest
import torch

from benchmarks import features as F
from benchmarks.features import (
    DomainExtractor,
    ExtractorUnavailable,
    build_extractor,
    extract_features,
    extract_outputs,
    to_uint8_nchw,
)


class TinyConvNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2)
        )
        self.head = torch.nn.Linear(16, 3)

    def features(self, x):
        return self.body(x).flatten(1)

    def forward(self, x):
        return self.head(self.features(x))


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, size=(11, 12, 12, 1), dtype=np.uint8)


def test_features_do_not_depend_on_batch_size(images):
    extractor = DomainExtractor(TinyConvNet(), "tiny-conv")
    reference = extract_features(extractor, images, batch_size=11, progress=False)
    assert reference.dtype == np.float64 and reference.shape == (11, 16)
    for batch_size in (1, 4):
        np.testing.assert_allclose(extract_features(extractor, images, batch_size, progress=False), reference,
                                   rtol=1e-6, atol=1e-7)


def test_iterator_input_equals_array_input(images):
    extractor = DomainExtractor(TinyConvNet(), "tiny-conv", with_logits=True)
    whole = extract_outputs(extractor, images, batch_size=5, progress=False)
    chunks = extract_outputs(extractor, iter([images[:3], images[3:]]), batch_size=5, progress=False)
    assert set(whole) == {"features", "logits"} and whole["logits"].shape == (11, 3)
    for key in whole:
        np.testing.assert_allclose(chunks[key], whole[key], rtol=1e-6, atol=1e-7)


def test_domain_extractor_needs_a_features_method():
    with pytest.raises(ValueError, match="features"):
        DomainExtractor(torch.nn.Linear(2, 2), "linear")


def test_to_uint8_nchw_shapes_and_errors():
    assert to_uint8_nchw(np.zeros((2, 5, 5), np.uint8)).shape == (2, 1, 5, 5)
    assert to_uint8_nchw(np.zeros((2, 5, 5, 3), np.uint8)).shape == (2, 3, 5, 5)
    with pytest.raises(ValueError, match="uint8"):
        to_uint8_nchw(np.zeros((2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="shape"):
        to_uint8_nchw(np.zeros((2, 5, 5, 2), np.uint8))


def test_inception_preprocess_convention():
    gray = torch.full((1, 1, 28, 28), 128, dtype=torch.uint8)
    x = F.inception_preprocess(gray)
    assert x.shape == (1, 3, 299, 299) and torch.all(x == 0)  # (128 - 128) / 128
    white = F.inception_preprocess(torch.full((1, 3, 8, 8), 255, dtype=torch.uint8))
    assert torch.allclose(white, torch.tensor(127 / 128))  # the top of fid-helper's INPUT_RANGE_TF


def test_registry():
    assert {"inception-v3-compat", "fid-inception-tf2015-offline"} <= set(F.EXTRACTORS)
    with pytest.raises(ValueError, match="unknown extractor 'nope'.*registered"):
        build_extractor("nope")


def test_online_inception_fails_fast_and_falls_back(monkeypatch, tmp_path):
    with pytest.raises(ExtractorUnavailable, match="not found"):
        F.resolve_torch_fidelity_weights(str(tmp_path / "missing.pth"))

    def unavailable(*args, **kwargs):
        raise ExtractorUnavailable("no internet")

    monkeypatch.setattr(F, "resolve_torch_fidelity_weights", unavailable)
    monkeypatch.setattr(F, "OfflineFIDInception", lambda **kw: type("Stub", (), {"name": "offline-stub"})())
    with pytest.warns(RuntimeWarning, match="falling back"):
        assert F.build_inception().name == "offline-stub"


@pytest.mark.slow
def test_offline_inception_on_a_handful_of_images():
    images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    extractor = build_extractor("fid-inception-tf2015-offline")
    assert extractor.name == "fid-inception-tf2015-offline" and not extractor.provides_logits
    a = extract_features(extractor, images, batch_size=3, progress=False)
    b = extract_features(extractor, images, batch_size=2, progress=False)
    assert a.shape == (3, 2048) and np.all(a >= 0)  # pool3 after ReLU
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert build_extractor("fid-inception-tf2015-offline", autocast_bf16=True).name.endswith("+bf16")
