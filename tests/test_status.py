"""``--status`` says where each run stands from its files alone: the newest checkpoint's step with the time so far and
left, done with its wall time, weights that are not here, and sampled / evaluated per value; it runs nothing."""
import pytest
import torch

from cad.experiment import cli, stages
from cad.experiment.config import resolve
from cad.experiment.runs import run_dirs
from cad.experiment.status import status_lines
from tests.tiny_runs import TINY, train, train_killed_at


def test_a_killed_run_then_a_finished_one(tmp_path, monkeypatch):
    cfg = resolve("smoke", "mnist", "conditional", TINY)
    planned = [cli.Planned(dataset="mnist", method="conditional", value=None, cfg=cfg)]
    dirs = run_dirs(cfg, "x", tmp_path)
    assert status_lines("x", planned, tmp_path)[2] == "  train: not started"

    train_killed_at(cfg, dirs, 5, monkeypatch)
    header, name, train_line, value_line = status_lines("x", planned, tmp_path)
    assert header == "[x] 1 training run, 1 of 1 evaluation to go" and name == f"mnist | conditional | {dirs.train.name}"
    assert train_line.startswith("  train: step 4 of 6 (newest checkpoint), ") and "so far, ~" in train_line
    assert value_line == "  sample not yet, evaluate not yet"

    # a checkpoint written before the wall clock was saved: no estimate of the time left
    checkpoint = dirs.train / "checkpoints" / "step=4.ckpt"
    saved = torch.load(checkpoint, weights_only=False)
    del saved["callbacks"]["_WallClock"]
    torch.save(saved, checkpoint)
    assert status_lines("x", planned, tmp_path)[2] == "  train: step 4 of 6 (newest checkpoint)"

    train(cfg, dirs)
    train_line = status_lines("x", planned, tmp_path)[2]
    assert train_line.startswith("  train: done, 6 steps, ") and "from step 4" in train_line
    # a sample stage killed after one of its batches
    (dirs.sample / "batches").mkdir(parents=True)
    for name in ("batch-a.pt", "tag.txt"):
        (dirs.sample / "batches" / name).write_bytes(b"")
    batches = -(-cfg.sample.num_samples // cfg.sample.batch_size)
    assert status_lines("x", planned, tmp_path)[3] == f"  sample 1 of {batches} batches drawn, evaluate not yet"
    (dirs.train / "model_ema.pt").unlink()
    assert status_lines("x", planned, tmp_path)[2].endswith("its weights are not here: a stage that needs them "
                                                            "trains it again")


@pytest.mark.parametrize("experiment, first_value", [("fig5b", "  value 0: "), ("fig6a", "  value uniform: ")])
def test_the_command_reports_every_value_and_trains_nothing(experiment, first_value, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAD_RESULTS", str(tmp_path))
    monkeypatch.setattr(stages, "train", lambda *a, **k: pytest.fail("--status must not train"))
    assert cli.main([experiment, "--scale", "smoke", "--status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    values = [line for line in lines if line.startswith("  value ")]
    assert lines[0] == f"[{experiment}] 1 training run, {len(values)} of {len(values)} evaluations to go"
    assert len(values) > 1 and values[0].startswith(first_value)
    assert all(line.endswith("sample not yet, evaluate not yet") for line in values)
    assert not (tmp_path / "smoke" / "raw").exists()
