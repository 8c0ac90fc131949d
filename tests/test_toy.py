"""The mechanism check's direction, pinned on a smaller run (results/tables/toy_mechanism.md has the full one):
with coherence independent of the point (symmetric_entropy), CAD at coherence 1 beats the Baseline with samples on
the data (spread near 1), and at coherence 0 it draws the requested cluster *less* often than chance (there, labels
are almost always flipped), so it is not an unconditional model."""
import pytest

from cad.experiment import toy


@pytest.mark.slow
def test_cad_beats_baseline_when_the_coherence_is_independent_of_the_point():
    rows = toy.run(k=8, n=5000, steps=800, protocols=("symmetric_entropy",), methods=("baseline", "cad"))
    baseline, cad = (next(r for r in rows if r["method"] == m) for m in ("baseline", "cad"))
    assert cad["accuracy"] > baseline["accuracy"] + 0.05 and cad["spread"] < 1.5
    assert cad["accuracy_at_coherence_0"] < 1 / 8
