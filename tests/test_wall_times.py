"""Every table's wall-time note (cad.experiment.wall_times): each run's training + sampling + evaluation minutes from
its done markers, saying where a stage went on from earlier work, and the machines they were measured on."""
import json

from cad.experiment import report
from cad.experiment.config import load_experiment, resolve
from cad.experiment.runs import mark_done, run_dirs
from cad.experiment.wall_times import WALL_NOTE, stages_minutes, wall_note
from cad.hardware import machine_name


def _run(tmp_path, method, markers):
    cfg = resolve("smoke", "fashion_mnist", method, [])
    dirs = run_dirs(cfg, "table5d", tmp_path / "raw")
    for (directory, stage), marker in zip(((dirs.train, "train"), (dirs.sample, "sample"),
                                           (dirs.evaluate, "evaluate")), markers):
        directory.mkdir(parents=True, exist_ok=True)
        if marker is not None:
            mark_done(directory, stage, marker)
    metrics = {"fid": 30.0, "accuracy": 0.5, "meta": {"extractors": {"fid": "inception"}}}
    (dirs.evaluate / "metrics.json").write_text(json.dumps(metrics))
    return report.RunResult(dataset="fashion_mnist", method=method, sweep_value=None, cfg=cfg, dirs=dirs,
                            metrics=metrics)


def test_each_run_s_stage_minutes_say_where_they_went_on_from_earlier_work(tmp_path):
    plain = _run(tmp_path, "baseline", [{"wall_s": 600.0}, {"wall_s": 90.0}, {"wall_s": 30.0}])
    resumed = _run(tmp_path, "cad", [{"wall_s": 1200.0, "resumed_from": 800},  # a checkpoint without a clock
                                     {"wall_s": 150.0, "batches_drawn_before": 2}, {}])  # evaluation: no time
    assert stages_minutes(plain) == "10 + 2 + 0"
    assert stages_minutes(resumed) == "20 (from step 800) + 2 (2 batches before) + ?"
    assert wall_note([plain, resumed]) == f"Baseline {stages_minutes(plain)}, CAD {stages_minutes(resumed)}"


def test_a_table_carries_the_wall_times_and_their_machines(tmp_path):
    results = [_run(tmp_path, m, [{"wall_s": 60.0 * (i + 1)}, {"wall_s": 60.0}, {"wall_s": 60.0}])
               for i, m in enumerate(["baseline", "cad"])]
    notes = report.table_notes(results)
    assert notes[WALL_NOTE] == "Baseline 1 + 1 + 1, CAD 2 + 1 + 1"
    assert notes["wall time measured on"] == f"{machine_name()} (6 stages)"  # mark_done names the machine
    assert WALL_NOTE not in report.table_notes(results, walls=False)  # an ablation: a column instead
    report.write(load_experiment("table5d"), "smoke", results, tmp_path)
    assert f"- {WALL_NOTE}: Baseline 1 + 1 + 1, CAD 2 + 1 + 1" in (tmp_path / "tables" / "table5d.md").read_text()
