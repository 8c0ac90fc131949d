"""Datamodules from tiny fixtures: batch layout, ranges, noisy labels, the Filtered view, subsets, the registry."""
import pytest
import torch

from cad.data import DATASETS, NoiseConfig, build_datamodule
from cad.data import sources
from cad.data.classifier_nets import build_small
from cad.data.preprocess import Classifier, Preprocess
from tests.fixtures.data import writers


@pytest.fixture(autouse=True)
def isolated_roots(tmp_path, monkeypatch):
    monkeypatch.setenv("CAD_DATA", str(tmp_path / "cad_data"))
    monkeypatch.setenv("CAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sources.dl, "download_files", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))


FIXTURES = {
    "fashion_mnist": (writers.write_idx_dataset, (1, 28, 28), 40, 12),
    "mnist": (writers.write_mnist_pickle, (1, 28, 28), 40, 12),
    "cifar10": (writers.write_cifar10, (3, 32, 32), 30, 8),
    "imagenet64": (writers.write_imagenet64, (3, 64, 64), 30, 4),
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_batches_have_the_documented_layout(name, tmp_path):
    write, shape, n_train, n_test = FIXTURES[name]
    dm = build_datamodule(name, root=write(tmp_path / name), batch_size=8)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image", "label", "clean_label", "coherence", "index"}
    assert batch["image"].shape == (8, *shape) and batch["image"].dtype == torch.float32
    assert batch["image"].min() == -1.0 and batch["image"].max() == 1.0
    for key in ("label", "clean_label", "index"):
        assert batch[key].shape == (8,) and batch[key].dtype == torch.int64
    assert batch["coherence"].dtype == torch.float32 and torch.all(batch["coherence"] == 1.0)
    assert torch.equal(batch["label"], batch["clean_label"])
    assert len(dm.train_set) == n_train and len(dm.test_dataset) == n_test
    assert dm.image_shape == shape and dm.num_classes == len(dm.class_names)
    assert torch.all(batch["label"] < dm.num_classes)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError) as info:
        build_datamodule("svhn", batch_size=4)
    for name in DATASETS:
        assert name in str(info.value)


@pytest.mark.parametrize("protocol", ["symmetric_entropy", "authors_entropy"])
def test_entropy_protocols_and_the_filtered_view(protocol, tmp_path, monkeypatch):
    monkeypatch.setenv("CAD_CACHE", str(tmp_path / "cache"))
    root = writers.write_idx_dataset(tmp_path / "fm", n_train=200)
    noise = NoiseConfig(protocol=protocol)
    full = build_datamodule("fashion_mnist", root=root, batch_size=16, labels="noisy", noise=noise)
    full.setup()
    kept = build_datamodule("fashion_mnist", root=root, batch_size=16, labels="noisy", noise=noise,
                            filter_threshold=0.5)
    kept.setup()
    expected = full.train_set.index[full.train_set.coherence >= 0.5]
    assert torch.equal(kept.train_set.index, expected)
    assert torch.all(kept.train_set.coherence >= 0.5) and 0 < len(kept.train_set) < 200
    assert not torch.equal(full.train_set.labels, full.train_set.clean_labels)
    assert full.noise_stats["protocol"] == protocol and full.noise_stats["temperature"] is None


def test_subset_is_fixed_by_its_seed(tmp_path):
    root = writers.write_idx_dataset(tmp_path / "fm", n_train=100)
    a = build_datamodule("fashion_mnist", root=root, batch_size=4, subset=10, seed=1)
    b = build_datamodule("fashion_mnist", root=root, batch_size=4, subset=10, seed=1)
    c = build_datamodule("fashion_mnist", root=root, batch_size=4, subset=10, seed=2)
    for dm in (a, b, c):
        dm.setup()
    assert len(a.train_set) == 10 and torch.equal(a.train_set.index, b.train_set.index)
    assert not torch.equal(a.train_set.index, c.train_set.index)


def test_classifier_noise_uses_the_noise_classifier(tmp_path, monkeypatch):
    root = writers.write_idx_dataset(tmp_path / "fm", n_train=120)
    torch.manual_seed(0)
    net = Classifier(build_small("lenet", in_channels=1, num_classes=10, image_size=28), Preprocess(), name="lenet",
                     num_classes=10).eval()
    asked = []

    def fake_load_classifier(dataset, role, *, scale, root=None, **kwargs):
        asked.append((dataset, role, scale))
        return net

    monkeypatch.setattr("cad.data.classifiers.load_classifier", fake_load_classifier)
    noise = NoiseConfig(temperature=2.0, classifier_scale="smoke")
    dm = build_datamodule("fashion_mnist", root=root, batch_size=8, labels="noisy", noise=noise)
    dm.prepare_data()
    dm.setup()
    assert asked == [("fashion_mnist", "noise", "smoke")]  # prepare_data caches; setup reads the cache
    batch = next(iter(dm.train_dataloader()))
    assert torch.all((batch["coherence"] >= 0) & (batch["coherence"] <= 1)) and torch.any(batch["coherence"] < 1)
    assert dm.noise_stats["temperature"] == 2.0 and dm.noise_stats["classifier"] == "lenet-smoke"


def test_cifar_n_protocol(tmp_path, monkeypatch):
    root = writers.write_cifar10(tmp_path / "c")
    dm = build_datamodule("cifar10", root=root, batch_size=4)
    clean = dm.splits["train"].labels
    writers.write_cifar_n(root, clean)
    net = Classifier(build_small("lenet", in_channels=3, num_classes=10, image_size=32), Preprocess(), name="lenet",
                     num_classes=10).eval()
    monkeypatch.setattr("cad.data.classifiers.load_classifier", lambda *a, **k: net)
    noisy = build_datamodule("cifar10", root=root, batch_size=4, labels="noisy",
                             noise=NoiseConfig(protocol="cifar_n", cifar_n_labels="aggregate"))
    noisy.setup()
    assert (noisy.train_set.labels != noisy.train_set.clean_labels).sum() == 10
    assert noisy.noise_stats["protocol"] == "cifar_n-aggregate"
    with pytest.raises(ValueError, match="cifar10 only"):
        build_datamodule("fashion_mnist", root=writers.write_idx_dataset(tmp_path / "fm"), batch_size=4,
                         labels="noisy", noise=NoiseConfig(protocol="cifar_n")).setup()
