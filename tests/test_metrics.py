"""FID, IS, accuracy, CLIPScore and mIoU on tiny synthetic inputs, against reference implementations."""
import numpy as np
import pytest
import torch

from benchmarks.metrics import (
    accuracy,
    clip_score_from_embeddings,
    fid_from_features,
    frechet_distance,
    inception_score,
    mean_iou,
)
from benchmarks.statistics import FeatureStats, feature_statistics


def _random_stats(rng, n, d, shift=0.0, scale=1.0):
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * scale + shift
    s = feature_statistics(x)
    return s.mu, s.sigma


@pytest.mark.parametrize("n,d", [(200, 16), (50, 64)])  # the second has singular covariances (n < d)
def test_frechet_distance_matches_pytorch_fid_and_torch_fidelity(n, d):
    from pytorch_fid.fid_score import calculate_frechet_distance
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(0)
    mu1, s1 = _random_stats(rng, n, d)
    mu2, s2 = _random_stats(rng, n, d, shift=0.3, scale=1.2)
    ours = frechet_distance(mu1, s1, mu2, s2)
    with np.errstate(all="ignore"):
        ref_pf = calculate_frechet_distance(mu1, s1, mu2, s2)
    ref_tf = fid_statistics_to_metric(
        {"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, False
    )["frechet_inception_distance"]
    assert ours == pytest.approx(ref_pf, rel=1e-6)
    assert ours == pytest.approx(ref_tf, rel=1e-6)


def test_fid_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(1).normal(size=(100, 8))
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-8)


def test_fid_closed_form_for_shifted_isotropic_gaussians():
    # ||mu1 - mu2||^2 + tr(I + 4I - 2*2I) = |delta|^2 + d
    d = 5
    assert frechet_distance(np.zeros(d), np.eye(d), np.ones(d), 4 * np.eye(d)) == pytest.approx(d + d)


def test_fid_dimension_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match=r"\(10, 3\).*\(10, 4\)"):
        fid_from_features(np.zeros((10, 3)), np.zeros((10, 4)))


def test_feature_statistics_are_float64_and_unbiased():
    x = np.random.default_rng(2).normal(size=(30, 4)).astype(np.float32)
    s = feature_statistics(x)
    assert isinstance(s, FeatureStats) and s.mu.dtype == np.float64 and s.sigma.dtype == np.float64
    np.testing.assert_allclose(s.sigma, np.cov(x.astype(np.float64), rowvar=False))
    assert s.num == 30 and s.dim == 4


def test_inception_score_matches_torch_fidelity():
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = np.random.default_rng(3).normal(scale=3.0, size=(103, 12))
    ref = isc_features_to_metric(torch.from_numpy(logits), splits=10)
    mean, std = inception_score(logits, splits=10)
    assert mean == pytest.approx(ref["inception_score_mean"], rel=1e-10)
    assert std == pytest.approx(ref["inception_score_std"], rel=1e-8)


def test_inception_score_hand_cases():
    # uniform predictions carry no information: IS = 1; confident, balanced over C classes: IS = C
    assert inception_score(np.zeros((40, 7)), splits=4)[0] == pytest.approx(1.0)
    confident = np.full((40, 4), -1e3)
    confident[np.arange(40), np.arange(40) % 4] = 0.0
    assert inception_score(confident, splits=1, shuffle_seed=None)[0] == pytest.approx(4.0)


def test_inception_score_rejects_too_many_splits():
    with pytest.raises(ValueError, match="splits"):
        inception_score(np.zeros((5, 3)), splits=10)


def test_accuracy_from_logits_and_predictions():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([1, 0, 0, 0])
    assert accuracy(logits, labels) == pytest.approx(0.75)
    assert accuracy(np.array([1, 0, 1, 0]), labels) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="requested_labels"):
        accuracy(logits, labels[:3])


def test_clip_score_from_embeddings_hand_computation():
    img = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    txt = np.array([[2.0, 0.0], [1.0, 0.0], [0.0, -1.0]])
    # cosines 1, 1/sqrt(2), -1 (clipped to 0)
    assert clip_score_from_embeddings(img, txt) == pytest.approx(100 * (1 + 2**-0.5 + 0) / 3)


def test_mean_iou_hand_example():
    target = np.array([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2]]])
    preds = np.array([[[0, 0, 1, 1], [0, 1, 1, 1], [2, 2, 2, 0]]])
    # class 0: inter 3, union 5 -> 0.6; class 1: inter 4, union 5 -> 0.8; class 2: inter 3, union 4 -> 0.75
    assert mean_iou(preds, target, num_classes=3) == pytest.approx((0.6 + 0.8 + 0.75) / 3)
    logits = np.eye(3)[preds].transpose(0, 3, 1, 2)  # (N, C, H, W) one-hot logits give the same answer
    assert mean_iou(logits, target, num_classes=3) == pytest.approx((0.6 + 0.8 + 0.75) / 3)


def test_predicted_class_shares_counts_every_class_and_rejects_empty_input():
    from benchmarks.metrics import predicted_class_shares

    shares = predicted_class_shares(np.array([1, 1, 1, 0]), num_classes=3)
    np.testing.assert_allclose(shares, [0.25, 0.75, 0.0])
    logits = np.array([[0.1, 2.0], [3.0, 0.0]])
    np.testing.assert_allclose(predicted_class_shares(logits, num_classes=2), [0.5, 0.5])
    with pytest.raises(ValueError, match="N > 0"):
        predicted_class_shares(np.array([], dtype=np.int64), num_classes=3)
