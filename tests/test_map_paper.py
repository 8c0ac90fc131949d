"""The semantic-map task's paper scale (issue 12) end to end on tiny stand-ins: a fake ADE20K folder, a tiny Stable
Diffusion folder (tiny UNet, text encoder and factor-8 VAE, saved as diffusers / transformers save them) and a tiny
TorchScript segmenter. Checks: the config's named errors, the training batches, a training step, latent sampling
decoded to images through the stages' hooks, and the evaluation's mIoU on hand cases."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from benchmarks.samples import save_samples
from cad.backbones.latent_vae import LatentCodec
from cad.backbones.sd_controlnet import tiny_unet
from cad.conditioning.sd_text import SDTextEncoder
from cad.data.ade20k import save_confidence
from cad.experiment import cli, stages
from cad.experiment.config import ConfigError, TRAIN_KEYS, config_hash, resolve
from cad.experiment.runs import run_dirs
from cad.tasks import map_paper
from cad.tasks.map_task import MapTask

R, WIDTH = 64, 96  # images 96x64: the shorter side is R, the centre crop keeps columns 16..79
NAMES = {"training": ["ADE_train_00000001", "ADE_train_00000002"],
         "validation": ["ADE_val_00000001", "ADE_val_00000002"]}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _fake_ade20k(root):
    """Left half red (annotation class 3), right half black (class 150), one row of class 0 (ignored); the predicted
    map agrees on the left half and says "no class" on the right."""
    rng = np.random.default_rng(0)
    left = np.arange(WIDTH)[None] < WIDTH // 2
    exact = np.where(left, 3, 150).repeat(R, 0).astype(np.uint8)
    exact[0] = 0
    image = np.zeros((R, WIDTH, 3), np.uint8)
    image[:, :WIDTH // 2, 0] = 255
    captions = {}
    for folder, names in NAMES.items():
        for name in names:
            for sub, array in (("images", image), ("annotations", exact)):
                (root / "ADEChallengeData2016" / sub / folder).mkdir(parents=True, exist_ok=True)
                suffix = "jpg" if sub == "images" else "png"
                Image.fromarray(array).save(root / "ADEChallengeData2016" / sub / folder / f"{name}.{suffix}")
            (root / "predicted" / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.where(left, 3, 0).repeat(R, 0).astype(np.uint8)).save(
                root / "predicted" / folder / f"{name}.png")
            save_confidence(root / "confidence" / folder / f"{name}.png", rng.random((R, WIDTH)))
            captions[name] = "a room"
    (root / "captions.json").write_text(json.dumps(captions))


class RedSegmenter(nn.Module):
    """uint8 (B, 3, H, W) -> (B, 150, H/2, W/2): class 3 where the image is red, class 150 elsewhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = nn.functional.avg_pool2d(x[:, :1].float() / 255.0, 2)
        logits = torch.zeros(x.shape[0], 150, x.shape[2] // 2, x.shape[3] // 2)
        logits[:, 2:3] = 10.0 * red
        logits[:, 149:150] = 10.0 * (1.0 - red)
        return logits


def _sd_folder(folder):
    tiny_unet(seed=1).save_pretrained(folder / "unet")
    SDTextEncoder.tiny(seed=2, width=32).save(folder)
    LatentCodec.tiny(0, factor=8).vae.save_pretrained(folder / "vae")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("map_paper")
    _fake_ade20k(root / "ade20k")
    _sd_folder(root / "sd")
    torch.jit.script(RedSegmenter()).save(str(root / "segmenter.pt"))
    return root


def _overrides(files):
    return [
        f"data.ade20k={files / 'ade20k'}", f"backbone.sd_weights={files / 'sd'}",
        f"evaluate.segmenter={files / 'segmenter.pt'}", f"data.resolution={R}", "data.batch_size=2",
        "train.total_steps=2", "train.checkpoint_every=2", "train.grid_every=0", "train.log_every=1",
        "sample.num_samples=2", "sample.batch_size=2", "sample.steps=2", "evaluate.reference_size=2",
        "evaluate.batch_size=2", "evaluate.prdc_protocol=standard", "evaluate.nearest_k=1"]


def _cfg(files, method="cad", extra=()):
    return resolve("paper", "ade20k", method, _overrides(files) + list(extra), task="map", accelerator="cpu")


def test_validate_names_each_bad_value(files):
    with pytest.raises(ConfigError, match="trains on ADE20K.*valid: ade20k"):
        resolve("paper", "cifar10", "cad", task="map", accelerator="cpu")
    for override, message in (("backbone.preset=unet_cpu", "valid: sd_controlnet"),
                              ("data.resolution=100", "multiple of 64"), ("sample.clip_x0=true", "clips latents"),
                              ("evaluate.extractors=[inception,segmenter]", "'segmenter' is not valid")):
        with pytest.raises(ConfigError, match=message):
            _cfg(files, extra=[override])
    with pytest.raises(ConfigError, match="valid: --methods baseline cad"):
        _cfg(files, method="filtered")


def test_paths_are_not_part_of_a_runs_identity(files, tmp_path):
    moved = _cfg(files, extra=[f"data.ade20k={tmp_path}", f"backbone.sd_weights={tmp_path}"])
    assert config_hash(moved, TRAIN_KEYS) == config_hash(_cfg(files), TRAIN_KEYS)


def test_each_missing_file_is_named_with_its_key(files, tmp_path):
    task = MapTask()
    with pytest.raises(ConfigError, match=r"sd_nowhere/unet/config.json not found.*backbone.sd_weights="):
        task.build_module(_cfg(files, extra=[f"backbone.sd_weights={tmp_path / 'sd_nowhere'}"]))
    with pytest.raises(ConfigError, match="ADE20K not found.*data.ade20k="):
        task.datamodule(_cfg(files, extra=[f"data.ade20k={tmp_path}"]))
    for key in ("data.ade20k_predicted", "data.ade20k_confidence", "data.ade20k_captions"):
        with pytest.raises(ConfigError, match=rf"nowhere not found.*set {key}="):
            task.datamodule(_cfg(files, extra=[f"{key}={tmp_path / 'nowhere'}"]))
    with pytest.raises(ConfigError, match=r"nowhere.pt not found.*mIoU segmenter.*evaluate.segmenter="):
        task.evaluate(_cfg(files, extra=[f"evaluate.segmenter={tmp_path / 'nowhere.pt'}"]), tmp_path / "s.npz")
    with pytest.raises(ConfigError, match="validation split holds 2 images"):
        task.eval_requests(_cfg(files), 3)


def test_training_batches_and_a_training_step(files):
    cfg, task = _cfg(files), MapTask()
    data = task.datamodule(cfg)
    assert data.noise_stats["relabel_accuracy"] == pytest.approx(0.5, abs=0.02)  # right half: "no class"
    batch = next(iter(torch.utils.data.DataLoader(data.train_set, batch_size=2)))
    assert batch["image"].shape == (2, 3, R, R) and batch["map"].shape == (2, R, R)
    assert batch["coherence_map"].shape == (2, 1, R, R) and batch["caption"] == ["a room", "a room"]
    assert set(batch["map"].unique().tolist()) == {0, 3}
    module = task.build_module(cfg)
    assert task.image_shape(cfg) == (3, R, R) and module.sample_shape((3, R, R)) == (4, R // 8, R // 8)
    optimizer = module.configure_optimizers()["optimizer"]
    before = module.model.control.controlnet_mid_block.weight.clone()
    loss, per_sample = module.model_step(batch, torch.Generator().manual_seed(0))
    assert per_sample.shape == (2,) and torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    assert not torch.equal(module.model.control.controlnet_mid_block.weight, before)


@pytest.mark.parametrize("method, extra", [("cad", ["sample.coherence_map=confidence", "sample.guidance_scale=2.0"]),
                                           ("baseline", [])])
def test_sampling_draws_latents_and_returns_decoded_images(files, method, extra):
    cfg, task = _cfg(files, method, extra), MapTask()
    module = task.build_module(cfg).eval()
    requests = task.eval_requests(cfg)
    cond = task.condition_fn(cfg)(requests, torch.device("cpu"))
    assert cond.spatial_map.shape == (2, 151, R, R) and cond.tokens.shape == (2, 77, 32)
    assert torch.equal(cond.spatial_map.argmax(1)[:, 1:, :32], torch.full((2, R - 1, 32), 3))  # the annotation
    assert (cond.coherence_map is None) == (method == "baseline")
    images = stages._generate(module, cfg, requests, [0, 1], progress=False)
    assert images.shape == (2, 3, R, R) and images.abs().max() <= 1.0
    again = stages._generate(module, cfg, requests[1:], [1], progress=False)
    torch.testing.assert_close(again, images[1:], rtol=0, atol=1e-5)  # a sample depends on its seed only


def test_coherence_maps_at_sampling(files):
    val = map_paper.ade20k_split(_cfg(files), "validation")
    items = [val[0]]
    square = map_paper.coherence_maps(_cfg(files, extra=["sample.coherence_map=square"]), items)[0]
    side = round(R * map_paper.SQUARE_SHARE)
    assert square.sum() == R * R - side * side and square[R // 2, R // 2] == 0
    canny = map_paper.coherence_maps(_cfg(files, extra=["sample.coherence_map=canny"]), items)[0]
    assert canny[R // 2, 31:33].min() == 0 and canny[R // 2, 5] == 1  # low on the class boundary only
    confidence = map_paper.coherence_maps(_cfg(files, extra=["sample.coherence_map=confidence"]), items)[0]
    np.testing.assert_array_equal(confidence, items[0]["coherence_map"][0].numpy())
    uniform = map_paper.coherence_maps(_cfg(files, extra=["sample.coherence=0.3"]), items)[0]
    assert np.allclose(uniform, 0.3)


def test_miou_ignores_unlabelled_pixels_and_averages_over_present_classes():
    target = np.array([[[0, 3, 3, 150]]])
    assert map_paper.ade20k_miou(np.array([[[150, 3, 3, 150]]]), target) == pytest.approx(100.0)
    # class 3: IoU 1/2 (one of two pixels, no false positive); class 150: IoU 1/2 (one false positive)
    assert map_paper.ade20k_miou(np.array([[[7, 3, 150, 150]]]), target) == pytest.approx(50.0)


def _features(images):
    return {"features": images.float().mean(dim=(2, 3))}


def test_evaluate_scores_the_requested_annotations(files, tmp_path, monkeypatch):
    """Samples that are the real validation images score mIoU 100; their colours swapped, 0."""
    monkeypatch.setenv("CAD_CACHE", str(tmp_path / "cache"))
    import benchmarks.features

    class Mean:
        name, tag, provides_logits = "mean-colour", "mean-colour", False
        __call__ = staticmethod(_features)

    monkeypatch.setattr(benchmarks.features, "build_extractor", lambda name, **kw: Mean())
    cfg = _cfg(files)
    real = np.stack([((map_paper.ade20k_split(cfg, "validation")[i]["image"] + 1) * 127.5).round().byte()
                     .permute(1, 2, 0).numpy() for i in (0, 1)])
    for images, expected in ((real, 100.0), (255 - real, 0.0)):
        save_samples(tmp_path / "samples.npz", images, None, np.arange(2), requests=np.array([1, 0]))
        metrics = MapTask().evaluate(cfg, tmp_path / "samples.npz", device="cpu", progress=False)
        assert metrics["miou"] == pytest.approx(expected) and metrics["miou_real"] == pytest.approx(100.0)
        assert "fid" in metrics and "segmenter.pt" in metrics["meta"]["miou_segmenter"]


def test_fig6b_at_the_paper_scale_runs_through_the_command_line(files, tmp_path, monkeypatch):
    """``./reproduce.sh fig6b --scale paper`` with tiny overrides: train -> sample -> evaluate -> the table."""
    monkeypatch.setenv("CAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CAD_RESULTS", str(tmp_path / "results"))
    import benchmarks.features

    class Mean:
        name, tag, provides_logits = "mean-colour", "mean-colour", False
        __call__ = staticmethod(_features)

    monkeypatch.setattr(benchmarks.features, "build_extractor", lambda name, **kw: Mean())
    assert cli.main(["fig6b", "--scale", "paper", "--methods", "cad", "--accelerator", "cpu", "--no-progress",
                     *_overrides(files)]) == 0
    cfg = _cfg(files)
    dirs = run_dirs(cfg, "fig6b", tmp_path / "results" / "raw")
    metrics = json.loads((dirs.evaluate / "metrics.json").read_text())
    assert {"fid", "miou", "miou_real"} <= set(metrics) and metrics["miou_real"] == pytest.approx(100.0)
    assert (dirs.sample / "grid.png").is_file() and (dirs.train / "noise.json").is_file()
    (table,) = (tmp_path / "results" / "tables").glob("fig6b-*.md")  # named by the tiny overrides, not the paths
    assert "sd_weights" not in table.name and "ADE20K" in table.read_text()
    # the paper scale's requests are ADE20K's validation maps, not the canvases of the cpu scale, and say so
    assert "ADE20K validation" in json.loads((dirs.sample / "seeds.json").read_text())["rule"]
    assert "the ADE20K validation maps" in table.read_text() and "canvases" not in table.read_text()
