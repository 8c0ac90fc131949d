"""An ablation's table (cad.experiment.ablation): a row per run, the FID change against the first variant at the same
method and guidance, the stages' wall time, and the seed paper's reported effect beside it."""
import json

from cad.experiment import report
from cad.experiment.ablation import ablation_rows
from cad.experiment.config import load_experiment, resolve
from cad.experiment.runs import mark_done, run_dirs


def _run(tmp_path, experiment, variant, value, fid, walls=(600.0, 60.0, 30.0)):
    overrides = experiment.overrides_at("smoke") + list(experiment.variants[variant])
    cfg = resolve("smoke", "fashion_mnist", "cfg", overrides + [f"sample.guidance_scale={value}"])
    dirs = run_dirs(cfg, experiment.name, tmp_path / "raw")
    for (directory, stage), wall in zip(((dirs.train, "train"), (dirs.sample, "sample"), (dirs.evaluate, "evaluate")),
                                        walls):
        directory.mkdir(parents=True, exist_ok=True)
        if wall is not None:
            mark_done(directory, stage, {"wall_s": wall})
    metrics = {"fid": fid, "accuracy": 0.5, "precision": 0.6, "recall": 0.4, "density": 0.7, "coverage": 0.3,
               "meta": {"extractors": {"fid": "inception"}}}
    (dirs.evaluate / "metrics.json").write_text(json.dumps(metrics))
    return report.RunResult(dataset="fashion_mnist", method="cfg", sweep_value=value, cfg=cfg, dirs=dirs,
                            metrics=metrics, variant=variant)


def test_each_variant_is_measured_against_the_first_at_the_same_guidance(tmp_path):
    experiment = load_experiment("guidance_loss")
    results = [_run(tmp_path, experiment, "aligned", 3.0, 30.0), _run(tmp_path, experiment, "plain", 3.0, 40.0),
               _run(tmp_path, experiment, "plain", 0.0, 50.0),
               _run(tmp_path, experiment, "aligned", 0.0, 55.0, walls=(600.0, None, 30.0))]
    rows = ablation_rows(experiment, results)
    assert [(r["variant"], r["value"]) for r in rows] == [("plain", 0.0), ("plain", 3.0), ("aligned", 0.0),
                                                          ("aligned", 3.0)]
    assert rows[0]["fid_change"] == 0.0 and rows[2]["fid_change"] == 10.0 and rows[3]["fid_change"] == -25.0
    assert rows[1]["wall_s"] == 690.0 and rows[2]["wall_s"] is None  # a stage without its wall time: not summed
    assert rows[3]["context"] == experiment.context["aligned"] and rows[0]["context"] == ""


def test_an_ablation_writes_its_table_beside_its_figure(tmp_path):
    experiment = load_experiment("guidance_loss")
    results = [_run(tmp_path, experiment, "plain", 0.0, 50.0), _run(tmp_path, experiment, "aligned", 0.0, 45.0)]
    text = report.write(experiment, "smoke", results, tmp_path)
    table = (tmp_path / "tables" / "guidance_loss.md").read_text()
    assert table in text and (tmp_path / "figures" / "guidance_loss.png").is_file()
    rows = [line for line in table.splitlines() if line.startswith("| Fashion-MNIST")]
    assert len(rows) == 2 and "wall (min)" in table and "-10.0%" in rows[1] and "| 12 |" in rows[1]
    assert experiment.context["aligned"] in rows[1]
    assert (tmp_path / "tables" / "guidance_loss.csv").read_text().count("\n") == 3  # a header and the two runs


def test_a_variant_that_starts_from_another_keeps_the_experiments_own_file_name():
    """conditioning's 56px_transfer (train.init_from=variant:plain, made run:<name> by the CLI) is the experiment as
    written, not a user's override: its outputs are conditioning.*, and naming them resolves no 'variant:' path."""
    from cad.experiment import cli

    experiment = load_experiment("conditioning")
    argv = ["conditioning", "--scale", "smoke"]
    planned = cli._configs(experiment, "smoke", ["fashion_mnist"], ["cad"], [], cli.parse_args(argv), None,
                           ["plain", "56px_transfer"])
    results = [report.RunResult("fashion_mnist", "cad", p.value, p.cfg, None, {"fid": 1.0}, p.variant)
               for p in planned]
    assert results[-1].cfg.train.init_from.startswith("run:fashion_mnist-cad-")
    assert report.output_name(experiment, results) == "conditioning"


def test_variants_of_other_lengths_or_continued_weights_say_their_steps():
    from cad.experiment import cli
    from cad.experiment.ablation import training_steps_note

    experiment = load_experiment("conditioning")
    argv = ["conditioning", "--scale", "cpu"]
    planned = cli._configs(experiment, "cpu", ["fashion_mnist"], ["cad"], [], cli.parse_args(argv), None,
                           ["plain", "augmented", "56px", "56px_transfer", "56px_transfer_unshifted"])
    results = [report.RunResult("fashion_mnist", "cad", p.value, p.cfg, None, {"fid": 1.0}, p.variant)
               for p in planned]
    assert training_steps_note(results) == (
        "1600: plain, augmented; 800: 56px; 400 after 1600 of plain: 56px_transfer, 56px_transfer_unshifted (a row "
        "that continues another run's weights counts its own steps and wall time only)")
    def of(*variants):
        return [r for r in results if r.variant in variants]

    assert training_steps_note(of("plain", "augmented")) is None  # one budget, nothing continued: no note
    assert training_steps_note(of("plain", "56px")) == "1600: plain; 800: 56px"


def test_the_wall_times_name_the_machines_they_were_measured_on(tmp_path):
    from cad.experiment.wall_times import wall_machines
    from cad.hardware import cpu_info, machine_name

    experiment = load_experiment("guidance_loss")
    results = [_run(tmp_path, experiment, "plain", 0.0, 50.0), _run(tmp_path, experiment, "aligned", 0.0, 45.0,
                                                                   walls=(600.0, 60.0, None))]
    assert wall_machines(results) == f"{machine_name()} (5 stages)"
    old = results[0].dirs.train / "train.done"  # a marker written before markers named the machine
    old.write_text(json.dumps({k: v for k, v in json.loads(old.read_text()).items() if k != "machine"}))
    assert wall_machines(results) == f"{machine_name()} (4 stages); not recorded (1 stage)"
    report.write(experiment, "smoke", results, tmp_path)
    table = (tmp_path / "tables" / "guidance_loss.md").read_text()
    assert f"- wall time measured on: {wall_machines(results)}" in table
    assert (cpu_info().get("model name") or "unknown CPU") in machine_name()  # what /proc/cpuinfo calls the CPU


def test_a_wall_time_that_misses_the_steps_before_a_resume_says_from_which_step_it_counts(tmp_path):
    experiment = load_experiment("guidance_loss")
    results = [_run(tmp_path, experiment, "plain", 0.0, 50.0), _run(tmp_path, experiment, "aligned", 0.0, 45.0)]
    for r, marker in zip(results, ({"wall_s": 600.0, "resumed_from": 800, "wall_s_from_step": 0},  # the clock carried
                                   {"wall_s": 600.0, "resumed_from": 800})):  # a marker from before the clock
        mark_done(r.dirs.train, "train", marker)
    assert [r["wall_from_step"] for r in ablation_rows(experiment, results)] == [0, 800]
    report.write(experiment, "smoke", results, tmp_path)
    table = (tmp_path / "tables" / "guidance_loss.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| Fashion-MNIST")]
    assert "| 12 |" in rows[0] and "| 12 (from step 800) |" in rows[1]
    assert "- wall (min) from step k: the training was resumed at step k" in table


def test_the_fid_change_compares_rows_of_one_image_side_and_names_each_sides_reference(tmp_path):
    """A 56 px FID is measured against 56 px real images: the 56 px rows are compared with the first 56 px variant
    that has a run (56px_transfer while 56px has none, then 56px), never with the 28 px plain; the table says which."""
    from cad.experiment import cli
    from cad.experiment.ablation import reference_header, references

    experiment = load_experiment("conditioning")
    planned = cli._configs(experiment, "cpu", ["fashion_mnist"], ["cad"], [], cli.parse_args(["conditioning"]), None,
                           ["plain", "augmented", "56px", "56px_transfer", "56px_transfer_metadata"])
    fids = {"plain": 50.0, "augmented": 60.0, "56px": 80.0, "56px_transfer": 100.0, "56px_transfer_metadata": 120.0}
    results = [report.RunResult("fashion_mnist", "cad", p.value, p.cfg, run_dirs(p.cfg, "conditioning", tmp_path),
                                {"fid": fids[p.variant]}, p.variant) for p in planned if p.value == 0.0]
    without_56px = [r for r in results if r.variant != "56px"]
    change = {r["variant"]: r["fid_change"] for r in ablation_rows(experiment, without_56px)}
    assert change == {"plain": 0.0, "augmented": 20.0, "56px_transfer": 0.0, "56px_transfer_metadata": 20.0}
    assert references(experiment, without_56px) == {28: "plain", 56: "56px_transfer"}
    change = {r["variant"]: r["fid_change"] for r in ablation_rows(experiment, results)}
    assert change["56px_transfer"] == 25.0 and change["56px_transfer_metadata"] == 50.0 and change["56px"] == 0.0
    header, note = reference_header(references(experiment, results))
    assert header == "FID vs reference" and note["FID vs reference"].startswith("per image side, 28 px: plain; 56 px: "
                                                                                "56px (")
    assert reference_header({28: "plain"}) == ("FID vs plain", {})  # one side: the header names its reference
