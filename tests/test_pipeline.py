"""The staged pipeline on a tiny real run: an interrupted training resumes to the same weights, stages are skipped
once done, and bad input is refused with the valid choices."""
import warnings

import pytest
import torch

from cad import hardware
from cad.experiment import cli, stages
from cad.experiment.config import experiment_choices, load_experiment, resolve
from cad.experiment.runs import is_done, read_done, run_dirs
from cad.tasks.class_conditional import ClassConditionalDiffusion
from tests.tiny_runs import TINY, train, train_killed_at


def test_a_killed_training_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    cfg = resolve("smoke", "mnist", "conditional", TINY)
    reference = train(cfg, run_dirs(cfg, "a", tmp_path / "a"))

    dirs = run_dirs(cfg, "b", tmp_path / "b")
    train_killed_at(cfg, dirs, 3, monkeypatch)
    assert not is_done(dirs.train, "train") and (dirs.train / "checkpoints" / "step=2.ckpt").exists()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = train(cfg, dirs)
    # Lightning knows the loader resumes mid-epoch (cad/experiment/data_order.py) and does not warn otherwise
    assert not [w for w in caught if "not resumable" in str(w.message)]
    assert reference.keys() == resumed.keys()
    for name in reference:
        assert torch.equal(reference[name], resumed[name]), name


def test_a_resumed_trainings_wall_time_counts_the_steps_before_the_kill(tmp_path, monkeypatch):
    cfg = resolve("smoke", "mnist", "conditional", TINY)
    dirs = run_dirs(cfg, "w", tmp_path)
    train_killed_at(cfg, dirs, 3, monkeypatch)
    checkpoint = dirs.train / "checkpoints" / "step=2.ckpt"
    saved = torch.load(checkpoint, weights_only=False)
    before = saved["callbacks"]["_WallClock"]["wall_s"]
    assert before > 0
    train(cfg, dirs)
    marker = read_done(dirs.train, "train")
    assert marker["resumed_from"] == 2 and marker["wall_s_from_step"] == 0 and marker["wall_s"] > before

    # A checkpoint written before the clock was saved: the time counts from the step it resumes at, and says so.
    (dirs.train / "train.done").unlink()
    (dirs.train / "model_ema.pt").unlink()
    for later in (dirs.train / "checkpoints").glob("*.ckpt"):
        later.unlink()
    del saved["callbacks"]["_WallClock"]
    torch.save(saved, checkpoint)
    train(cfg, dirs)
    marker = read_done(dirs.train, "train")
    assert marker["resumed_from"] == 2 and marker["wall_s_from_step"] == 2


def test_a_training_resumed_on_another_machine_names_both_with_their_seconds(tmp_path, monkeypatch):
    cfg = resolve("smoke", "mnist", "conditional", TINY)
    dirs = run_dirs(cfg, "m", tmp_path)
    monkeypatch.setattr(hardware, "machine_name", lambda: "machine A")
    train_killed_at(cfg, dirs, 3, monkeypatch)
    checkpoint = dirs.train / "checkpoints" / "step=2.ckpt"
    clock = torch.load(checkpoint, weights_only=False)["callbacks"]["_WallClock"]
    assert list(clock["machines"]) == ["machine A"] and clock["machines"]["machine A"] == pytest.approx(clock["wall_s"])
    monkeypatch.setattr(hardware, "machine_name", lambda: "machine B")
    train(cfg, dirs)
    marker = read_done(dirs.train, "train")
    assert marker["machine"] == "machine A + machine B"
    assert list(marker["machines"]) == ["machine A", "machine B"]
    assert sum(marker["machines"].values()) == pytest.approx(marker["wall_s"], abs=0.2)

    # A checkpoint that kept its seconds but not its machine (written before machines were recorded): "not recorded".
    for done in (dirs.train / "train.done", dirs.train / "model_ema.pt"):
        done.unlink()
    for later in (dirs.train / "checkpoints").glob("*.ckpt"):
        if later != checkpoint:
            later.unlink()
    saved = torch.load(checkpoint, weights_only=False)
    del saved["callbacks"]["_WallClock"]["machines"]
    torch.save(saved, checkpoint)
    train(cfg, dirs)
    marker = read_done(dirs.train, "train")
    assert marker["machine"] == "not recorded + machine B"
    assert marker["machines"]["not recorded"] == pytest.approx(clock["wall_s"], abs=0.1)


def test_a_training_on_one_machine_keeps_the_plain_marker(tmp_path):
    cfg = resolve("smoke", "mnist", "conditional", TINY)
    dirs = run_dirs(cfg, "one", tmp_path)
    train(cfg, dirs)
    marker = read_done(dirs.train, "train")
    assert "machines" not in marker and " + " not in marker["machine"]


def test_a_nan_loss_names_the_step_and_the_last_checkpoint(tmp_path, monkeypatch):
    cfg = resolve("smoke", "mnist", "conditional", TINY)
    dirs = run_dirs(cfg, "nan", tmp_path)
    original = ClassConditionalDiffusion.model_step

    def nan_at_step_3(self, batch, generator=None):
        loss, per_sample = original(self, batch, generator)
        return (loss * float("nan"), per_sample) if self.global_step == 3 else (loss, per_sample)

    monkeypatch.setattr(ClassConditionalDiffusion, "model_step", nan_at_step_3)
    with pytest.raises(Exception, match=r"step 3.*step=2\.ckpt"):
        stages.train(cfg, dirs, accelerator="cpu", devices=1, num_nodes=1, progress=False)


@pytest.mark.parametrize("argv, message", [
    (["table9"], "valid: " + ", ".join(experiment_choices())),
    (["table5d", "--scale", "huge"], "valid: smoke, cpu, paper"),
    pytest.param(["table5d", "--accelerator", "gpu"], "no CUDA device", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="refused only where there is no GPU")),
])
def test_bad_experiment_or_scale_exits_with_the_valid_ones(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code != 0 and message in capsys.readouterr().err


def test_bad_override_or_method_exits_with_the_valid_ones(capsys):
    assert cli.main(["table5d", "--scale", "smoke", "train.nope=1"]) == 2
    assert "valid keys" in capsys.readouterr().err
    assert cli.main(["table5d", "--scale", "smoke", "--methods", "magic"]) == 2
    assert "valid: baseline, cad" in capsys.readouterr().err
    assert cli.main(["fig5a", "--scale", "smoke", "--datasets", "cifar10"]) == 2
    assert "not part of scale 'smoke'; valid: fashion_mnist, mnist" in capsys.readouterr().err


def test_figures_default_to_the_paper_dataset_and_show_any_dataset_asked_for():
    fig5a, table5d = load_experiment("fig5a"), load_experiment("table5d")
    assert cli.experiment_datasets(fig5a, "cpu", None) == (["mnist"], ["mnist"])
    assert cli.experiment_datasets(fig5a, "cpu", ["fashion_mnist"]) == (["fashion_mnist"], ["mnist", "fashion_mnist"])
    assert cli.experiment_datasets(table5d, "cpu", ["mnist"]) == (["mnist"], ["fashion_mnist", "mnist"])
    assert cli.experiment_datasets(table5d, "paper", None) == (["cifar10", "imagenet64"],) * 2


def test_a_missing_dataset_prints_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAD_RESULTS", str(tmp_path))
    assert cli.main(["table5d", "--scale", "paper", "--datasets", "imagenet64", "--methods", "conditional"]) == 1
    err = capsys.readouterr().err
    assert "imagenet64" in err and "Looked in" in err and "To provide it" in err


def test_committed_results_render_without_weights_and_a_new_stage_retrains(tmp_path, monkeypatch):
    """Results are committed with their done markers but without weights or samples (too large for git)."""
    cfg = resolve("smoke", "mnist", "conditional", TINY)
    dirs = run_dirs(cfg, "a", tmp_path)
    for directory, stage in ((dirs.train, "train"), (dirs.sample, "sample"), (dirs.evaluate, "evaluate")):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{stage}.done").write_text("{}")
    (dirs.evaluate / "metrics.json").write_text('{"fid": 1.5}')
    monkeypatch.setattr(stages, "train", lambda *a, **k: pytest.fail("a finished evaluation must not train"))
    assert stages.run(cfg, dirs, accelerator="cpu", devices=1, num_nodes=1, progress=False) == {"fid": 1.5}
    monkeypatch.undo()
    weights = train(cfg, dirs)  # the done marker without model_ema.pt: trained again, not a FileNotFoundError
    assert weights and (dirs.train / "model_ema.pt").is_file()


@pytest.mark.parametrize("argv, message", [
    (["table5d", "sample.sampler=ddmp"], "sample.sampler='ddmp' is not valid; valid: ddim, ddpm"),
    (["table5d", "--methods", "baseline", "sample.guidance_scale=1"], "has no guided branch"),
    (["fig5b", "sample.guidance_scale=2"], "fig5b sweeps sample.guidance_scale"),
    (["table5d", "train.precision=fp16"], "valid: auto, 32-true, bf16-mixed"),
    (["table5d", "method.loss=weighted"], "a run's method is its file"),
    (["guidance_loss", "--variants", "fancy"], "guidance_loss has the variants plain, aligned; valid: a subset"),
    (["table5d", "--variants", "plain"], "table5d has no variants; valid: a subset of those (none)"),
    (["table5d", "--methods", "cad", "sample.null_label=true"],
     "cond_dropout 0.0, guidance scale 0.0); valid: a method with cond_dropout > 0"),
    (["guidance_loss", "--methods", "cfg", "--values", "3", "sample.null_label=true"], "guidance scale 3.0"),
    (["fig3a", "sample.null_label=true"], "the text task has no null-label sampling"),
])
def test_bad_values_are_refused_before_any_run_folder_exists(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAD_RESULTS", str(tmp_path))
    assert cli.main(argv[:1] + ["--scale", "smoke"] + argv[1:]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_a_typo_in_a_dataset_section_names_the_valid_keys(tmp_path, monkeypatch):
    from cad.experiment import config

    (tmp_path / "scale").mkdir()
    (tmp_path / "task").mkdir()
    (tmp_path / "method").mkdir()
    for name in ("defaults.yaml", "task/class.yaml", "method/cad.yaml"):
        (tmp_path / name).write_text((config.EXPERIMENTS_DIR / name).read_text())
    (tmp_path / "scale" / "odd.yaml").write_text("scale: odd\ndatasets:\n  mnist: {trian: {lr: 1.0}}\n")
    monkeypatch.setattr(config, "EXPERIMENTS_DIR", tmp_path)
    with pytest.raises(config.ConfigError, match=r"datasets\.mnist.*trian.*valid keys: .*train\.lr"):
        config.resolve("odd", "mnist", "cad")


def test_sampling_and_evaluation_follow_the_run_device(tmp_path, monkeypatch):
    """The sample stage puts the model on the run's device and samples there; evaluation gets the same device."""
    cfg = resolve("smoke", "mnist", "conditional", TINY + ["sample.num_samples=4", "sample.batch_size=4",
                                                           "sample.steps=2"])
    dirs = run_dirs(cfg, "dev", tmp_path)
    train(cfg, dirs)
    seen = {}
    original_generate = stages.generate_distributed

    def spy(model, labels, seeds, **kwargs):
        seen["model"] = next(model.parameters()).device
        seen["device"] = torch.device(kwargs["device"])
        seen["precision"] = kwargs["precision"]
        return original_generate(model, labels, seeds, **kwargs)

    monkeypatch.setattr(stages, "generate_distributed", spy)
    stages.sample(cfg, dirs, progress=False, accelerator="cpu")
    assert seen == {"model": torch.device("cpu"), "device": torch.device("cpu"), "precision": cfg.sample.precision}
    module = stages.load_sampling_model(cfg, dirs, device="meta")
    assert {p.device.type for p in module.parameters()} == {"meta"}


@pytest.mark.gpu
def test_every_stage_runs_on_the_gpu(tmp_path):
    cfg = resolve("smoke", "mnist", "conditional", TINY + ["sample.num_samples=8", "sample.batch_size=8"],
                  accelerator="gpu")
    assert cfg.train.precision == "bf16-mixed"
    dirs = run_dirs(cfg, "gpu", tmp_path)
    metrics = stages.run(cfg, dirs, accelerator="gpu", devices=1, num_nodes=1, progress=False)
    assert stages.run_device("gpu").type == "cuda" and "fid" in metrics
    module = stages.load_sampling_model(cfg, dirs, device=stages.run_device("gpu"))
    assert {p.device.type for p in module.parameters()} == {"cuda"}


def test_variants_select_the_runs_of_an_ablation():
    """``--variants aligned`` plans only that variant's runs (one variant per core or session)."""
    experiment = load_experiment("guidance_loss")
    args = cli.parse_args(["guidance_loss", "--scale", "smoke", "--variants", "aligned"])
    every = cli._configs(experiment, "smoke", ["mnist"], ["cfg"], [], args)
    chosen = cli._configs(experiment, "smoke", ["mnist"], ["cfg"], [], args, chosen=args.variants)
    assert {p.variant for p in every} == {"plain", "aligned"}
    assert [p.variant for p in chosen] == ["aligned"] * len(experiment.values_at("smoke"))
    assert all(p.cfg.train.guidance_loss.w_max == 3.0 for p in chosen)


@pytest.mark.parametrize("name", ["guidance_loss", "conditioning", "curve5d", "fig3a", "fig3c", "fig2b", "fig6b",
                                  "fig6a"])
def test_experiments_spread_over_sessions_are_fp32_on_every_cpu(name, monkeypatch):
    """Their sessions land on CPUs with and without native bf16, where `auto` would give a run two identities: the
    class experiments pin fp32 at the cpu scale, the text and map tasks do so for all their experiments."""
    from cad import hardware
    experiment = load_experiment(name)
    monkeypatch.setattr(hardware, "bf16_native", lambda device_type: True)
    assert resolve("cpu", "fashion_mnist", "cad").train.precision == "bf16-mixed"  # `auto` where bf16 is native
    method = experiment.methods[0]
    dataset = experiment.datasets[0] if experiment.datasets else "fashion_mnist"
    cfg = resolve("cpu", dataset, method, experiment.overrides_at("cpu"), task=experiment.task)
    assert (cfg.train.precision, cfg.sample.precision, cfg.evaluate.precision) == ("32-true",) * 3
