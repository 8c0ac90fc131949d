"""Cached reference statistics: reused when valid, rejected and rebuilt when stale or corrupt."""
import json

import numpy as np
import pytest
import torch

from benchmarks.features import DomainExtractor
from benchmarks.reference import (
    ReferenceKey,
    StaleCacheError,
    load_reference,
    reference_paths,
    reference_statistics,
    save_reference,
)


class Flatten(torch.nn.Module):
    def features(self, x):
        return x.flatten(1)[:, :6]


@pytest.fixture
def setup(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(10, 4, 4, 1), dtype=np.uint8)
    extractor = DomainExtractor(Flatten(), "flatten6")
    key = ReferenceKey("toy", "test", "flatten6", 4, 10)
    calls = []

    def images_fn():
        calls.append(1)
        return images

    def get():
        return reference_statistics(key, images_fn, extractor, progress=False, root=tmp_path)

    return key, get, calls, tmp_path


def test_cache_is_built_once_and_reused(setup):
    key, get, calls, root = setup
    first = get()
    second = get()
    assert len(calls) == 1
    np.testing.assert_array_equal(first.features, second.features)
    assert second.stats.mu.dtype == np.float64 and second.stats.sigma.shape == (6, 6)
    assert second.features.shape == (10, 6)


@pytest.mark.parametrize("corruption", ["truncate", "sidecar_key", "missing_sidecar", "checksum", "shapes"])
def test_corrupt_cache_is_rejected_and_rebuilt(setup, corruption):
    key, get, calls, root = setup
    good = get()
    npz, sidecar = reference_paths(key, root)
    if corruption == "truncate":
        npz.write_bytes(npz.read_bytes()[:100])
    elif corruption == "sidecar_key":
        meta = json.loads(sidecar.read_text())
        meta["key"]["num_images"] = 11
        sidecar.write_text(json.dumps(meta))
    elif corruption == "missing_sidecar":
        sidecar.unlink()
    elif corruption == "checksum":
        meta = json.loads(sidecar.read_text())
        meta["sha256"] = "0" * 64
        sidecar.write_text(json.dumps(meta))
    elif corruption == "shapes":  # a well-formed file with the wrong content, checksum updated to match
        wrong_key = ReferenceKey("toy", "test", "flatten6", 4, 9)
        save_reference(wrong_key, good.features[:9], root)
        wrong_npz, wrong_sidecar = reference_paths(wrong_key, root)
        wrong_npz.replace(npz)
        meta = json.loads(wrong_sidecar.read_text())
        meta["key"]["num_images"] = 10
        sidecar.write_text(json.dumps(meta))
    with pytest.raises(StaleCacheError):
        load_reference(key, root)
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        rebuilt = get()
    assert len(calls) == 2
    np.testing.assert_array_equal(rebuilt.features, good.features)
    load_reference(key, root)  # valid again


def test_key_must_name_the_extractor(setup, tmp_path):
    key, *_ = setup
    other = DomainExtractor(Flatten(), "other")
    with pytest.raises(ValueError, match="'flatten6'.*'other'"):
        reference_statistics(key, lambda: None, other, root=tmp_path)


def test_slug_separates_keys():
    a = ReferenceKey("fmnist", "test", "fid-inception-tf2015-offline", 28, 10000).slug()
    b = ReferenceKey("fmnist", "test", "fid-inception-tf2015-offline+bf16", 28, 10000).slug()
    assert a != b and "/" not in a
