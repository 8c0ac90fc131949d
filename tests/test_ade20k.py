"""ADE20K with the paper's protocol files (issue 12) on a tiny fake ADEChallengeData2016 folder: items at the
resolution with the right ranges and labels intact, confidences round-trip, and each missing file is named."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cad.data.ade20k import ADE20K, ADE20KError, load_confidence, save_confidence

NAMES = {"training": ["ADE_train_00000001", "ADE_train_00000002"], "validation": ["ADE_val_00000001"]}
WIDTH, HEIGHT = 48, 32  # landscape: resize the shorter side to R, then centre-crop the width


def _fake_ade20k(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "ADEChallengeData2016"
    captions = {}
    for folder, names in NAMES.items():
        for name in names:
            image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            (root / "images" / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / "images" / folder / f"{name}.jpg")
            # left half class 3, right half class 150: labels must survive resizing (nearest neighbour)
            exact = np.where(np.arange(WIDTH)[None] < WIDTH // 2, 3, 150).repeat(HEIGHT, 0).astype(np.uint8)
            (root / "annotations" / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(exact).save(root / "annotations" / folder / f"{name}.png")
            predicted = np.where(np.arange(WIDTH)[None] < WIDTH // 3, 7, 0).repeat(HEIGHT, 0).astype(np.uint8)
            (tmp_path / "predicted" / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(predicted).save(tmp_path / "predicted" / folder / f"{name}.png")
            save_confidence(tmp_path / "confidence" / folder / f"{name}.png", rng.random((HEIGHT, WIDTH)))
            captions[name] = f"a photo of {name}"
    (tmp_path / "captions.json").write_text(json.dumps(captions))
    return dict(root=tmp_path, predicted_dir=tmp_path / "predicted", confidence_dir=tmp_path / "confidence",
                captions_file=tmp_path / "captions.json")


def test_an_item_has_every_field_at_the_resolution(tmp_path):
    files = _fake_ade20k(tmp_path)
    data = ADE20K(split="train", resolution=16, **files)
    assert len(data) == 2 and data.map_channels == 151
    item = data[1]
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert -1.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert item["map"].shape == (16, 16) and item["map"].dtype == torch.int64
    assert item["annotation"].shape == (16, 16) and item["annotation"].dtype == torch.int64
    assert item["coherence_map"].shape == (1, 16, 16)
    assert 0.0 <= item["coherence_map"].min() and item["coherence_map"].max() <= 1.0
    assert item["caption"] == "a photo of ADE_train_00000002" and item["index"] == 1
    # nearest neighbour keeps labels: only the classes that were there, the boundary in the middle of the crop
    assert set(item["annotation"].unique().tolist()) == {3, 150}
    assert set(item["map"].unique().tolist()) == {0, 7}
    assert (item["annotation"][:, :8] == 3).all() and (item["annotation"][:, 8:] == 150).all()
    assert len(ADE20K(split="validation", resolution=16, **files)) == 1


def test_confidence_round_trips_through_the_16_bit_png(tmp_path):
    confidence = np.random.default_rng(1).random((5, 7))
    save_confidence(tmp_path / "c.png", confidence)
    np.testing.assert_allclose(load_confidence(tmp_path / "c.png"), confidence, atol=1 / 65535)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        save_confidence(tmp_path / "bad.png", confidence + 1)
    Image.fromarray((confidence * 255).astype(np.uint8)).save(tmp_path / "eight_bit.png")
    with pytest.raises(ValueError, match="16-bit"):
        load_confidence(tmp_path / "eight_bit.png")


def test_without_a_captions_file_the_caption_is_empty(tmp_path):
    files = _fake_ade20k(tmp_path)
    assert ADE20K(split="train", resolution=16, **{**files, "captions_file": None})[0]["caption"] == ""


@pytest.mark.parametrize("kind, remove, message", [
    ("images", lambda t: [p.unlink() for p in (t / "ADEChallengeData2016/images/training").glob("*")],
     "no ADE20K images"),
    ("annotation", lambda t: (t / "ADEChallengeData2016/annotations/training/ADE_train_00000002.png").unlink(),
     "1 annotation file.*ADE_train_00000002.png.*sceneparsing"),
    ("predicted", lambda t: (t / "predicted/training/ADE_train_00000001.png").unlink(),
     "1 predicted map file.*ADE_train_00000001.png.*segmenter"),
    ("confidence", lambda t: (t / "confidence/training/ADE_train_00000001.png").unlink(),
     "1 confidence file.*ADE_train_00000001.png.*save_confidence"),
    ("captions file", lambda t: (t / "captions.json").unlink(), "captions file .*captions.json not found.*BLIP-2"),
    ("caption", lambda t: (t / "captions.json").write_text(json.dumps({"ADE_train_00000001": "x"})),
     "1 caption file.*ADE_train_00000002.*BLIP-2"),
])
def test_each_missing_file_is_named_with_how_to_make_it(tmp_path, kind, remove, message):
    files = _fake_ade20k(tmp_path)
    remove(tmp_path)
    with pytest.raises(ADE20KError, match=message):
        ADE20K(split="train", resolution=16, **files)


def test_a_missing_dataset_and_bad_maps_are_errors(tmp_path):
    with pytest.raises(ADE20KError, match="ADE20K not found.*ADEChallengeData2016"):
        ADE20K(tmp_path, "train", resolution=16, predicted_dir=tmp_path, confidence_dir=tmp_path)
    files = _fake_ade20k(tmp_path)
    with pytest.raises(ValueError, match="split='test'"):
        ADE20K(split="test", resolution=16, **files)
    with pytest.raises(ValueError, match="class 7, above 5"):
        ADE20K(split="train", resolution=16, num_classes=5, **files)[0]
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "predicted/training/ADE_train_00000001.png")
    with pytest.raises(ValueError, match="must have its image's size"):
        ADE20K(split="train", resolution=16, **files)[0]
