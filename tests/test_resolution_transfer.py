"""Resolution transfer (issue 14): RIN's positional embedding resized over its patch grid, a schedule shift that
lowers the signal-to-noise ratio by the squared side ratio."""
import math

import pytest
import torch

from cad.backbones import build_backbone
from cad.backbones.transfer import interpolate_grid, load_at_resolution
from cad.conditioning import Condition
from cad.diffusion.schedules import get_schedule


def test_a_rin_trained_at_28_continues_at_56_with_its_embedding_resized():
    torch.manual_seed(0)
    small, large = build_backbone("rin_smoke"), build_backbone("rin_smoke", image_size=56)
    assert small.grid == (7, 7) and large.grid == (14, 14)
    load_at_resolution(large, small.state_dict())
    for name, value in small.state_dict().items():
        if name != "data_pos":
            assert torch.equal(large.state_dict()[name], value), name
    assert large.data_pos.shape == (196, small.data_pos.shape[1])
    cond = Condition(label=torch.tensor([1, 2]), label_null=torch.zeros(2, dtype=torch.bool), coherence=torch.ones(2))
    eps, _ = large(torch.randn(2, 1, 56, 56), torch.full((2,), 0.5), cond)
    assert eps.shape == (2, 1, 56, 56) and torch.isfinite(eps).all()


def test_interpolation_keeps_a_smooth_embedding_and_its_layout():
    rows, cols = torch.meshgrid(torch.arange(4.0), torch.arange(6.0), indexing="ij")
    pos = torch.stack([rows.flatten(), cols.flatten()], dim=1)  # (24, 2): each row knows its (row, col)
    same = interpolate_grid(pos, (4, 6), (4, 6))
    torch.testing.assert_close(same, pos)
    up = interpolate_grid(pos, (4, 6), (8, 12)).reshape(8, 12, 2)
    assert (up[1:, :, 0] >= up[:-1, :, 0] - 1e-5).all() and (up[:, 1:, 1] >= up[:, :-1, 1] - 1e-5).all()
    assert up[..., 0].std(dim=1).max() < 1e-4  # the row coordinate does not vary along a row
    with pytest.raises(ValueError, match="not the \\(5, 5\\) grid"):
        interpolate_grid(pos, (5, 5), (10, 10))


def test_the_shift_lowers_the_snr_by_the_squared_side_ratio():
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    base, shifted = get_schedule("sigmoid"), get_schedule("sigmoid", shift=2.0)
    log_snr = lambda g: torch.log(g / (1 - g))  # noqa: E731
    torch.testing.assert_close(log_snr(shifted(t)) - log_snr(base(t)), torch.full_like(t, -2 * math.log(2.0)))
    torch.testing.assert_close(get_schedule("sigmoid", shift=1.0)(t), base(t))
    with pytest.raises(ValueError, match="shift must be > 0"):
        get_schedule("cosine", shift=0.0)


def test_a_run_can_start_from_another_runs_weights(tmp_path):
    from cad.experiment.config import ConfigError, resolve
    from tests.test_class_conditional import make_module

    source = make_module("cad", preset="rin_smoke")
    weights = {k: torch.randn_like(v) for k, v in source.model.state_dict().items()}
    torch.save(weights, tmp_path / "model_ema.pt")
    module = make_module("cad", preset="rin_smoke")
    module.init_weights(torch.load(tmp_path / "model_ema.pt", weights_only=True))
    for name, value in weights.items():
        assert torch.equal(module.model.state_dict()[name], value)
        assert torch.equal(module.sampling_model.state_dict()[name], value)  # the EMA starts there too
    assert resolve("smoke", "mnist", "cad", [f"train.init_from={tmp_path / 'model_ema.pt'}"]).train.init_from
    with pytest.raises(ConfigError, match="train.init_from='/nowhere.pt': no such file"):
        resolve("smoke", "mnist", "cad", ["train.init_from=/nowhere.pt"])


def test_a_dataset_at_another_resolution_trains_and_is_checked():
    """data.resolution=56: the task's image shape, the network's size, the batch resized before noising."""
    from omegaconf import OmegaConf

    from cad.experiment.config import ConfigError, resolve
    from cad.tasks.registry import get_task

    cfg = resolve("smoke", "fashion_mnist", "cad", ["data.resolution=56"], accelerator="cpu")
    task = get_task("class")
    assert task.image_shape(cfg) == (1, 56, 56)
    module = task.build_module(cfg)
    batch = {"image": torch.rand(3, 1, 28, 28) * 2 - 1, "label": torch.tensor([0, 1, 2]),
             "coherence": torch.ones(3)}
    prepared = module.prepare(batch, torch.Generator().manual_seed(0))
    assert prepared["image"].shape == (3, 1, 56, 56)
    loss, per_sample = module.model_step(batch, torch.Generator().manual_seed(0))
    assert per_sample.shape == (3,) and torch.isfinite(loss)
    assert OmegaConf.select(resolve("smoke", "fashion_mnist", "cad", accelerator="cpu"), "data.resolution") is None
    with pytest.raises(ConfigError, match="data.resolution"):
        resolve("smoke", "fashion_mnist", "cad", ["data.resolution=4"], accelerator="cpu")


def test_the_transfer_variant_starts_from_the_plain_variants_run_trained_first(tmp_path, monkeypatch, capsys):
    """conditioning's 56px_transfer (train.init_from=variant:plain): the plain run is trained first when it is not,
    named by its run folder (the same identity on every machine), and the 56 px run starts from its weights."""
    from cad.experiment import cli, stages
    from cad.experiment.config import ConfigError, load_experiment
    from cad.experiment.runs import is_done, run_dirs
    from tests.tiny_runs import TINY

    monkeypatch.setenv("CAD_RESULTS", str(tmp_path))
    monkeypatch.setattr(stages, "sample", lambda *a, **k: None)  # the trainings are what is checked here
    monkeypatch.setattr(stages, "evaluate", lambda *a, **k: {})
    tiny = TINY + ["train.total_steps=8", "train.warmup_steps=1"]  # the transfer trains a quarter: 2 steps
    argv = ["conditioning", "--scale", "smoke", "--datasets", "fashion_mnist", "--variants", "56px_transfer"] + tiny
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    [planned] = cli._configs(load_experiment("conditioning"), "smoke", ["fashion_mnist"], ["cad"], tiny,
                             cli.parse_args(argv), None, ["56px_transfer"])
    name = planned.cfg.train.init_from.removeprefix("run:")
    source = tmp_path / "smoke" / "raw" / "conditioning" / name
    assert name == run_dirs(planned.source, "conditioning").train.name  # the plain variant's run
    assert is_done(source, "train") and (source / "model_ema.pt").is_file()
    assert f"starting from the weights of run:{name}" in out
    transfer = run_dirs(planned.cfg, "conditioning", tmp_path / "smoke" / "raw").train
    assert is_done(transfer, "train") and planned.cfg.train.total_steps == 2 and planned.source.train.total_steps == 8
    (transfer / "train.done").unlink()  # as if the transfer had not been trained: --park carries its source's weights
    assert cli.main(argv + ["--park"]) == 0
    assert str(source / "model_ema.pt") in capsys.readouterr().out.splitlines()
    bad = load_experiment("conditioning")
    bad.variants["56px_transfer"][-1] = "train.init_from=variant:nothing"
    with pytest.raises(ConfigError, match="names no other variant of conditioning; valid: plain"):
        cli._configs(bad, "smoke", ["fashion_mnist"], ["cad"], [], cli.parse_args(argv), None, ["56px_transfer"])
