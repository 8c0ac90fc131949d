"""The suite's segmentation networks (issue 12): they learn the canvases' class maps and give a per-pixel confidence;
the two roles are different networks."""
import numpy as np
import torch

from cad.conditioning.coherence_maps import confidence_coherence
from cad.data.canvases import CanvasRecipe, CanvasSpec, CaptionedCanvases, VOCABULARIES
from cad.data.segmenters import ROLES, Segmenter, segmentation_miou, train_segmenter
from tests.test_canvases import synthetic_sources


def test_a_segmenter_learns_the_class_maps_and_gives_a_confidence_map():
    torch.manual_seed(0)
    canvases = CaptionedCanvases(synthetic_sources(), VOCABULARIES["fashion_mnist"], CanvasSpec(sizes=(28,)),
                                 length=600)
    model = Segmenter(num_classes=10, width=16)
    before = segmentation_miou(model, canvases, np.arange(500, 600))
    after = train_segmenter(model, canvases, CanvasRecipe(steps=200, batch_size=16, lr=5e-3, eval_size=100),
                            train_indices=np.arange(500), eval_indices=np.arange(500, 600), seed=0)
    assert after > 0.6 and after > before + 0.3
    with torch.no_grad():
        images = torch.from_numpy(np.stack([canvases[i]["image"] for i in range(500, 504)]))
        confidence = confidence_coherence(model(images))
    assert confidence.shape == (4, 1, 32, 64) and confidence.min() >= 1 / 11 and confidence.max() <= 1


def test_the_two_roles_are_different_networks():
    weak, strong = ROLES["confidence"], ROLES["eval"]
    assert weak["width"] < strong["width"] and weak["seed"] != strong["seed"]
