"""WebDataset-style caption shards: the index, the scores file that cad.data.score_shards writes (resumable), the
coherence bins, the dataset's items and the errors for what is missing. Tiny shards written here, a tiny random CLIP."""
import io
import json
import os
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

pytest.importorskip("open_clip")

import cad.data.shard_index as shard_index  # noqa: E402
import cad.data.score_shards as score_shards_module  # noqa: E402
from cad.conditioning.clip_models import image_text_cosine  # noqa: E402
from cad.conditioning.text_coherence import quantile_edges  # noqa: E402
from cad.data.caption_shards import CaptionShards, CaptionShardsError, ShardScores, load_index  # noqa: E402
from cad.data.images import decode_rgb  # noqa: E402
from cad.data.score_shards import score_shards  # noqa: E402
from tests.test_clip_models import TINY_CONFIG, TINY_NAME, tiny_clip  # noqa: E402

FORMATS = ("jpg", "png", "webp")


def pair(shard: int, i: int) -> tuple[str, str, Image.Image, dict]:
    """Key, caption, image (a flat colour, non-square) and metadata of pair ``i`` of shard ``shard``."""
    rng = np.random.default_rng(100 * shard + i)
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    size = (int(rng.integers(20, 60)), int(rng.integers(20, 60)))
    return f"{shard:03d}{i:05d}", f"caption {shard}-{i} with {colour}", Image.new("RGB", size, colour), {"i": i}


def write_shard(path, shard: int, n: int) -> None:
    """A shard of ``n`` pairs as img2dataset writes them (jpg / png / webp images, txt, json), plus one key with a
    caption but no image (it must be skipped)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for i in range(n):
            key, caption, image, meta = pair(shard, i)
            fmt = FORMATS[i % len(FORMATS)]
            buffer = io.BytesIO()
            image.save(buffer, format={"jpg": "JPEG"}.get(fmt, fmt.upper()), **({"lossless": True} if fmt == "webp"
                                                                                else {}))
            add(f"{key}.{fmt}", buffer.getvalue())
            add(f"{key}.txt", f"  {caption}\n".encode())
            if i % 2 == 0:
                add(f"{key}.json", json.dumps(meta).encode())
        add("99999999.txt", b"a caption without an image")


@pytest.fixture
def shards(tmp_path):
    """Two shards, one in a subfolder (CC12M and LAION side by side), 24 pairs each."""
    root = tmp_path / "shards"
    write_shard(root / "cc12m" / "00000.tar", 0, 24)
    write_shard(root / "laion" / "00000.tar", 1, 24)
    return root


def test_index_round_trips_keys_captions_images_and_metadata(shards, tmp_path):
    index = load_index(shards, cache=tmp_path / "index.npz")
    assert index.shards == ["cc12m/00000.tar", "laion/00000.tar"]
    assert index.counts.tolist() == [24, 24] and index.skipped.tolist() == [1, 1]
    for row, (shard, i) in enumerate([(s, i) for s in (0, 1) for i in range(24)]):
        key, caption, image, meta = pair(shard, i)
        assert index.keys[row] == key and index.caption(row) == caption
        assert index.metadata(row) == (meta if i % 2 == 0 else {})
        decoded = np.asarray(decode_rgb(index.read(row, "image")), dtype=np.int16)
        assert decoded.shape == (image.size[1], image.size[0], 3)
        assert np.abs(decoded - np.asarray(image, dtype=np.int16)).max() <= (8 if i % 3 == 0 else 0)  # jpg: lossy


def test_index_is_cached_and_only_changed_shards_are_indexed_again(shards, tmp_path, monkeypatch):
    cache = tmp_path / "index.npz"
    first = load_index(shards, cache=cache)
    calls = []
    real = shard_index.index_shard
    monkeypatch.setattr(shard_index, "index_shard", lambda path: calls.append(path.name) or real(path))
    again = load_index(shards, cache=cache)
    assert calls == [] and np.array_equal(again.keys, first.keys) and np.array_equal(again.members, first.members)
    write_shard(shards / "laion" / "00000.tar", 1, 10)  # rewritten: another size
    changed = load_index(shards, cache=cache)
    assert calls == ["00000.tar"] and changed.counts.tolist() == [24, 10]
    assert load_index(shards, cache=cache).counts.tolist() == [24, 10] and len(calls) == 1


def test_scores_equal_image_text_cosine_and_bins_are_equal_mass_quantiles(shards, tmp_path):
    clip = tiny_clip()
    out = tmp_path / "scores.npz"
    summary = score_shards(shards, clip, out, batch_size=7, index_cache=tmp_path / "index.npz", progress=False)
    assert summary["scored"] == ["cc12m/00000.tar", "laion/00000.tar"] and summary["pairs"] == 48
    scores = ShardScores.load(out)
    index = load_index(shards, cache=tmp_path / "index.npz")
    images = [decode_rgb(index.read(i, "image")) for i in range(len(index))]
    expected = image_text_cosine(clip, images, [index.caption(i) for i in range(len(index))], batch_size=48)
    np.testing.assert_allclose(scores.similarity, expected, atol=1e-5)
    assert scores.model == clip.name and scores.precision == "32-true" and np.array_equal(scores.keys, index.keys)
    # 8 quantile bins over the training set: 48 distinct scores -> 6 pairs at each level 0, 1/7, ..., 1
    np.testing.assert_allclose(scores.edges, quantile_edges(scores.similarity))
    levels, counts = np.unique(scores.coherence(), return_counts=True)
    np.testing.assert_allclose(levels, np.arange(8) / 7, atol=1e-6)
    assert counts.tolist() == [6] * 8
    # a pair's bin follows its rank
    order = np.argsort(scores.similarity)
    np.testing.assert_allclose(scores.coherence()[order], np.repeat(np.arange(8) / 7, 6), atol=1e-6)


def test_scoring_resumes_shard_by_shard(shards, tmp_path, monkeypatch):
    clip, out, cache = tiny_clip(), tmp_path / "scores.npz", tmp_path / "index.npz"
    real = score_shards_module.pair_cosine
    calls = []

    def interrupted(*args, **kwargs):  # the job stops in the second shard's first batch
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt("the job was stopped")
        return real(*args, **kwargs)

    monkeypatch.setattr(score_shards_module, "pair_cosine", interrupted)
    with pytest.raises(KeyboardInterrupt):
        score_shards(shards, clip, out, batch_size=8, index_cache=cache, progress=False)  # 24 pairs: 3 batches
    assert not out.exists()  # nothing half-written: only the finished shard's part
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.npz") if p != cache] == [
        "scores.npz.parts/cc12m/00000.tar.npz"]
    monkeypatch.setattr(score_shards_module, "pair_cosine", real)
    resumed = score_shards(shards, clip, out, index_cache=cache, progress=False)
    assert resumed["scored"] == ["laion/00000.tar"] and resumed["reused"] == ["cc12m/00000.tar"]
    rerun = score_shards(shards, clip, out, index_cache=cache, progress=False)
    assert rerun["scored"] == [] and len(rerun["reused"]) == 2
    fresh = score_shards(shards, clip, tmp_path / "fresh.npz", index_cache=cache, progress=False)
    np.testing.assert_allclose(ShardScores.load(out).similarity, ShardScores.load(fresh["out"]).similarity,
                               atol=1e-6)
    # another scorer, or a changed shard, is scored again
    assert len(score_shards(shards, tiny_clip(seed=1), out, index_cache=cache, progress=False)["scored"]) == 2
    write_shard(shards / "cc12m" / "00000.tar", 0, 20)
    assert score_shards(shards, tiny_clip(seed=1), out, index_cache=cache, progress=False)["scored"] == [
        "cc12m/00000.tar"]


def test_dataset_items_and_batches(shards, tmp_path):
    cache = tmp_path / "index.npz"
    score_shards(shards, tiny_clip(), tmp_path / "scores.npz", index_cache=cache, progress=False)
    data = CaptionShards(shards, tmp_path / "scores.npz", resolution=16, index_cache=cache)
    scores = ShardScores.load(tmp_path / "scores.npz")
    assert len(data) == 48 and np.array_equal(data.coherence, scores.coherence())
    item = data[30]
    key, caption, image, _ = pair(1, 6)
    assert item["key"] == key and item["caption"] == caption
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    colour = torch.tensor(image.getpixel((0, 0)), dtype=torch.float32) / 127.5 - 1  # a flat colour stays itself
    torch.testing.assert_close(item["image"], colour.view(3, 1, 1).expand(3, 16, 16), atol=2 / 127.5, rtol=0)
    assert item["coherence"].dtype == torch.float32 and float(item["coherence"]) == pytest.approx(data.coherence[30])
    assert data.metadata(30) == {"i": 6}
    batch = next(iter(DataLoader(data, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(0))))
    assert batch["image"].shape == (5, 3, 16, 16) and len(batch["caption"]) == 5 and batch["coherence"].shape == (5,)
    # a held-out set binned with the training set's edges
    edges = np.full(7, np.inf)
    assert (CaptionShards(shards, scores, resolution=16, edges=edges, index_cache=cache).coherence == 0).all()


def test_cli_scores_with_an_offline_checkpoint(shards, tmp_path, monkeypatch, capsys):
    import open_clip

    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, TINY_NAME, TINY_CONFIG)
    checkpoint = tmp_path / "tiny.pt"
    torch.save(tiny_clip(seed=5).model.state_dict(), checkpoint)
    args = ["--shards", str(shards), "--model", TINY_NAME, "--accelerator", "cpu", "--num-workers", "2",
            "--batch-size", "16", "--index-cache", str(tmp_path / "index.npz"), "--no-progress"]
    assert score_shards_module.main(args + ["--checkpoint", str(checkpoint)]) == 0
    scores = ShardScores.load(shards / f"scores-{TINY_NAME}.npz")
    assert scores.model == f"open_clip:{TINY_NAME}:tiny.pt" and len(scores.similarity) == 48
    assert scores.precision in ("32-true", "bf16-mixed")
    # missing weights: the message, no traceback, exit status 1
    assert score_shards_module.main(args + ["--checkpoint", str(tmp_path / "absent.pt")]) == 1
    assert f"open_clip model '{TINY_NAME}'" in capsys.readouterr().err


def test_missing_shards_scores_and_keys_are_named(shards, tmp_path):
    cache = tmp_path / "index.npz"
    with pytest.raises(CaptionShardsError, match="not found"):
        load_index(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaptionShardsError, match=r"no \*\.tar shards"):
        load_index(tmp_path / "empty")
    with pytest.raises(CaptionShardsError, match="cad.data.score_shards"):
        CaptionShards(shards, tmp_path / "missing.npz", resolution=16, index_cache=cache)
    out = tmp_path / "scores.npz"
    score_shards(shards, tiny_clip(), out, index_cache=cache, progress=False)
    scores = ShardScores.load(out)
    # a shard added after scoring
    write_shard(shards / "laion" / "00001.tar", 2, 4)
    with pytest.raises(CaptionShardsError, match="laion/00001.tar"):
        CaptionShards(shards, out, resolution=16, index_cache=cache)
    os.remove(shards / "laion" / "00001.tar")
    # a pair without a score (keys in another order are still matched)
    partial = ShardScores(scores.shards, scores.shard_bytes, np.array([23, 24]), np.delete(scores.keys, 3),
                          np.delete(scores.similarity, 3), scores.edges, scores.model, scores.precision)
    shuffled = ShardScores(scores.shards, scores.shard_bytes, scores.counts,
                           np.r_[scores.keys[:24][::-1], scores.keys[24:]],
                           np.r_[scores.similarity[:24][::-1], scores.similarity[24:]], scores.edges, scores.model,
                           scores.precision)
    np.testing.assert_array_equal(CaptionShards(shards, shuffled, resolution=16, index_cache=cache).similarity,
                                  scores.similarity)
    with pytest.raises(CaptionShardsError, match=f"cc12m/00000.tar:{scores.keys[3]}"):
        CaptionShards(shards, partial, resolution=16, index_cache=cache)
    # a shard rewritten since it was scored
    write_shard(shards / "cc12m" / "00000.tar", 0, 20)
    with pytest.raises(CaptionShardsError, match="changed size"):
        CaptionShards(shards, out, resolution=16, index_cache=cache)
