"""Sample files: npz round trip, validation, and PNG folders named <label>_<seed>.png."""
import numpy as np
import pytest
from PIL import Image

from benchmarks.samples import load_image_folder, load_samples, save_samples


def _samples(n=4, channels=1):
    rng = np.random.default_rng(0)
    return dict(
        images=rng.integers(0, 256, size=(n, 8, 8, channels), dtype=np.uint8),
        labels=np.arange(n) % 3,
        seeds=np.arange(100, 100 + n),
    )


def test_round_trip_with_extra_arrays(tmp_path):
    s = _samples()
    path = save_samples(tmp_path / "s.npz", **s, coherence=np.linspace(0, 1, 4))
    loaded = load_samples(path)
    np.testing.assert_array_equal(loaded["images"], s["images"])
    assert loaded["labels"].dtype == np.int64 and loaded["seeds"].dtype == np.int64
    np.testing.assert_allclose(loaded["coherence"], np.linspace(0, 1, 4))
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]  # no temporary file left behind


def test_validation_errors(tmp_path):
    s = _samples()
    with pytest.raises(ValueError, match="uint8"):
        save_samples(tmp_path / "s.npz", s["images"].astype(np.float32), s["labels"], s["seeds"])
    with pytest.raises(ValueError, match="labels"):
        save_samples(tmp_path / "s.npz", s["images"], s["labels"][:2], s["seeds"])
    with pytest.raises(ValueError, match=".npz"):
        save_samples(tmp_path / "s.npy", **s)
    with pytest.raises(FileNotFoundError, match="save_samples"):
        load_samples(tmp_path / "missing.npz")
    assert not list(tmp_path.iterdir())


def test_image_folder(tmp_path):
    s = _samples(3, channels=3)
    names = ["2_000102.png", "label0_seed100.png", "1_101.png"]
    for name, image in zip(names, s["images"][[2, 0, 1]]):
        Image.fromarray(image).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("ignored")
    loaded = load_samples(tmp_path)
    np.testing.assert_array_equal(loaded["seeds"], [100, 101, 102])
    np.testing.assert_array_equal(loaded["labels"], [0, 1, 2])
    np.testing.assert_array_equal(loaded["images"], s["images"])


def test_grayscale_folder_and_empty_folder(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "1_5.png")
    assert load_image_folder(tmp_path)["images"].shape == (1, 8, 8, 1)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="<label>_<seed>.png"):
        load_image_folder(empty)
