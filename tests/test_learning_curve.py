"""The learning curve (issue 13, part 4): EMA snapshots of one long run, sampled at ``sample.train_step``."""
import shutil

import pytest
import torch

from cad.experiment import cli, stages
from cad.experiment.config import TRAIN_KEYS, ConfigError, config_hash, load_experiment, resolve
from cad.experiment.runs import is_done, run_dirs
from tests.tiny_runs import TINY

def _train(cfg, dirs):
    stages.train(cfg, dirs, accelerator="cpu", devices=1, num_nodes=1, progress=False)


def test_a_snapshot_run_goes_on_to_the_uninterrupted_weights(tmp_path, capsys):
    full = resolve("smoke", "mnist", "conditional", TINY)
    _train(full, run_dirs(full, "a", tmp_path / "a"))
    reference = torch.load(run_dirs(full, "a", tmp_path / "a").train / "model_ema.pt", weights_only=True)

    early = resolve("smoke", "mnist", "conditional", TINY + ["sample.train_step=3"])
    dirs = run_dirs(early, "b", tmp_path / "b")
    assert dirs.train == run_dirs(full, "b", tmp_path / "b").train  # one run; the snapshot is a sampling choice
    _train(early, dirs)
    snapshot = torch.load(dirs.train / "model_ema-step3.pt", weights_only=True)
    assert is_done(dirs.train, "snapshot-3") and not is_done(dirs.train, "train")
    _train(early, dirs)
    assert "snapshot at step 3 done already" in capsys.readouterr().out

    _train(full, dirs)  # goes on from the step-3 checkpoint
    resumed = torch.load(dirs.train / "model_ema.pt", weights_only=True)
    assert is_done(dirs.train, "train")
    for name in reference:
        assert torch.equal(reference[name], resumed[name]), name
    assert any(not torch.equal(snapshot[n], resumed[n]) for n in snapshot)
    # The sampling stage reads the snapshot the config names.
    model = stages.load_sampling_model(early, dirs).model.state_dict()
    assert all(torch.equal(model[n], snapshot[n]) for n in snapshot)

    # A finished run without the snapshot (another experiment's run of the same config, or a committed one): the
    # snapshot is trained again, from the newest checkpoint before it or from step 0, to the same weights.
    for lose_checkpoints in (False, True):
        (dirs.train / "model_ema-step3.pt").unlink()
        if lose_checkpoints:
            shutil.rmtree(dirs.train / "checkpoints")
        _train(early, dirs)
        again = torch.load(dirs.train / "model_ema-step3.pt", weights_only=True)
        assert all(torch.equal(again[n], snapshot[n]) for n in snapshot)
        assert is_done(dirs.train, "train")


@pytest.mark.parametrize("step", [0, 7, 2.5])
def test_a_snapshot_step_outside_the_run_is_refused(step):
    valid = r"valid: null .* \[1, train.total_steps=6\]"
    with pytest.raises(ConfigError, match=r"sample.train_step=.* is not valid; " + valid):
        resolve("smoke", "mnist", "cad", TINY + [f"sample.train_step={step}"])


def test_curve5d_samples_one_long_run_per_method_at_each_scale():
    experiment = load_experiment("curve5d")
    args = cli.parse_args(["curve5d"])
    configs = cli._configs(experiment, "cpu", ["fashion_mnist"], ["baseline", "cad"], [], args)
    assert [r.value for r in configs if r.method == "cad"] == [2000, 4000, 8000, 16000]
    for method in ("baseline", "cad"):
        cfgs = [r.cfg for r in configs if r.method == method]
        assert {c.train.total_steps for c in cfgs} == {16000}
        assert len({config_hash(c, TRAIN_KEYS) for c in cfgs}) == 1
    first = cli._configs(experiment, "cpu", ["fashion_mnist"], ["cad"], [], args, values=[2000.0, 4000.0])
    assert [r.cfg.sample.train_step for r in first] == [2000, 4000]
    with pytest.raises(ConfigError, match=r"--values 3000: curve5d sweeps sample.train_step over \[2000, 4000"):
        cli._configs(experiment, "cpu", ["fashion_mnist"], ["cad"], [], args, values=[3000.0])
    with pytest.raises(ConfigError, match="sample.train_step=2000: curve5d sweeps"):
        cli._configs(experiment, "cpu", ["fashion_mnist"], ["cad"], ["sample.train_step=2000"], args)


def test_render_only_runs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "results_dir", lambda: tmp_path)
    assert cli.main(["curve5d", "--scale", "smoke", "--render-only"]) == 0
    assert "no finished run to show yet" in capsys.readouterr().out
    assert not any(tmp_path.rglob("*"))


def test_values_names_a_named_sweeps_subset():
    """fig6a sweeps coherence-map kinds by name: ``--values canny blit`` runs those two, one per core or session."""
    args = cli.parse_args(["fig6a", "--values", "canny", "blit"])
    assert args.values == ["canny", "blit"]
    experiment = load_experiment("fig6a")
    configs = cli._configs(experiment, "cpu", ["fashion_mnist"], ["cad"], [], args, values=args.values)
    assert [r.cfg.sample.coherence_map for r in configs] == ["canny", "blit"]
    with pytest.raises(ConfigError, match=r"--values sobel: fig6a sweeps sample.coherence_map over \['uniform'"):
        cli._configs(experiment, "cpu", ["fashion_mnist"], ["cad"], [], args, values=["sobel"])
    assert cli.parse_args(["curve5d", "--values", "2000"]).values == [2000.0]
