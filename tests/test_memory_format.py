"""Convolutional denoisers train and sample channels-last (cad.tasks.base): the weights NHWC, the predictions what the
NCHW network gives up to rounding, and the benchmark that measured the gain renders both layouts."""
import torch

from benchmarks import memory_format
from tests.test_class_conditional import make_batch, make_module


def test_the_unet_module_keeps_its_weights_channels_last_and_the_rin_does_not():
    module = make_module("cad")
    convs = [p for p in module.model.parameters() if p.dim() == 4]
    strict = [p for p in convs if p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1]  # 1x1 kernels, 1 channel: both
    assert strict and all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in strict)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in module.ema.module.parameters()
               if p.dim() == 4)
    rin = make_module("cad", preset="rin_smoke")
    assert all(p.is_contiguous() for p in rin.model.parameters())


@torch.no_grad()
def test_the_layout_changes_rounding_only():
    module = make_module("cad")
    nchw = make_module("cad")
    nchw.model.to(memory_format=torch.contiguous_format)
    nchw.model.load_state_dict(module.model.state_dict())
    cond = module.condition(make_batch(4))
    x, gamma = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0)), torch.full((4,), 0.4)
    torch.testing.assert_close(module.model(x, gamma, cond)[0], nchw.model(x, gamma, cond)[0], atol=1e-5, rtol=1e-4)


def test_the_benchmark_renders_both_layouts(tmp_path):
    out = tmp_path / "memory_format.md"
    assert memory_format.main(["--presets", "unet_smoke", "--batch", "4", "--sample-batch", "6", "--iters", "1",
                               "--warmup", "0", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| `unet_smoke`")]
    assert [row.split("|")[2].strip() for row in rows] == ["train", "sample"]
    assert all(float(row.split("|")[3]) > 0 and float(row.split("|")[4]) > 0 for row in rows)
