"""Table notes come per block from each dataset's own run files; every noise protocol renders."""
import json

from cad.experiment import report
from cad.experiment.config import resolve
from cad.experiment.runs import run_dirs


def _result(tmp_path, dataset, method, classifier, noise):
    cfg = resolve("smoke", dataset, method, accelerator="cpu")
    dirs = run_dirs(cfg, "table5d", tmp_path)
    dirs.train.mkdir(parents=True)
    if noise is not None:
        (dirs.train / "noise.json").write_text(json.dumps(noise))
    meta = {"classifier": classifier, "eval_classifier_test_accuracy": 0.9, "extractors": {"fid": "inception"}}
    return report.RunResult(dataset=dataset, method=method, sweep_value=None, cfg=cfg, dirs=dirs,
                            metrics={"fid": 1.0, "meta": meta})


def test_each_block_names_its_own_classifier_and_noise_without_a_temperature_renders(tmp_path):
    results = [
        _result(tmp_path, "fashion_mnist", "baseline", "fmnist-clf",
                {"protocol": "classifier", "temperature": 3.926, "relabel_accuracy": 0.542}),
        _result(tmp_path, "mnist", "baseline", "mnist-clf",
                {"protocol": "symmetric_entropy", "temperature": None, "relabel_accuracy": 0.5}),
        _result(tmp_path, "mnist", "conditional", "mnist-clf", None),
    ]
    notes = report.table_notes(results, "true labels")
    assert notes["noise (Fashion-MNIST)"] == "classifier, temperature 3.93, relabelling accuracy 0.542"
    assert notes["noise (MNIST)"] == "symmetric_entropy, relabelling accuracy 0.500"
    assert (notes["accuracy (Fashion-MNIST)"].startswith("fmnist-clf")
            and notes["accuracy (MNIST)"].startswith("mnist-clf"))
    assert "accuracy" not in notes and notes["features"] == "fid: inception"  # shared lines are written once
    assert notes["sampler"].endswith("coherence 1, true labels")


def test_a_noise_protocol_override_writes_its_own_files(tmp_path):
    from cad.experiment.config import load_experiment

    table5d = load_experiment("table5d")
    paper_protocol = [_result(tmp_path / "a", "mnist", "baseline", "c", None)]
    other = [report.RunResult(**{**r.__dict__, "cfg": resolve("smoke", "mnist", "baseline",
                                                             ["data.noise.protocol=authors_entropy"])})
             for r in paper_protocol]
    assert report.output_name(table5d, paper_protocol) == "table5d"
    assert report.output_name(table5d, other) == "table5d-authors_entropy"


def test_any_override_that_changes_the_run_writes_its_own_files_and_precision_does_not(tmp_path):
    from cad.experiment.config import load_experiment

    def name(experiment, overrides, sweep_value=None):
        cfg = resolve("smoke", "fashion_mnist", "cad", overrides, accelerator="cpu")
        result = report.RunResult(dataset="fashion_mnist", method="cad", sweep_value=sweep_value, cfg=cfg, dirs=None,
                                  metrics={})
        return report.output_name(load_experiment(experiment), [result])

    assert name("table5d", ["data.augment.hflip=true"]) == "table5d-hflip-True"
    assert name("table5d", ["train.schedule.shift=2.0", "sample.steps=4"]) == "table5d-shift-2.0-steps-4"
    assert name("table5d", ["train.precision=32-true", "sample.precision=bf16-mixed"]) == "table5d"
    # a sweep's own value and the experiment's own overrides are the experiment itself
    assert name("fig5b", ["sample.guidance_scale=3.0"], sweep_value=3.0) == "fig5b"


def test_the_text_tables_say_which_contrastive_models_stand_in(tmp_path):
    cfg = resolve("smoke", "fashion_mnist", "cad", task="text", accelerator="cpu")
    meta = {"clip_score_model": "fm-canvas-clipscore (cad.data.contrastive), a stand-in for the paper's CLIP",
            "coherence_model": "fm-canvas-coherence (cad.data.contrastive, another network), a stand-in for the "
                               "paper's MetaCLIP H/14"}
    result = report.RunResult(dataset="fashion_mnist", method="cad", sweep_value=None, cfg=cfg,
                              dirs=run_dirs(cfg, "fig3a", tmp_path), metrics={"fid": 1.0, "meta": meta})
    notes = report.table_notes([result])
    assert notes["CLIPScore"] == meta["clip_score_model"]
    assert notes["coherence scorer"] == meta["coherence_model"]
