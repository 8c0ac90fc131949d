"""Classifiers: the small nets, the preprocessing, the cache (and its corruption), the paper-scale timm networks."""
import json

import pytest
import torch

from cad.data import classifier_training as ct
from cad.data import classifiers, sources
from cad.data.classifier_nets import build_small
from cad.data.formats import ImageArrays
from cad.data.paper_classifiers import build_paper_classifier
from cad.data.preprocess import Preprocess
from tests.fixtures.data import writers


@pytest.fixture(autouse=True)
def isolated_roots(tmp_path, monkeypatch):
    monkeypatch.setenv("CAD_DATA", str(tmp_path / "cad_data"))
    monkeypatch.setenv("CAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sources.dl, "download_files", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))


@pytest.mark.parametrize("arch", ["lenet", "convbn"])
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_small_nets_give_logits_and_features(arch, channels, size):
    net = build_small(arch, in_channels=channels, num_classes=10, image_size=size).eval()
    x = torch.randn(2, channels, size, size)
    assert net(x).shape == (2, 10)
    assert net.features(x).shape[0] == 2 and net.features(x).ndim == 2


def test_noise_and_eval_roles_use_different_networks():
    noise = classifiers.build_small_classifier("fashion_mnist", "noise")
    evaluation = classifiers.build_small_classifier("fashion_mnist", "eval")
    assert type(noise.net) is not type(evaluation.net)
    assert classifiers.cache_path("mnist", "eval", "cpu").name == "mnist-eval-convbn-cpu.pt"


def test_preprocess_resizes_and_normalises():
    pre = Preprocess(8, "bicubic", (0.5, 0.25, 0.0), (0.5, 0.5, 1.0))
    x = torch.full((1, 3, 4, 4), 1.0)  # white in [-1, 1]
    out = pre(x)
    assert out.shape == (1, 3, 8, 8)
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([1.0, 1.5, 1.0]), atol=1e-5)
    assert torch.equal(Preprocess()(x), x)  # mean = std = 0.5 is the identity on [-1, 1]


def _tiny_data(n=64):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    images[torch.arange(n), 0, labels * 2, :] = 255  # a learnable stripe per class
    return ImageArrays(images.numpy(), labels.numpy())


def test_training_a_few_steps_learns_synthetic_data():
    data = _tiny_data()
    model = classifiers.build_small_classifier("mnist", "noise")
    ct.train_classifier(model, data, ct.TrainRecipe(epochs=8, batch_size=16, max_lr=1e-2))
    assert ct.test_accuracy(model, data) > 0.8


def _cache_roundtrip(tmp_path):
    fits = []

    def fit(model):
        fits.append(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01)
        return 0.5

    build = lambda: classifiers.build_small_classifier("mnist", "noise")  # noqa: E731
    path = tmp_path / "c" / "mnist-noise-lenet-cpu.pt"
    expected = {"dataset": "mnist", "arch": "lenet"}
    return fits, (lambda: ct.load_or_train(path, expected, build, fit)), path


def test_cache_is_reused(tmp_path):
    fits, load, path = _cache_roundtrip(tmp_path)
    first, meta = load()
    second, _ = load()
    assert len(fits) == 1 and meta["test_accuracy"] == 0.5
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("damage", ["garbage_weights", "truncated_weights", "bad_json", "stale_meta", "no_json"])
def test_corrupt_cache_is_detected_and_retrained(tmp_path, damage):
    fits, load, path = _cache_roundtrip(tmp_path)
    load()
    meta_path = path.with_suffix(".json")
    if damage == "garbage_weights":
        path.write_bytes(b"\x00" * 100)
    elif damage == "truncated_weights":
        path.write_bytes(path.read_bytes()[:-200])
    elif damage == "bad_json":
        meta_path.write_text("{")
    elif damage == "stale_meta":
        meta = json.loads(meta_path.read_text())
        meta_path.write_text(json.dumps({**meta, "arch": "convbn"}))
    else:
        meta_path.unlink()
    load()
    assert len(fits) == 2
    load()
    assert len(fits) == 2  # the retrained entry is whole again


def test_load_classifier_trains_and_caches_on_fixture_data(tmp_path, monkeypatch):
    root = writers.write_idx_dataset(tmp_path / "fm", n_train=32, n_test=16)
    monkeypatch.setitem(classifiers.RECIPES, ("smoke", "lenet"), ct.TrainRecipe(epochs=1, batch_size=8))
    model = classifiers.load_classifier("fashion_mnist", "noise", scale="smoke", root=root)
    assert not model.training
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    assert model(x).shape == (3, 10) and model.features(x).shape == (3, 84)
    accuracy = classifiers.classifier_test_accuracy("fashion_mnist", "noise", "smoke", root=root)
    meta = json.loads(classifiers.cache_path("fashion_mnist", "noise", "smoke").with_suffix(".json").read_text())
    assert meta["test_accuracy"] == accuracy and 0.0 <= accuracy <= 1.0


def test_unknown_role_or_scale_is_explained():
    with pytest.raises(ValueError, match="allowed"):
        classifiers.load_classifier("mnist", "judge", scale="cpu")
    with pytest.raises(ValueError, match="allowed"):
        classifiers.load_classifier("mnist", "eval", scale="huge")


@pytest.mark.parametrize("dataset,role,size,num_classes,feature_dim", [
    ("cifar10", "noise", 32, 10, 512),
    ("imagenet64", "noise", 224, 1000, 384),
])
def test_paper_classifiers_preprocess_and_run_one_image(dataset, role, size, num_classes, feature_dim):
    model = build_paper_classifier(dataset, role, num_classes, pretrained=False)
    native = 32 if dataset == "cifar10" else 64
    x = torch.rand(1, 3, native, native) * 2 - 1
    assert model.preprocess(x).shape == (1, 3, size, size)
    with torch.no_grad():
        assert model(x).shape == (1, num_classes)
        assert model.features(x).shape == (1, feature_dim)


def test_cifar_resnet_has_the_cifar_stem():
    net = build_paper_classifier("cifar10", "noise", 10, pretrained=False).net.model
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, torch.nn.Identity)


@pytest.mark.parametrize("dataset,role,size,num_classes,feature_dim", [
    ("cifar10", "eval", 224, 10, 768),
    ("imagenet64", "eval", 384, 1000, 768),
])
def test_large_paper_classifiers_on_the_meta_device(dataset, role, size, num_classes, feature_dim):
    with torch.device("meta"):
        model = build_paper_classifier(dataset, role, num_classes, pretrained=False)
        x = torch.empty(2, 3, size, size)  # already at the classifier's resolution: no resize on meta
        assert model(x).shape == (2, num_classes)
        assert model.features(x).shape == (2, feature_dim)
    assert model.preprocess.size == size


def test_paper_weights_load_from_a_path(tmp_path):
    source = build_paper_classifier("cifar10", "noise", 10, pretrained=False)
    torch.save(source.net.model.state_dict(), tmp_path / "w.pth")
    loaded = build_paper_classifier("cifar10", "noise", 10, weights=tmp_path / "w.pth")
    for a, b in zip(source.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
