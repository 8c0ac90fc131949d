"""Train and cache both classifiers of a dataset, then build its noisy labels; print what the README reports.

    python -m cad.data.prepare --dataset fashion_mnist --scale cpu
    python -m cad.data.prepare --dataset mnist --scale cpu --temperature 2.0
"""
from __future__ import annotations

import argparse
import json
import logging
import time

import torch

from cad.data.classifiers import ROLES, classifier_id, classifier_test_accuracy, load_classifier
from cad.data.datamodule import noisy_training_labels
from cad.data.noise import AUTHORS_SEED, DEFAULT_TARGET_RELABEL_ACCURACY, PROTOCOLS, NoiseConfig, coherence_by_class
from cad.data.registry import DATASETS, get_spec
from cad.data.sources import load_splits


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cad.data.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--scale", default="cpu", choices=("smoke", "cpu", "paper"))
    parser.add_argument("--root", default=None, help="folder holding the dataset (else the usual places)")
    parser.add_argument("--protocol", default="classifier", choices=PROTOCOLS)
    parser.add_argument("--temperature", type=float, default=None, help="overrides --target-relabel-accuracy")
    parser.add_argument("--target-relabel-accuracy", type=float, default=DEFAULT_TARGET_RELABEL_ACCURACY)
    parser.add_argument("--seed", type=int, default=AUTHORS_SEED)
    parser.add_argument("--cifar-n-labels", default="aggregate")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    spec = get_spec(args.dataset)
    report: dict = {"dataset": args.dataset, "scale": args.scale, "classifiers": {}}
    for role in ROLES:
        start = time.time()
        load_classifier(args.dataset, role, scale=args.scale, root=args.root)
        report["classifiers"][role] = {
            "id": classifier_id(args.dataset, role, args.scale),
            "test_accuracy": classifier_test_accuracy(args.dataset, role, args.scale, root=args.root),
            "seconds": round(time.time() - start, 1),
        }
    config = NoiseConfig(protocol=args.protocol, target_relabel_accuracy=args.target_relabel_accuracy,
                         temperature=args.temperature, seed=args.seed, classifier_scale=args.scale,
                         cifar_n_labels=args.cifar_n_labels)
    start = time.time()
    train = load_splits(spec.source, args.root)["train"]
    noisy = noisy_training_labels(spec, train, config, root=args.root)
    keys = ("protocol", "temperature", "target_relabel_accuracy", "expected_relabel_accuracy", "relabel_accuracy",
            "mean_coherence", "noise_classifier_train_accuracy", "seed")
    report["noise"] = {k: noisy.stats.get(k) for k in keys}
    report["noise"].update(cache=str(noisy.directory), seconds=round(time.time() - start, 1))
    clean = torch.from_numpy(train.labels)
    report["coherence_by_class"] = coherence_by_class(noisy.coherence, clean, noisy.labels, len(spec.class_names))
    print(json.dumps(report, indent=2))
    print(format_coherence_by_class(report["coherence_by_class"], spec.class_names))
    return report


def format_coherence_by_class(rows: list[dict], class_names) -> str:
    lines = ["| class | mean coherence | kept by Filtered (c >= 0.5) | share of the 1% most coherent |",
             "|---|---:|---:|---:|"]
    lines += [f"| {class_names[r['class']]} | {r['mean_coherence']:.3f} | {r['kept_by_filter']:.1%} | "
              f"{r['share_of_top']:.1%} |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
