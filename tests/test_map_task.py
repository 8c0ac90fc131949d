"""The semantic-map task (issue 12) on the shared pipeline: its config checks, the coherence maps given at sampling,
the ControlNet module (only the control branch trains, with AdamW; dropout zeroes the whole map), the predicted
training maps, and the base's unconditional pre-training."""
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from cad.conditioning.coherence_maps import canny_edges
from cad.data.map_data import map_noise_stats, one_hot_map, predicted_maps
from cad.data.segmenters import Segmenter
from cad.experiment.config import ConfigError, resolve
from cad.tasks import map_task
from cad.tasks.map_conditional import MapConditionalDiffusion, build_base
from cad.training.pretrain import pretrain_unconditional


@pytest.mark.parametrize("method, overrides, scale, match", [
    ("cad", [], "paper", "paper scale"),
    ("filtered", [], "smoke", "Baseline and CAD"),
    ("weighted", [], "smoke", "Baseline and CAD"),
    ("cad", ["sample.coherence_map=stripes"], "smoke", "coherence_map"),
    ("cad", ["backbone.preset=rin_smoke"], "smoke", "U-Net"),
    ("baseline", ["sample.guidance_scale=2"], "smoke", "no guided branch"),
])
def test_bad_map_configs_fail_before_anything_runs(method, overrides, scale, match):
    with pytest.raises(ConfigError, match=match):
        resolve(scale, "cifar10" if scale == "paper" else "fashion_mnist", method, overrides, task="map",
                accelerator="cpu")


def test_the_coherence_maps_given_at_sampling():
    cfg = resolve("smoke", "fashion_mnist", "cad", task="map", accelerator="cpu")
    indices = [0, 1, 2]
    maps = map_task.requested_maps(cfg, indices)
    assert maps.shape == (3, 32, 64) and (maps == 10).any() and (maps < 10).any()  # objects on a background
    cfg.sample.coherence = 0.7
    assert np.all(map_task.coherence_maps(cfg, indices, maps) == np.float32(0.7))
    cfg.sample.coherence_map = "canny"
    canny = map_task.coherence_maps(cfg, indices, maps)
    assert np.array_equal(canny == 0, np.stack([canny_edges(m) for m in maps])) and canny.max() == 1
    cfg.sample.coherence_map, cfg.sample.coherence = "square", 1.0
    square = map_task.coherence_maps(cfg, indices, maps)
    assert (square[:, 10:22, 26:38] == 0).all() and square.sum() == 3 * (32 * 64 - 144)
    cond = map_task.map_condition(indices, torch.device("cpu"), cfg=cfg, channels=11)
    assert cond.spatial_map.shape == (3, 11, 32, 64) and torch.equal(cond.spatial_map.argmax(1),
                                                                       torch.from_numpy(maps))
    assert cond.coherence_map.shape == (3, 1, 32, 64)


def test_the_blit_map_is_the_own_confidence_left_and_another_canvass_right(monkeypatch):
    cfg = resolve("smoke", "fashion_mnist", "cad", ["sample.coherence_map=blit"], task="map", accelerator="cpu")
    count = len(map_task.test_canvases(map_task.source_splits("fashion_mnist")["test"], "fashion_mnist",
                                       map_task.MAP_SPEC))
    monkeypatch.setattr(map_task, "canvas_confidences",  # canvas i's confidence: i / count everywhere
                        lambda cfg, indices: np.stack([np.full((32, 64), i / count, np.float32) for i in indices]))
    indices = [0, 5, count - 1]
    blit = map_task.coherence_maps(cfg, indices, map_task.requested_maps(cfg, indices))
    for row, i in zip(blit, indices):
        assert (row[:, :32] == np.float32(i / count)).all()
        assert (row[:, 32:] == np.float32(((i + 1) % count) / count)).all()  # the next canvas, wrapping at the end


def test_predicted_maps_are_the_segmenter_argmax_and_max_softmax():
    torch.manual_seed(0)
    segmenter = Segmenter(3, width=8).eval()
    images = np.random.default_rng(0).integers(0, 255, (5, 1, 8, 12), dtype=np.uint8)
    canvases = [{"image": im, "class_map": np.zeros((8, 12), dtype=np.int64)} for im in images]
    classes, confidence = predicted_maps(segmenter, canvases, batch_size=2)
    with torch.no_grad():
        probs = segmenter(torch.from_numpy(images)).softmax(1)
    assert np.array_equal(classes, probs.argmax(1).numpy())
    np.testing.assert_allclose(confidence.astype(np.float32), probs.amax(1).numpy(), rtol=2e-3)
    assert torch.equal(one_hot_map(torch.from_numpy(classes), 4).argmax(1), torch.from_numpy(classes).long())


class _Canvases(list):
    num_classes = 3  # class 3 is the background


def test_the_map_noise_is_measured_over_the_set_and_on_the_object_pixels():
    """Maps right on the canvases a segmenter trained on (the first ones) and wrong later must not read as clean; a
    wrong object class must not hide behind the always-right background."""
    truth = np.full((100, 4, 4), 3, dtype=np.int64)
    truth[:, :2, :2] = 1  # one 2x2 object of class 1 per canvas: 4 object pixels in 16
    predicted = truth.copy()
    predicted[50:, 0, 0] = 2  # the second half gets one of its 4 object pixels wrong
    canvases = _Canvases({"class_map": m} for m in truth)
    stats = map_noise_stats(canvases, predicted.astype(np.uint8), count=10)
    assert stats["relabel_accuracy"] == pytest.approx(1 - 0.25 * 5 / 10)  # 5 of the 10 canvases measured are late
    assert stats["detail"].startswith(f"all pixels {1 - 5 / 160:.3f}; on 10 canvases")
    confidence = np.where(predicted == truth, 0.875, 0.25).astype(np.float16)
    flagged = map_noise_stats(canvases, predicted, confidence, count=10)["detail"]
    assert flagged.endswith("mean coherence on right / wrong object pixels 0.875 / 0.250")
    predicted[:50, 0, 0] = 2  # every canvas wrong on one object pixel
    assert map_noise_stats(canvases, predicted, count=100)["relabel_accuracy"] == pytest.approx(0.75)


@pytest.fixture
def base_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "base.pt"
    torch.save(build_base("unet_smoke", (1, 32, 64)).state_dict(), path)
    return path


def test_only_the_control_branch_trains_and_dropout_zeroes_the_map(base_file):
    cfg = resolve("smoke", "fashion_mnist", "cad", task="map", accelerator="cpu")
    cfg.method.cond_dropout = 0.5
    t = cfg.train
    module = MapConditionalDiffusion(
        backbone="unet_smoke", image_shape=(1, 32, 64), map_channels=11, method=OmegaConf.to_container(cfg.method),
        base_weights=str(base_file), schedule=OmegaConf.to_container(t.schedule), lr=t.lr, betas=tuple(t.betas),
        weight_decay=t.weight_decay, warmup_steps=t.warmup_steps, total_steps=t.total_steps, lr_rate=t.lr_rate,
        ema_decay=t.ema_decay, ema_warmup=t.ema_warmup)
    optimizer = module.configure_optimizers()["optimizer"]
    assert isinstance(optimizer, torch.optim.AdamW)
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not trained & {id(p) for p in module.model.base.parameters()}
    assert trained == {id(p) for p in module.model.parameters() if p.requires_grad}
    batch = {"map": one_hot_map(torch.randint(0, 11, (400, 4, 4)), 11), "coherence_map": torch.rand(400, 1, 4, 4)}
    cond = module.condition(batch, torch.Generator().manual_seed(0))
    dropped = cond.spatial_map.sum((1, 2, 3)) == 0
    assert 0.4 < dropped.float().mean() < 0.6 and (cond.coherence_map[dropped] == 0).all()
    assert torch.equal(cond.spatial_map[~dropped], batch["map"][~dropped])


def test_unconditional_pretraining_lowers_the_loss_on_a_tiny_set():
    torch.manual_seed(0)
    model = build_base("unet_smoke", (1, 16, 32))
    data = torch.rand(8, 1, 16, 32) * 2 - 1
    schedule = {"name": "sigmoid", "shift": 1.0}
    first = pretrain_unconditional(model, lambda i: data[i], 8, steps=10, batch_size=8, lr=1e-3, seed=0,
                                   schedule=schedule)
    later = pretrain_unconditional(model, lambda i: data[i], 8, steps=150, batch_size=8, lr=1e-3, seed=1,
                                   schedule=schedule)
    assert later < 0.8 * first


def test_fig6a_draws_one_grid_of_the_same_maps_under_each_coherence_map(tmp_path, monkeypatch):
    from benchmarks.samples import save_samples
    from cad.experiment import report
    from cad.experiment.config import load_experiment
    from cad.experiment.runs import run_dirs
    from cad.tasks import map_grid

    experiment, drawn = load_experiment("fig6a"), {}
    monkeypatch.setattr(map_grid, "save_coherence_sweep_grid", lambda path, rows: drawn.update(path=path, rows=rows))
    results = []
    for value, kind in enumerate(["uniform", "canny"]):
        cfg = resolve("smoke", "fashion_mnist", "cad", [f"sample.coherence_map={kind}"], task="map", accelerator="cpu")
        dirs = run_dirs(cfg, "fig6a", tmp_path)
        dirs.sample.mkdir(parents=True)
        images = np.full((8, 32, 64, 1), 10 * (value + 1), dtype=np.uint8)  # each run's samples recognisable
        save_samples(dirs.sample / "samples.npz", images, None, np.arange(8), requests=np.arange(8))
        results.append(report.RunResult(dataset="fashion_mnist", method="cad", sweep_value=kind, cfg=cfg, dirs=dirs,
                                        metrics={}))
    task = map_task.MapTask()
    assert task.write_sweep_figures(experiment, results, tmp_path, "fig6a") == [tmp_path / "fig6a-grid.png"]
    labels = [label for label, _ in drawn["rows"]]
    assert labels == ["requested map", "real canvas", "uniform: coherence", "uniform: samples", "canny: coherence",
                      "canny: samples"]
    rows = dict(drawn["rows"])
    n = map_task.GRID_CANVASES
    maps = map_task.requested_maps(results[0].cfg, list(range(n)))
    assert rows["uniform: coherence"].shape == (n, 32, 64) and (rows["uniform: coherence"] == 255).all()
    assert np.array_equal(rows["canny: coherence"] == 0, np.stack([canny_edges(m) for m in maps]))
    assert (rows["uniform: samples"] == 10).all() and (rows["canny: samples"] == 20).all()
    assert task.write_sweep_figures(load_experiment("fig6b"), results, tmp_path, "fig6b") == []  # not a map sweep
    monkeypatch.undo()
    map_grid.save_coherence_sweep_grid(tmp_path / "grid.png", drawn["rows"])
    from PIL import Image

    assert Image.open(tmp_path / "grid.png").size[1] > Image.open(tmp_path / "grid.png").size[0] / 4  # six rows drawn
