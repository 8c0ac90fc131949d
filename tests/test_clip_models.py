"""The offline open_clip loader, the image-text cosine and CLIPScore, with a tiny random open_clip CLIP (no weights)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

open_clip = pytest.importorskip("open_clip")

from benchmarks.metrics import clip_score_from_embeddings  # noqa: E402
from cad.conditioning.clip_models import (PAPER_COHERENCE_MODEL, ClipWeightsNotFoundError, clip_score,  # noqa: E402
                                          image_text_cosine, load_clip, wrap_open_clip)

TINY_NAME = "tiny-test-clip"
TINY_CONFIG = dict(embed_dim=16, quick_gelu=True,
                   vision_cfg=dict(image_size=32, layers=1, width=32, patch_size=8, head_width=16),
                   text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1))
CAPTIONS = ["a red square", "a blue circle on grass", "two dogs", "a bowl of soup", "a city street at night"]


def tiny_clip(seed: int = 0):
    """A ``ClipModel`` over a tiny random ``open_clip.CLIP`` (no weights), with open_clip's tokenizer."""
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CONFIG)
    tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=TINY_CONFIG["text_cfg"]["context_length"])
    return wrap_open_clip(model, tokenizer, name=f"tiny-seed{seed}")


def photos(n: int = 5, seed: int = 0) -> list[Image.Image]:
    """Images of assorted sizes and modes (non-square, greyscale), as shards and COCO hold them."""
    rng = np.random.default_rng(seed)
    sizes = [(40, 30), (32, 32), (50, 64), (33, 47), (80, 36)]
    out = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        img = Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
        out.append(img.convert("L") if i == 2 else img)
    return out


def test_cosine_is_the_cosine_of_open_clips_embeddings_and_does_not_depend_on_the_batch():
    clip = tiny_clip()
    images = photos()
    pixels = torch.stack([clip.preprocess(img) for img in images])
    with torch.no_grad():
        expected = F.cosine_similarity(clip.model.encode_image(pixels),
                                       clip.model.encode_text(clip.tokenizer(CAPTIONS)), dim=-1)
    one_batch = image_text_cosine(clip, images, CAPTIONS, batch_size=5)
    assert one_batch.shape == (5,) and one_batch.dtype == np.float64
    np.testing.assert_allclose(one_batch, expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(image_text_cosine(clip, images, CAPTIONS, batch_size=2), one_batch, atol=1e-5)


def test_clip_score_is_the_mean_of_clamped_100_cos_and_accepts_uint8_arrays():
    clip = tiny_clip()
    rng = np.random.default_rng(1)
    nhwc = rng.integers(0, 256, size=(5, 24, 24, 3), dtype=np.uint8)
    cos = image_text_cosine(clip, nhwc, CAPTIONS)
    score = clip_score(clip, nhwc, CAPTIONS, batch_size=3)
    assert score == pytest.approx(float(np.mean(100 * np.maximum(cos, 0))), abs=1e-6)
    # the same images as a uint8 (N, C, H, W) tensor and as PIL images give the same cosines
    nchw = torch.from_numpy(nhwc).permute(0, 3, 1, 2)
    np.testing.assert_allclose(image_text_cosine(clip, nchw, CAPTIONS), cos, atol=1e-6)
    np.testing.assert_allclose(image_text_cosine(clip, [Image.fromarray(x) for x in nhwc], CAPTIONS), cos, atol=1e-6)
    # and the score is the suite's one CLIPScore formula
    assert score == pytest.approx(clip_score_from_embeddings(np.c_[cos, np.sqrt(1 - cos**2)],
                                                             np.c_[np.ones(5), np.zeros(5)]), abs=1e-6)


def test_mismatched_inputs_are_refused():
    clip = tiny_clip()
    with pytest.raises(ValueError, match="one caption"):
        image_text_cosine(clip, photos(3), CAPTIONS)
    with pytest.raises(ValueError, match="uint8"):
        image_text_cosine(clip, np.full((5, 8, 8, 3), 0.5, dtype=np.float32), CAPTIONS)
    with pytest.raises(TypeError, match="PIL images"):
        image_text_cosine(clip, torch.rand(5, 3, 8, 8), CAPTIONS)


@pytest.fixture
def registered_tiny(monkeypatch):
    """The tiny config registered as an open_clip architecture (for this test only)."""
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, TINY_NAME, TINY_CONFIG)
    return TINY_NAME


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_load_clip_reads_a_local_checkpoint(tmp_path, registered_tiny, suffix):
    source = tiny_clip(seed=3)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pt":
        torch.save(source.model.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in source.model.state_dict().items()}, str(path))
    loaded = load_clip(registered_tiny, path)
    assert loaded.name == f"open_clip:{TINY_NAME}:{path.name}"
    assert not any(p.requires_grad for p in loaded.model.parameters()) and not loaded.model.training
    images = photos()
    np.testing.assert_allclose(image_text_cosine(loaded, images, CAPTIONS),
                               image_text_cosine(source, images, CAPTIONS), atol=1e-6)


def test_missing_weights_name_the_model_and_where_to_get_them(tmp_path):
    with pytest.raises(ClipWeightsNotFoundError) as err:
        load_clip(PAPER_COHERENCE_MODEL, tmp_path / "metaclip_h14.bin")
    message = str(err.value)
    assert PAPER_COHERENCE_MODEL in message and "metaclip_h14.bin" in message and "--checkpoint" in message
    assert "metaclip_fullcc" in message and "timm/vit_huge_patch14_clip_224.metaclip_2pt5b" in message
    # a pretrained tag is not a file: it is refused, never downloaded
    with pytest.raises(ClipWeightsNotFoundError, match="not accepted"):
        load_clip(PAPER_COHERENCE_MODEL, "metaclip_fullcc")
    with pytest.raises(ClipWeightsNotFoundError, match="no checkpoint file given"):
        load_clip(PAPER_COHERENCE_MODEL, None)


def test_unknown_architecture_and_wrong_weights_are_named(tmp_path, registered_tiny):
    with pytest.raises(ValueError, match="ViT-H-14-quickgelu"):
        load_clip("ViT-H-14-quickgelo", tmp_path / "x.pt")
    path = tmp_path / "other.pt"
    torch.save({"visual.proj": torch.zeros(3, 3)}, path)
    with pytest.raises(ValueError, match=f"does not hold weights of open_clip '{TINY_NAME}'"):
        load_clip(registered_tiny, path)
