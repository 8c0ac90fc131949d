"""The collapse tool (``python -m cad.experiment.predicted_classes``) reads samples of any ``data.resolution``."""
import numpy as np
import pytest
import torch

from cad.experiment.predicted_classes import classify


def _left_or_right_network(side: int) -> torch.nn.Module:
    """Class 0 when the left half of a ``side`` px image is brighter than its right half, else class 1."""
    weight = torch.zeros(2, side, side)
    weight[0, :, : side // 2], weight[1, :, side // 2:] = 1.0, 1.0
    linear = torch.nn.Linear(side * side, 2, bias=False)
    linear.weight.data = weight.reshape(2, -1)
    return torch.nn.Sequential(torch.nn.Flatten(), linear)


@pytest.mark.parametrize("generated_side", [28, 56])
def test_classify_resizes_samples_to_the_classifier_side(generated_side):
    labels = np.array([0, 1, 1, 0, 1])
    images = np.zeros((len(labels), generated_side, generated_side, 1), dtype=np.uint8)
    for image, label in zip(images, labels):
        half = slice(0, generated_side // 2) if label == 0 else slice(generated_side // 2, generated_side)
        image[:, half] = 255
    preds = classify(images, _left_or_right_network(28), native=28, batch_size=2)
    np.testing.assert_array_equal(preds, labels)
