"""The paired mIoU bootstrap (benchmarks/paired_miou.py): its pooled counts give torchmetrics' mIoU, and its interval
separates a better run from a worse one and not a run from itself."""
import numpy as np
import pytest

from benchmarks.metrics import mean_iou
from benchmarks.paired_miou import paired_bootstrap, per_sample_counts, pooled_miou


def _maps(rng, n=60, classes=5):
    target = rng.integers(0, classes - 1, (n, 8, 16))  # the last class never occurs: left out of the mean
    return target, classes


def _corrupt(rng, target, share, classes):
    pred = target.copy()
    flip = rng.random(target.shape) < share
    pred[flip] = rng.integers(0, classes - 1, flip.sum())
    return pred


def test_pooled_counts_give_torchmetrics_miou():
    rng = np.random.default_rng(0)
    target, classes = _maps(rng)
    pred = _corrupt(rng, target, 0.4, classes)
    inter, union = per_sample_counts(pred, target, classes)
    assert pooled_miou(inter, union) == pytest.approx(mean_iou(pred, target, num_classes=classes), abs=1e-6)


def test_the_interval_separates_better_predictions_and_not_a_run_from_itself():
    rng = np.random.default_rng(1)
    target, classes = _maps(rng)
    worse = per_sample_counts(_corrupt(rng, target, 0.5, classes), target, classes)
    better = per_sample_counts(_corrupt(rng, target, 0.2, classes), target, classes)
    gain = paired_bootstrap(worse, better, resamples=300)
    assert gain["diff"] > 0 and gain["low"] > 0 and gain["share_above_zero"] == 1.0
    same = paired_bootstrap(worse, worse, resamples=50)
    assert same["diff"] == 0 and same["low"] == same["high"] == 0
    with pytest.raises(ValueError, match="same samples"):
        paired_bootstrap(worse, (better[0][:10], better[1][:10]))


def test_a_method_without_a_finished_run_is_named(tmp_path, monkeypatch):
    from benchmarks import paired_miou
    from cad.experiment import cli

    monkeypatch.setattr(cli, "finished_results", lambda *a, **k: [])
    with pytest.raises(SystemExit, match="no finished fig6b run of 'baseline'.*--methods baseline first"):
        paired_miou.main(["fig6b"])
