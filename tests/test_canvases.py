"""Captioned canvases (issue 11's stand-in data): captions say what is on the canvas, corruption is as frequent as
set, the class map marks exactly the objects' pixels, and a sample is a function of (seed, index)."""
import numpy as np
import pytest

from cad.data.canvases import POSITIONS, SIZE_WORDS, CanvasSpec, CaptionedCanvases, VOCABULARIES
from cad.data.formats import ImageArrays

VOCAB = VOCABULARIES["fashion_mnist"]


def synthetic_sources(per_class: int = 3) -> ImageArrays:
    """28x28 sources whose class is written in their brightness: a centred 16x16 square of value 100 + 15 k."""
    labels = np.repeat(np.arange(10), per_class)
    images = np.zeros((len(labels), 1, 28, 28), dtype=np.uint8)
    for i, k in enumerate(labels):
        images[i, 0, 6:22, 6:22] = 100 + 15 * k
    return ImageArrays(images, labels.astype(np.int64))


def parse(caption: str, spec: CanvasSpec) -> list[tuple[str | None, str, str]]:
    """(size word, class word, position phrase) per object phrase of a caption."""
    phrases = caption.replace(" and ", ", ").split(", ")
    out = []
    for phrase in phrases:
        position = next(p for p in POSITIONS[spec.num_objects] if phrase.endswith(p))
        words = phrase[: -len(position)].strip().split(" ", 1)[1]  # drop the article
        size = next((w for w in SIZE_WORDS if words.startswith(w + " ")), None) if len(spec.sizes) > 1 else None
        out.append((size, words[len(size) + 1:] if size else words, position))
    return out


@pytest.mark.parametrize("spec", [CanvasSpec(), CanvasSpec(num_objects=3, width=96, sizes=(28,)),
                                  CanvasSpec(num_objects=1, height=28, width=28, sizes=(28,))])
def test_the_true_caption_says_what_is_on_the_canvas(spec):
    data = CaptionedCanvases(synthetic_sources(), VOCAB, spec, length=60)
    slot_width = spec.width // spec.num_objects
    for i in range(len(data)):
        item = data[i]
        for slot, (size, word, position) in enumerate(parse(item["true_caption"], spec)):
            assert position == POSITIONS[spec.num_objects][slot]
            region = item["image"][0, :, slot * slot_width:(slot + 1) * slot_width]
            assert (region.max() - 100) / 15 == pytest.approx(VOCAB.index(word), abs=0.1)  # the class it names
            rows, cols = np.nonzero(region > region.max() / 2)
            side = spec.sizes[SIZE_WORDS.index(size)] if size else spec.sizes[0]
            assert np.ptp(rows) + 1 == pytest.approx(side * 16 / 28, abs=1.5)  # the square, scaled to the size named
            assert np.ptp(cols) + 1 == pytest.approx(side * 16 / 28, abs=1.5)


def test_the_class_map_marks_the_object_pixels_and_the_background():
    data = CaptionedCanvases(synthetic_sources(), VOCAB, CanvasSpec(), length=20)
    for i in range(len(data)):
        item = data[i]
        bright = item["image"][0] > 64
        assert (item["class_map"][~bright] == 10).all()
        for o in item["objects"]:
            side = CanvasSpec().sizes[o.size]
            window = item["class_map"][o.top:o.top + side, o.left:o.left + side]
            assert set(np.unique(window)) <= {o.cls, 10} and (window == o.cls).any()


@pytest.mark.parametrize("noisy_share", [0.0, 0.3, 0.8])
def test_the_corruption_rate_matches_its_setting(noisy_share):
    """E[wrong content words] = noisy_share * E[q] = noisy_share / 2; clean captions are the true ones; the recorded
    misalignment is the share of words that differ."""
    spec = CanvasSpec(noisy_share=noisy_share)
    data = CaptionedCanvases(synthetic_sources(), VOCAB, spec, length=3000)
    items = [data[i] for i in range(len(data))]
    misalignment = np.array([it["misalignment"] for it in items])
    assert misalignment.mean() == pytest.approx(noisy_share / 2, abs=0.02)
    assert np.mean([it["level"] > 0 for it in items]) == pytest.approx(noisy_share, abs=0.03)
    for it in items[:300]:
        said, true = parse(it["caption"], spec), parse(it["true_caption"], spec)
        wrong = sum(a != b for s, t in zip(said, true) for a, b in zip(s, t))
        assert wrong == round(it["misalignment"] * 3 * spec.num_objects)
        assert (it["caption"] == it["true_caption"]) == (wrong == 0)


def test_a_sample_is_a_function_of_seed_and_index():
    data = CaptionedCanvases(synthetic_sources(), VOCAB, CanvasSpec(seed=1), length=10)
    again = CaptionedCanvases(synthetic_sources(), VOCAB, CanvasSpec(seed=1), length=10)
    other = CaptionedCanvases(synthetic_sources(), VOCAB, CanvasSpec(seed=2), length=10)
    assert np.array_equal(data[3]["image"], again[3]["image"]) and data[3]["caption"] == again[3]["caption"]
    assert any(data[i]["caption"] != other[i]["caption"] for i in range(10))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="num_objects=4"):
        CanvasSpec(num_objects=4)
    with pytest.raises(ValueError, match="sizes=\\(40,\\)"):
        CanvasSpec(sizes=(40,))
    with pytest.raises(ValueError, match="no example of \\['bag'"):
        sources = synthetic_sources()
        keep = sources.labels != 8
        CaptionedCanvases(ImageArrays(sources.images[keep], sources.labels[keep]), VOCAB)
