"""--park (cad.experiment.park): the committed files plus the parked ones are enough for another machine to go on
with an unfinished experiment; a finished run parks nothing."""
import shutil
import subprocess

import pytest
import torch

from cad.experiment import cli, stages
from cad.experiment.config import resolve
from cad.experiment.park import park_list
from cad.experiment.runs import read_done, run_dirs
from cad.paths import REPO_ROOT
from tests.tiny_runs import TINY, train, train_killed_at


def _parking(cfg, dirs):
    return [(dirs, stages.ema_weights(dirs, stages.train_until(cfg), cfg.train.total_steps), stages.train_until(cfg))]


def _what_git_carries(root, files, parked, destination):
    """Copy to ``destination`` the files under ``root`` that the repository's .gitignore lets git commit (asked of git
    itself, as if ``root`` were ``results/raw``), plus the ``parked`` ones (``git add -f``)."""
    relative = [f.relative_to(root) for f in files]
    asked = "\n".join(f"results/raw/{r}" for r in relative)
    ignored = set(subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], input=asked, text=True,
                                 capture_output=True, cwd=REPO_ROOT).stdout.split())
    for path, rel in zip(files, relative):
        if f"results/raw/{rel}" not in ignored or path in parked:
            (destination / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination / rel)


@pytest.mark.skipif(shutil.which("git") is None or not (REPO_ROOT / ".git").exists(), reason="needs the git checkout")
def test_a_training_parked_on_one_machine_ends_on_another_as_if_never_stopped(tmp_path, monkeypatch):
    cfg = resolve("smoke", "mnist", "conditional", TINY)
    reference = train(cfg, run_dirs(cfg, "x", tmp_path / "reference"))

    first = run_dirs(cfg, "x", tmp_path / "first")
    train_killed_at(cfg, first, 3, monkeypatch)  # the session ends
    parked = park_list("class", "smoke", _parking(cfg, first), cache_root=tmp_path / "cache")
    assert parked == [first.train / "checkpoints" / "step=2.ckpt"]

    files = [p for p in (tmp_path / "first").rglob("*") if p.is_file()]
    _what_git_carries(tmp_path / "first", files, parked, tmp_path / "second")
    second = run_dirs(cfg, "x", tmp_path / "second")
    assert (second.train / "checkpoints" / "step=2.ckpt").is_file() and not (second.train / "tensorboard").exists()
    resumed = train(cfg, second)
    assert read_done(second.train, "train")["resumed_from"] == 2  # went on from the parked step, not from scratch
    for name in reference:
        assert torch.equal(reference[name], resumed[name]), name

    # Trained, sampling left: the EMA weights (smaller than the checkpoint); sampled: the samples; evaluated: nothing.
    assert park_list("class", "smoke", _parking(cfg, second), tmp_path / "cache") == [second.train / "model_ema.pt"]
    second.sample.mkdir(parents=True)
    (second.sample / "samples.npz").write_bytes(b"drawn")
    (second.sample / "sample.done").write_text("{}")
    assert park_list("class", "smoke", _parking(cfg, second), tmp_path / "cache") == [second.sample / "samples.npz"]
    second.evaluate.mkdir(parents=True)
    (second.evaluate / "evaluate.done").write_text("{}")
    assert park_list("class", "smoke", _parking(cfg, second), tmp_path / "cache") == []


def test_the_caches_another_machine_would_not_remake_the_same_are_parked_with_their_task_and_scale(tmp_path):
    labels = "noisy_labels/fashion_mnist-4c20/lenet-cpu"
    names = [f"{labels}/logits.npy", f"{labels}/classifier/T3.86725-seed3407/labels.npz",
             f"{labels}/classifier/T3.86725-seed3407/stats.json",
             "noisy_labels/fashion_mnist-4c20/lenet-smoke/logits.npy",
             "classifiers/fashion_mnist-noise-lenet-cpu.pt", "map_base/fashion_mnist-unet_cpu-cpu.pt",
             "map_base/fashion_mnist-unet_cpu-cpu.partial.pt", "map_base/fashion_mnist-unet_smoke-smoke.pt",
             "contrastive/fashion_mnist-coherence-cpu.partial.pt", "classifiers/fashion_mnist-eval-convbn-cpu.pt",
             "classifiers/fashion_mnist-eval-convbn-cpu.json", "classifiers/fashion_mnist-eval-convbn-smoke.pt",
             "map_base/fashion_mnist-unet_cpu-cpu.json", "contrastive/fashion_mnist-clipscore-cpu.pt",
             "contrastive/fashion_mnist-clipscore-cpu.json"]
    for name in names:
        (tmp_path / "cache" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "cache" / name).write_bytes(b"w")
    cfg = resolve("smoke", "mnist", "conditional", TINY)
    unfinished = _parking(cfg, run_dirs(cfg, "x", tmp_path / "raw"))  # nothing of the run on disk yet
    cache = tmp_path / "cache"
    assert park_list("class", "cpu", unfinished, cache) == [cache / n for n in sorted(names[:3] + names[9:11])]
    # a finished cache file travels with its metadata: load_or_train retrains weights that come without it
    assert park_list("map", "cpu", unfinished, cache) == sorted([cache / names[5], cache / names[6], cache / names[12]])
    assert park_list("text", "cpu", unfinished, cache) == sorted([cache / names[8], cache / names[13],
                                                                  cache / names[14]])
    evaluated = unfinished[0][0].evaluate
    evaluated.mkdir(parents=True)
    (evaluated / "evaluate.done").write_text("{}")
    assert park_list("class", "cpu", unfinished, cache) == []  # the experiment has finished: nothing to carry


def test_park_runs_nothing_and_lists_one_path_per_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAD_RESULTS", str(tmp_path))
    monkeypatch.setenv("CAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(stages, "run", lambda *a, **k: pytest.fail("--park must not run anything"))
    cfg = resolve("smoke", "mnist", "conditional")
    checkpoint = run_dirs(cfg, "table5d", tmp_path / "smoke" / "raw").train / "checkpoints" / "step=4.ckpt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"global_step": 4}, checkpoint)
    assert cli.main(["table5d", "--scale", "smoke", "--datasets", "mnist", "--methods", "conditional",
                     "--park"]) == 0
    assert capsys.readouterr().out.splitlines() == [str(checkpoint)]
