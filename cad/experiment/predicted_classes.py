"""Which classes the evaluation classifier sees in generated samples, per run: the accuracy and the most frequent class.

    python -m cad.experiment.predicted_classes --dataset fashion_mnist \
        results/raw/table5d/fashion_mnist-*/sample-*/samples.npz

A model that ignores the requested label spreads its samples over the classes (about 1/K each); one that collapses
(the cpu-scale CAD rows, see the README) puts most of them in one class.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.metrics import accuracy, predicted_class_shares
from benchmarks.samples import load_samples
from cad.data.classifiers import load_classifier
from cad.data.registry import get_spec
from cad.tasks.class_task import classifier_preprocess_from


@torch.no_grad()
def classify(images_nhwc: np.ndarray, network: torch.nn.Module, native: int, batch_size: int = 250) -> np.ndarray:
    """The classifier's prediction per image; images generated at another side than the dataset's ``native`` one
    (``data.resolution``) are resized to it first, as the evaluation does."""
    x = torch.from_numpy(images_nhwc).permute(0, 3, 1, 2)
    preprocess = classifier_preprocess_from(x.shape[-1], native)
    return torch.cat([network(preprocess(x[i:i + batch_size])).argmax(1)
                      for i in range(0, len(x), batch_size)]).numpy()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cad.experiment.predicted_classes",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--scale", default="cpu")
    parser.add_argument("samples", nargs="+", help="samples.npz files written by the sample stage")
    args = parser.parse_args(argv)
    spec = get_spec(args.dataset)
    names = spec.class_names
    network = load_classifier(args.dataset, "eval", scale=args.scale).eval()
    print("| samples | accuracy | most predicted class | its share |\n|---|---:|---|---:|")
    for path in args.samples:
        samples = load_samples(path)
        preds = classify(samples["images"], network, spec.image_shape[-1])
        shares = predicted_class_shares(preds, len(names))
        top = int(shares.argmax())
        print(f"| {path} | {accuracy(preds, samples['labels']):.3f} | {names[top]} | {shares[top]:.1%} |")


if __name__ == "__main__":
    main()
