"""COCO-10K from a tiny fake COCO folder: the deterministic subset, one caption per image, the images' size and range,
and the errors that name missing files."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cad.data.coco import CocoEval, find_coco, select_subset, subset_rank
from cad.data.errors import DatasetNotFoundError

NUM_IMAGES = 30


def write_coco(root, year: str = "2014", num_images: int = NUM_IMAGES, *, write_images: bool = True) -> dict:
    """A COCO folder: ``num_images`` small images (some greyscale, non-square), 1 to 3 captions each, annotation ids
    out of order, one image without a caption (it cannot be chosen)."""
    rng = np.random.default_rng(0)
    images, annotations = [], []
    folder = root / f"val{year}"
    folder.mkdir(parents=True, exist_ok=True)
    ann_ids = iter(rng.permutation(10_000).tolist())
    for n in range(num_images):
        image_id = 1000 + 7 * n
        name = f"COCO_val{year}_{image_id:012d}.jpg" if year == "2014" else f"{image_id:012d}.jpg"
        images.append({"id": image_id, "file_name": name, "width": 40, "height": 30})
        if write_images:
            pixels = rng.integers(0, 256, size=(30 + n % 3 * 10, 40, 3), dtype=np.uint8)
            img = Image.fromarray(pixels)
            (img.convert("L") if n % 5 == 0 else img).save(folder / name)
        if n == num_images - 1:
            continue  # no caption
        for c in range(1 + n % 3):
            annotations.append({"id": next(ann_ids), "image_id": image_id, "caption": f" image {n}  caption {c}\n"})
    data = {"images": images, "annotations": annotations}
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / f"captions_val{year}.json").write_text(json.dumps(data))
    return data


def test_subset_is_deterministic_of_the_requested_size_with_the_first_caption(tmp_path):
    data = write_coco(tmp_path)
    coco = CocoEval(tmp_path, resolution=16, size=12)
    again = CocoEval(tmp_path, resolution=16, size=12)
    assert len(coco) == 12 and coco.image_ids == again.image_ids and coco.captions == again.captions
    assert coco.image_ids == sorted(coco.image_ids) and len(set(coco.image_ids)) == 12
    assert coco.name == "coco-val2014-12-seed0" and coco.year == "2014"
    # the rule: the 12 captioned images with the smallest SHA-256 rank
    captioned = sorted({a["image_id"] for a in data["annotations"]})
    assert coco.image_ids == sorted(sorted(captioned, key=lambda i: subset_rank(i, 0))[:12])
    assert 1000 + 7 * (NUM_IMAGES - 1) not in CocoEval(tmp_path, resolution=16, size=NUM_IMAGES - 1).image_ids
    # each image's caption: its lowest annotation id, whitespace collapsed
    for image_id, caption in zip(coco.image_ids, coco.captions):
        first = min((a for a in data["annotations"] if a["image_id"] == image_id), key=lambda a: a["id"])
        assert caption == " ".join(first["caption"].split())
    # another seed, another subset; a larger subset of the same seed contains the smaller one
    assert CocoEval(tmp_path, resolution=16, size=12, seed=1).image_ids != coco.image_ids
    assert set(coco.image_ids) <= set(CocoEval(tmp_path, resolution=16, size=20).image_ids)


def test_items_are_square_signed_images_with_their_caption(tmp_path):
    write_coco(tmp_path)
    coco = CocoEval(tmp_path, resolution=16, size=10)
    for i in range(len(coco)):
        item = coco[i]
        assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
        assert -1.0 <= item["image"].min() and item["image"].max() <= 1.0
        assert item["caption"] == coco.captions[i] and int(item["image_id"]) == coco.image_ids[i]
        real = coco.uint8_image(i)
        assert real.shape == (16, 16, 3) and real.dtype == np.uint8
        torch.testing.assert_close(item["image"], torch.from_numpy(real).permute(2, 0, 1).float() / 127.5 - 1)


def test_2017_names_are_accepted_and_2014_preferred(tmp_path):
    write_coco(tmp_path / "only2017", "2017")
    assert find_coco(tmp_path / "only2017").year == "2017"
    assert CocoEval(tmp_path / "only2017", resolution=8, size=5).name == "coco-val2017-5-seed0"
    write_coco(tmp_path / "both", "2017")
    write_coco(tmp_path / "both", "2014")
    assert find_coco(tmp_path / "both").year == "2014"


def test_missing_files_are_named(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        CocoEval(tmp_path, resolution=16, size=4)
    for name in ("captions_val2014.json", "val2014", "captions_val2017.json", "val2017", "val2014.zip"):
        assert name in str(err.value)
    write_coco(tmp_path, write_images=False)
    with pytest.raises(DatasetNotFoundError, match="COCO_val2014_"):
        CocoEval(tmp_path, resolution=16, size=4)


def test_a_subset_larger_than_the_split_is_refused(tmp_path):
    data = write_coco(tmp_path)
    with pytest.raises(ValueError, match="only 29 captioned images"):
        select_subset(data, NUM_IMAGES, seed=0)
