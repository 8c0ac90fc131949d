"""Config composition, run identity and the Table 5(d) method files."""
import pytest

from cad.experiment.config import (ConfigError, TRAIN_KEYS, SAMPLE_KEYS, config_hash, experiment_choices,
                                   load_experiment, resolve, scale_datasets)
from cad.experiment.runs import is_done, mark_done, read_done, run_dirs
from cad.tasks.methods import Method


def test_every_experiment_and_scale_resolves_for_every_method():
    for name in experiment_choices():
        experiment = load_experiment(name)
        for scale in ("smoke", "cpu", "paper"):
            for dataset in scale_datasets(scale):
                for method in experiment.methods:
                    cfg = resolve(scale, dataset, method)
                    Method(**cfg.method)  # validates the method file
                    assert cfg.dataset == dataset and cfg.scale == scale


def test_dataset_section_overrides_the_scale_defaults():
    cifar = resolve("paper", "cifar10", "cad")
    imagenet = resolve("paper", "imagenet64", "cad")
    assert (cifar.backbone.preset, cifar.train.schedule.name, cifar.train.lr) == ("rin_cifar10", "sigmoid", 3e-3)
    assert (imagenet.backbone.preset, imagenet.train.schedule.name, imagenet.train.lr) == (
        "rin_imagenet64", "linear", 2e-3)
    assert (imagenet.data.batch_size, imagenet.train.lr_rate) == (1024, 0.7)


def test_stand_ins_are_recorded():
    assert resolve("cpu", "fashion_mnist", "cad").stands_in_for == "CIFAR-10"
    assert resolve("cpu", "mnist", "cad").stands_in_for == "ImageNet-64"
    assert resolve("paper", "cifar10", "cad").stands_in_for is None


def test_figures_run_on_the_paper_dataset_or_its_stand_in():
    # The paper draws Figure 5(a)/(b) for CAD on ImageNet: imagenet64 at the paper scale, MNIST (its stand-in) below.
    for name in ("fig5a", "fig5b"):
        experiment = load_experiment(name)
        assert scale_datasets("paper", experiment.paper_datasets) == ["imagenet64"]
        assert scale_datasets("cpu", experiment.paper_datasets) == ["mnist"]
        assert scale_datasets("smoke", experiment.paper_datasets) == ["mnist"]
    # Table 5(d): both class datasets (or their stand-ins), never the text task's shards
    table5d = load_experiment("table5d").paper_datasets
    assert scale_datasets("paper", table5d) == ["cifar10", "imagenet64"] and "cc12m" in scale_datasets("paper")
    assert scale_datasets("cpu", table5d) == scale_datasets("cpu") == ["fashion_mnist", "mnist"]
    assert scale_datasets("paper", ["CIFAR-10"]) == ["cifar10"]


def test_overrides_apply_and_unknown_keys_name_the_valid_ones():
    assert resolve("smoke", "mnist", "cad", ["train.total_steps=3"]).train.total_steps == 3
    with pytest.raises(ConfigError, match="valid keys: .*train.total_steps"):
        resolve("smoke", "mnist", "cad", ["train.total_stepz=3"])


def test_a_steps_factor_scales_whatever_sets_the_steps_and_keeps_other_runs_identities():
    assert resolve("cpu", "fashion_mnist", "cad", ["train.total_steps_factor=0.25"]).train.total_steps == 400
    halved = resolve("smoke", "mnist", "cad", ["train.total_steps=30", "train.total_steps_factor=0.5"])
    assert halved.train.total_steps == 15
    base = resolve("smoke", "mnist", "cad")
    explicit = resolve("smoke", "mnist", "cad", ["train.total_steps_factor=1.0"])
    assert config_hash(base, TRAIN_KEYS) == config_hash(explicit, TRAIN_KEYS)
    # the same steps reached by a factor are another run: its config says how they were chosen
    halved = resolve("smoke", "mnist", "cad", ["train.total_steps=80", "train.total_steps_factor=0.5"])
    assert halved.train.total_steps == base.train.total_steps == 40
    assert config_hash(base, TRAIN_KEYS) != config_hash(halved, TRAIN_KEYS)
    with pytest.raises(ConfigError, match="leaves 1 of train.total_steps=4, not more than train.warmup_steps=1"):
        resolve("smoke", "mnist", "cad", ["train.total_steps=4", "train.warmup_steps=1",
                                          "train.total_steps_factor=0.25"])
    for bad in ("0", "-1", "true", "fast"):
        with pytest.raises(ConfigError, match="train.total_steps_factor=.* valid: a number > 0"):
            resolve("smoke", "mnist", "cad", [f"train.total_steps_factor={bad}"])


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ConfigError, match="valid: .*cad"):
        resolve("smoke", "mnist", "bogus")
    with pytest.raises(ConfigError, match="valid: .*fashion_mnist"):
        resolve("smoke", "cifar10", "cad")
    with pytest.raises(ConfigError, match="valid: .*table5d"):
        load_experiment("table9z")


def test_run_identity_depends_on_the_right_sections(tmp_path):
    base = resolve("smoke", "mnist", "cad")
    more_samples = resolve("smoke", "mnist", "cad", ["sample.num_samples=7"])
    longer = resolve("smoke", "mnist", "cad", ["train.total_steps=7"])
    assert config_hash(base, TRAIN_KEYS) == config_hash(more_samples, TRAIN_KEYS)
    assert config_hash(base, TRAIN_KEYS + SAMPLE_KEYS) != config_hash(more_samples, TRAIN_KEYS + SAMPLE_KEYS)
    assert config_hash(base, TRAIN_KEYS) != config_hash(longer, TRAIN_KEYS)
    a, b = run_dirs(base, "table5d", tmp_path), run_dirs(more_samples, "fig5a", tmp_path)
    assert a.train != b.train  # nothing finished yet: each experiment would train in its own folder
    mark_done(a.train, "train", {"steps": 1})
    assert run_dirs(more_samples, "fig5a", tmp_path).train == a.train  # a finished training run is reused
    assert is_done(a.train, "train") and read_done(a.train, "train")["steps"] == 1
    assert not is_done(a.sample, "sample")


@pytest.mark.parametrize("changes, message", [
    ({"labels": "dirty"}, "labels"),
    ({"loss": "median"}, "loss"),
    ({"guidance": "cacfg", "use_coherence": False}, "CA-CFG"),
    ({"guidance": "cfg", "cond_dropout": 0.0}, "cond_dropout"),
])
def test_bad_method_files_are_rejected(changes, message):
    fields = dict(name="x", labels="noisy", use_coherence=True, loss="mean", cond_dropout=0.1,
                  filter_threshold=None, guidance="none")
    with pytest.raises(ValueError, match=message):
        Method(**{**fields, **changes})
