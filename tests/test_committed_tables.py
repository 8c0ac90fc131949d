"""The committed cpu-scale table and figures are a pure function of the committed run files: rendering them again
from results/raw/ gives results/tables/ and results/figures/ byte for byte, and trains nothing."""
import argparse

import pytest

from cad.experiment import cli, report, stages
from cad.experiment.config import load_experiment
from cad.paths import results_dir

# The committed runs were made with bf16 autocast for training and features: pinned here so that the test finds them
# on a CPU where precision 'auto' would choose fp32 (a different run).
COMMITTED_PRECISION = ["train.precision=bf16-mixed", "evaluate.precision=bf16-mixed"]


@pytest.mark.parametrize("name, outputs", [("table5d", ["tables/table5d.md", "tables/table5d.csv",
                                                          "tables/table5d.tex"]),
                                           ("fig5a", ["figures/fig5a.csv"]), ("fig5b", ["figures/fig5b.csv"])])
def test_committed_results_render_to_the_committed_files(name, outputs, tmp_path, monkeypatch):
    monkeypatch.setattr(stages, "train", lambda *a, **k: pytest.fail("rendering must not train"))
    experiment = load_experiment(name)
    _, shown = cli.experiment_datasets(experiment, "cpu", None)
    args = argparse.Namespace(accelerator="cpu", devices=1)
    configs = cli._configs(experiment, "cpu", shown, experiment.methods, COMMITTED_PRECISION, args)
    results = cli.finished_results(experiment, configs, results_dir())
    assert len(results) == len(configs), "every committed run is found by its hash"
    report.write(experiment, "cpu", results, tmp_path)
    for output in outputs:
        assert (tmp_path / output).read_bytes() == (results_dir() / output).read_bytes(), output


def test_the_committed_rin_rows_render_to_their_committed_table(tmp_path, monkeypatch):
    """table5d-rin_cpu: Baseline and CAD on the RIN, trained in fp32 (issue 13), found among all of the table's runs."""
    monkeypatch.setattr(stages, "train", lambda *a, **k: pytest.fail("rendering must not train"))
    experiment = load_experiment("table5d")
    _, shown = cli.experiment_datasets(experiment, "cpu", ["fashion_mnist"])
    args = argparse.Namespace(accelerator="cpu", devices=1)
    overrides = ["backbone.preset=rin_cpu", "train.precision=32-true", "evaluate.precision=bf16-mixed"]
    configs = cli._configs(experiment, "cpu", shown, experiment.methods, overrides, args)
    results = cli.finished_results(experiment, configs, results_dir())
    assert sorted(r.method for r in results) == ["baseline", "cad"]
    report.write(experiment, "cpu", results, tmp_path)
    for suffix in ("md", "csv", "tex"):
        output = f"tables/table5d-rin_cpu.{suffix}"
        assert (tmp_path / output).read_bytes() == (results_dir() / output).read_bytes(), output


@pytest.mark.parametrize("methods, values, overrides, stem", [
    (["cfg", "cad"], None, [], "guidance_loss"),
    (["cfg"], [0.0], ["sample.null_label=true"], "guidance_loss-null_label-True"),  # the unconditional model
    (["cfg"], [1.0, 3.0], ["sample.steps=10"], "guidance_loss-steps-10"),  # fewer sampling steps
    (["cad"], [0.0], ["sample.coherence=0"], "guidance_loss-coherence-0")])  # CAD told its labels mean nothing
def test_the_committed_guidance_loss_points_render_to_their_committed_files(methods, values, overrides, stem,
                                                                            tmp_path, monkeypatch):
    """The guidance_loss ablation and its side measurements (README "Guidance-aligned training") are committed point
    by point as sessions finish them (fp32, pinned by the experiment): each one's figure CSV and table render again
    from its finished runs alone, to files named by the override."""
    monkeypatch.setattr(stages, "train", lambda *a, **k: pytest.fail("rendering must not train"))
    experiment = load_experiment("guidance_loss")
    _, shown = cli.experiment_datasets(experiment, "cpu", None)
    args = argparse.Namespace(accelerator="cpu", devices=1)
    configs = cli._configs(experiment, "cpu", shown, methods, overrides, args, values)
    results = cli.finished_results(experiment, configs, results_dir())
    assert results, "the committed guidance_loss points are found by their hashes"
    assert report.output_name(experiment, results) == stem
    report.write(experiment, "cpu", results, tmp_path)
    for output in (f"figures/{stem}.csv", f"tables/{stem}.md", f"tables/{stem}.csv"):
        assert (tmp_path / output).read_bytes() == (results_dir() / output).read_bytes(), output


def test_the_committed_conditioning_rows_render_to_their_committed_files(tmp_path, monkeypatch):
    """The conditioning ablation (issue 14) is committed variant by variant as sessions finish them: its table and
    figure CSV render again from the finished runs alone, `plain` (the guidance_loss ablation's plain CAD run, found
    by its hash) among them as the reference of every 28 px FID change."""
    monkeypatch.setattr(stages, "train", lambda *a, **k: pytest.fail("rendering must not train"))
    experiment = load_experiment("conditioning")
    _, shown = cli.experiment_datasets(experiment, "cpu", None)
    args = argparse.Namespace(accelerator="cpu", devices=1)
    configs = cli._configs(experiment, "cpu", shown, experiment.methods, [], args)
    results = cli.finished_results(experiment, configs, results_dir())
    assert {"plain", "coherence_metadata", "augmented"} <= {r.variant for r in results}
    report.write(experiment, "cpu", results, tmp_path)
    for output in ("figures/conditioning.csv", "tables/conditioning.md", "tables/conditioning.csv"):
        assert (tmp_path / output).read_bytes() == (results_dir() / output).read_bytes(), output


TEXT_METHODS = sorted(["cfg", "cfg_weighted", "cfg_filtered", "cad"] * 5)


@pytest.mark.parametrize("name, methods, outputs", [
    ("fig6b", ["baseline", "cad"], ["tables/fig6b.md", "tables/fig6b.csv", "tables/fig6b.tex"]),
    ("fig6a", ["cad"] * 5, ["figures/fig6a.csv"]),  # one run per coherence map; its grid is drawn from the samples
    ("fig3a", TEXT_METHODS, ["tables/fig3a.md", "tables/fig3a.csv", "tables/fig3a.tex", "tables/fig3a-sweep.csv"]),
    ("fig3c", TEXT_METHODS, ["figures/fig3c.csv"])])
def test_the_committed_map_and_text_results_render_to_their_committed_files(name, methods, outputs, tmp_path,
                                                                           monkeypatch):
    """Figure 6(b) and 6(a) (issue 12: the ControlNets) and Figure 3(a) and 3(c) (issue 11: the text RINs, 5 guidance
    scales each), fp32 as the map and text tasks pin it at the cpu scale."""
    monkeypatch.setattr(stages, "train", lambda *a, **k: pytest.fail("rendering must not train"))
    experiment = load_experiment(name)
    _, shown = cli.experiment_datasets(experiment, "cpu", None)
    configs = cli._configs(experiment, "cpu", shown, experiment.methods, [],
                           argparse.Namespace(accelerator="cpu", devices=1))
    results = cli.finished_results(experiment, configs, results_dir())
    assert sorted(r.method for r in results) == methods
    report.write(experiment, "cpu", results, tmp_path)
    for output in outputs:
        assert (tmp_path / output).read_bytes() == (results_dir() / output).read_bytes(), output
