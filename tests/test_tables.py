"""Golden-file tests of the table renderer on committed fixture results.

To regenerate the expected files deliberately after an intended change of the rendering:
    CAD_UPDATE_GOLDEN=1 python -m pytest tests/test_tables.py
then review the diff of tests/fixtures/tables/ before committing.
"""
import json
import os
from pathlib import Path

import pytest

from benchmarks.tables import TABLE_5D, get_spec, render_table, write_table
from benchmarks.tables.render import MISSING

FIXTURES = Path(__file__).parent / "fixtures" / "tables"
UPDATE = os.environ.get("CAD_UPDATE_GOLDEN") == "1"


def _render(fixture: Path) -> dict[str, str]:
    data = json.loads(fixture.read_text())
    return render_table(get_spec(data["spec"]), data["results"], context=data["context"])


@pytest.mark.parametrize("fixture", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_golden(fixture):
    outputs = _render(fixture)
    for ext, text in outputs.items():
        expected = fixture.with_suffix(f".{ext}")
        if UPDATE:
            expected.write_text(text)
        assert expected.exists(), f"{expected} missing: run with CAD_UPDATE_GOLDEN=1 to create it"
        assert text == expected.read_text(), (
            f"{expected.name} differs; if intended, regenerate with CAD_UPDATE_GOLDEN=1"
        )


def test_stand_in_labels_notes_missing_and_strings_are_in_the_table():
    md = _render(FIXTURES / "table5d_cpu.json")["md"]
    assert "### Fashion-MNIST (stand-in for CIFAR-10)" in md
    assert "relabelling accuracy 61.3%" in md and "fid-inception-tf2015-offline (fp32)" in md
    assert "n/a: no Inception logits offline" in md
    weighted_ours = next(line for line in md.splitlines() if line.startswith("| Weighted"))
    assert weighted_ours.count(MISSING) == 2  # its density and coverage were not measured


def test_difference_is_ours_minus_paper():
    results = {"cifar10": {"cad": {"fid": 5.0, "accuracy": 0.9}}}
    outputs = render_table(TABLE_5D, results, context={"blocks": ["cifar10"]})
    lines = outputs["md"].splitlines()
    diff = lines[next(i for i, line in enumerate(lines) if line.startswith("| CAD")) + 2]
    assert "| +0.25 |" in diff and "| -0.006 |" in diff  # 5.0 - 4.75, 0.9 - 0.906
    assert "cifar10,CIFAR-10,cad,CAD,fid,FID,5.00,4.75,+0.25" in outputs["csv"]
    assert r"\textbf{CIFAR-10}" in outputs["tex"]


def test_unknown_block_is_an_error():
    with pytest.raises(ValueError, match="cifar100"):
        render_table(TABLE_5D, {"cifar100": {}}, context={})


def test_write_table_writes_three_files(tmp_path):
    outputs = _render(FIXTURES / "figure3a_partial.json")
    paths = write_table(outputs, tmp_path / "tables", "figure3a")
    assert sorted(p.name for p in paths) == ["figure3a.csv", "figure3a.md", "figure3a.tex"]
    assert all(p.read_text() == outputs[p.suffix[1:]] for p in paths)
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == sorted(p.name for p in paths)
