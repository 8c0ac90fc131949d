"""The preset throughput benchmark runs every step kind (U-Net, class RIN, text RIN) and renders a row per preset."""
from benchmarks import preset_throughput


def test_the_smoke_presets_are_timed_and_rendered(tmp_path):
    out = tmp_path / "presets.md"
    assert preset_throughput.main(["--presets", "unet_smoke", "rin_smoke", "rin_text_smoke", "--batch", "4",
                                   "--iters", "1", "--warmup", "0", "--precision", "32-true", "--out", str(out)]) == 0
    text = out.read_text()
    for preset, task in (("unet_smoke", "class"), ("rin_smoke", "class"), ("rin_text_smoke", "text")):
        row = next(line for line in text.splitlines() if line.startswith(f"| `{preset}`"))
        assert f"| {task} |" in row and float(row.split("|")[4]) > 0
