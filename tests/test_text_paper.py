"""The text task's paper scale wired end to end at tiny size: shards scored by a tiny CLIP, a tiny T5 beside MiniLM's
tokenizer, a tiny SD-style VAE, a tiny COCO folder; config checks, the data, a training step in latent space, sampling
through the run's own code, and the evaluation (Inception FID, CLIPScore by a tiny CLIP)."""
import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("open_clip")
pytest.importorskip("diffusers")

import cad.conditioning.clip_models as clip_models  # noqa: E402
import cad.tasks.text_paper as text_paper  # noqa: E402
from benchmarks.samples import save_samples  # noqa: E402
from cad.backbones.latent_vae import LatentCodec  # noqa: E402
from cad.conditioning.text_encoders import minilm_path  # noqa: E402
from cad.data.score_shards import score_shards  # noqa: E402
from cad.experiment.config import ConfigError, config_hash, resolve, TRAIN_KEYS  # noqa: E402
from cad.experiment.stages import _generate  # noqa: E402
from cad.tasks.registry import get_task  # noqa: E402
from tests.test_caption_shards import write_shard  # noqa: E402
from tests.test_clip_models import tiny_clip  # noqa: E402
from tests.test_coco import write_coco  # noqa: E402

RESOLUTION = 16


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    root = tmp_path_factory.mktemp("paper")
    write_shard(root / "shards" / "00000.tar", 0, 16)
    write_shard(root / "shards" / "00001.tar", 1, 16)
    score_shards(root / "shards", tiny_clip(), root / "scores.npz", batch_size=16, index_cache=root / "index.npz",
                 progress=False)
    write_coco(root / "coco")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = T5Config(vocab_size=tokenizer.vocab_size, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)
    T5EncoderModel(config).save_pretrained(root / "t5")
    tokenizer.save_pretrained(root / "t5")
    LatentCodec.tiny(seed=0).vae.save_pretrained(root / "vae")
    return root


def paper_cfg(folders, method: str = "cad", *extra: str):
    return resolve("paper", "cc12m", method, [
        f"data.shards={folders / 'shards'}", f"data.shard_scores={folders / 'scores.npz'}",
        f"data.coco={folders / 'coco'}", f"backbone.text_encoder={folders / 't5'}",
        f"backbone.latent_vae={folders / 'vae'}", "backbone.preset=rin_text_latent_tiny",
        f"data.resolution={RESOLUTION}", "data.batch_size=4", "sample.num_samples=4", "sample.batch_size=4",
        "sample.sampler=ddim", "sample.steps=2", "evaluate.reference_size=4", "evaluate.batch_size=4",
        "evaluate.prdc_protocol=standard", "evaluate.nearest_k=2", *extra],
        task="text", accelerator="cpu")


@pytest.fixture
def small_coco(monkeypatch):
    monkeypatch.setattr(text_paper, "COCO_SUBSET", 6)  # the tiny COCO folder's "COCO-10K"
    text_paper.coco_subset.cache_clear()


def test_the_paper_config_is_the_authors_latent_setting():
    cfg = resolve("paper", "cc12m", "cad", task="text", accelerator="cpu")
    assert cfg.backbone.preset == "rin_text_latent256" and cfg.backbone.text_encoder == "google/flan-t5-xl"
    assert cfg.backbone.latent_vae and cfg.sample.clip_x0 is True and cfg.sample.num_samples == 10_000
    assert get_task("text").image_shape(cfg) == (3, 256, 256)


def test_the_requests_are_described_per_scale():
    """Table notes and seeds.json say what was asked: COCO captions at the paper scale, canvas captions below."""
    task = get_task("text")
    assert "COCO-10K" in task.seed_rule_at("paper") and "COCO-10K" in task.request_note_at("paper")
    for scale in ("cpu", "smoke"):
        assert "canvas" in task.seed_rule_at(scale) and "canvases" in task.request_note_at(scale)


@pytest.mark.parametrize("override, message", [
    ("data.resolution=100", "multiple of 8"),
    ("backbone.latent_vae=null", "latent space"), ("sample.num_samples=20000", "COCO-10K")])
def test_paper_config_errors_name_the_fix(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve("paper", "cc12m", "cad", [override], task="text", accelerator="cpu")


def test_data_paths_do_not_change_a_runs_identity():
    a = resolve("paper", "cc12m", "cad", ["data.shards=/a", "data.coco=/c"], task="text", accelerator="cpu")
    b = resolve("paper", "cc12m", "cad", ["data.shards=/b", "evaluate.clip_checkpoint=/w.pt"], task="text",
                accelerator="cpu")
    assert config_hash(a, TRAIN_KEYS) == config_hash(b, TRAIN_KEYS)


def test_the_shards_train_the_latent_model_and_filtered_drops_three_bins(folders):
    task = get_task("text")
    cfg = paper_cfg(folders)
    data = task.datamodule(cfg)
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (4, 3, RESOLUTION, RESOLUTION) and len(batch["caption"]) == 4
    assert len(data.train_set) == 32
    module = task.build_module(cfg)
    loss, per_sample = module.model_step(batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and per_sample.shape == (4,)
    assert not any("text_encoder" in k or "codec" in k for k in module.state_dict())  # frozen: not saved
    filtered = task.datamodule(paper_cfg(folders, "cfg_filtered")).train_set
    assert len(filtered) == 20  # 5 of the 8 equal-mass bins of 32 pairs
    assert min(filtered.dataset.coherence[filtered.indices]) == pytest.approx(3 / 7)


def test_samples_are_decoded_images_and_evaluated_on_coco(folders, small_coco, tmp_path, monkeypatch):
    monkeypatch.setenv("CAD_CACHE", str(tmp_path / "cache"))
    task = get_task("text")
    # unclamped: a random tiny model's clamped latents saturate at +-1 and decode to near-identical images, whose
    # 4-sample FID covariance is degenerate; this test is about decoding and evaluation, not the clamp
    cfg = paper_cfg(folders, "cad", "evaluate.clip_checkpoint=unused.pt", "sample.clip_x0=false")
    requests = task.eval_requests(cfg)
    assert requests == text_paper.coco_subset(str(folders / "coco"), RESOLUTION, 6).captions[:4]
    module = task.build_module(cfg)
    images = _generate(module, cfg, requests, [0, 1, 2, 3], progress=False)
    assert images.shape == (4, 3, RESOLUTION, RESOLUTION) and images.abs().max() <= 1.0
    uint8 = ((images.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    path = save_samples(tmp_path / "samples.npz", uint8, None, np.arange(4), captions=np.asarray(requests))
    task.save_grid(tmp_path / "grid.png", uint8, requests, cfg)
    assert Image.open(tmp_path / "grid.png").mode == "RGB"  # colour samples stay in colour
    monkeypatch.setattr(clip_models, "load_clip", lambda name, checkpoint, device="cpu": tiny_clip())
    metrics = task.evaluate(cfg, path, progress=False)
    assert np.isfinite(metrics["fid"]) and metrics["fid"] > 0
    assert 0 <= metrics["clip_score"] <= 100 and 0 <= metrics["clip_score_real"] <= 100
    assert metrics["clip_score"] != metrics["clip_score_real"]
