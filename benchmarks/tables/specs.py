"""Table specifications holding the paper's numbers (Dufour et al., CVPR 2024), so rendered tables show ours beside
theirs. A spec is data: blocks (datasets), rows (methods), columns (metrics) and the paper's value per cell.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    key: str  # key in the results dict (as produced by benchmarks.evaluate: fid, is, accuracy, precision, ...)
    label: str
    fmt: str = ".2f"
    better: str | None = None  # "lower" / "higher": shown as an arrow in the header


@dataclass(frozen=True)
class Row:
    key: str
    label: str


@dataclass(frozen=True)
class Block:
    key: str
    label: str  # the paper's dataset name; a stand-in is labelled through render_table's context
    paper: dict[str, dict[str, float]] = field(default_factory=dict)  # row key -> column key -> value
    dataset: str | None = None  # the suite's name of the paper dataset (cad.data.registry), when it differs from key


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    source: str
    rows: tuple[Row, ...]
    columns: tuple[Column, ...]
    blocks: tuple[Block, ...]

    def block(self, key: str) -> Block:
        for block in self.blocks:
            if block.key == key:
                return block
        raise KeyError(f"{self.name} has no block {key!r}; blocks: {[b.key for b in self.blocks]}")

    def block_for(self, dataset: str) -> Block:
        """The block of a paper dataset, by the suite's dataset name (``imagenet64`` fills ``imagenet``)."""
        for block in self.blocks:
            if (block.dataset or block.key) == dataset:
                return block
        raise KeyError(f"{self.name} has no block for dataset {dataset!r}; blocks: {[b.key for b in self.blocks]}")


def _cells(columns: tuple[str, ...], rows: dict[str, tuple[float, ...]]) -> dict[str, dict[str, float]]:
    return {row: dict(zip(columns, values, strict=True)) for row, values in rows.items()}


# Precision, recall, density and coverage (Naeem et al. 2020), reported by every table of the paper.
MANIFOLD_COLUMNS = (
    Column("precision", "P", ".3f", "higher"),
    Column("recall", "R", ".3f", "higher"),
    Column("density", "D", ".3f", "higher"),
    Column("coverage", "C", ".3f", "higher"),
)

_T5D_COLS = ("fid", "is", "accuracy", "precision", "recall", "density", "coverage")

TABLE_5D = TableSpec(
    name="table5d",
    title="Table 5(d): class-conditional generation with noisy labels (beta = 0.5)",
    source="Dufour et al., CVPR 2024, Figure 5(d)",
    rows=(
        Row("conditional", "Conditional"),
        Row("baseline", "Baseline"),
        Row("weighted", "Weighted"),
        Row("filtered", "Filtered"),
        Row("cad", "CAD"),
    ),
    columns=(
        Column("fid", "FID", ".2f", "lower"),
        Column("is", "IS", ".2f", "higher"),
        Column("accuracy", "Acc", ".3f", "higher"),
        *MANIFOLD_COLUMNS,
    ),
    blocks=(
        Block(
            "imagenet",
            "ImageNet-64",
            _cells(
                _T5D_COLS,
                {
                    "conditional": (7.56, 34.26, 0.475, 0.595, 0.610, 0.768, 0.706),
                    "baseline": (14.38, 20.46, 0.168, 0.539, 0.579, 0.595, 0.505),
                    "filtered": (10.20, 26.59, 0.338, 0.573, 0.608, 0.707, 0.645),
                    "cad": (9.11, 25.97, 0.327, 0.571, 0.610, 0.714, 0.633),
                },
            ),
            dataset="imagenet64",
        ),
        Block(
            "cifar10",
            "CIFAR-10",
            _cells(
                _T5D_COLS,
                {
                    "conditional": (8.97, 10.13, 0.954, 0.630, 0.573, 0.817, 0.758),
                    "baseline": (5.66, 9.79, 0.507, 0.659, 0.614, 0.940, 0.809),
                    "filtered": (9.48, 9.53, 0.634, 0.679, 0.547, 1.021, 0.789),
                    "cad": (4.75, 9.69, 0.906, 0.688, 0.588, 1.059, 0.821),
                },
            ),
        ),
    ),
)

_F3A_COLS = ("guidance_scale", "fid", "clip_score", "precision", "recall", "density", "coverage")

FIGURE_3A = TableSpec(
    name="fig3a",
    title="Figure 3(a): text-to-image generation, COCO-10K (guidance w with the best FID)",
    source="Dufour et al., CVPR 2024, Figure 3(a)",
    rows=(Row("baseline", "Baseline"), Row("weighted", "Weighted"), Row("filtered", "Filtered"), Row("cad", "CAD")),
    columns=(
        Column("guidance_scale", "w", "g"),
        Column("fid", "FID", ".1f", "lower"),
        Column("clip_score", "CLIPScore", ".2f", "higher"),
        *MANIFOLD_COLUMNS,
    ),
    blocks=(
        Block(
            "coco10k",
            "COCO-10K",
            _cells(
                _F3A_COLS,
                {
                    "baseline": (10, 91.9, 25.96, 0.281, 0.047, 0.181, 0.222),
                    "weighted": (5, 98.3, 25.15, 0.192, 0.046, 0.111, 0.155),
                    "filtered": (10, 85.8, 26.52, 0.281, 0.061, 0.175, 0.233),
                    "cad": (15, 69.4, 26.16, 0.373, 0.078, 0.265, 0.315),
                },
            ),
        ),
    ),
)

_F6B_COLS = ("fid", "miou", "precision", "recall", "density", "coverage")

FIGURE_6B = TableSpec(
    name="fig6b",
    title="Figure 6(b): generation conditioned on semantic maps",
    source="Dufour et al., CVPR 2024, Figure 6(b)",
    rows=(Row("baseline", "Baseline"), Row("cad", "CAD")),
    columns=(
        Column("fid", "FID", ".2f", "lower"),
        Column("miou", "mIoU", ".1f", "higher"),
        *MANIFOLD_COLUMNS,
    ),
    blocks=(
        Block(
            "ade20k",
            "ADE20k",
            _cells(
                _F6B_COLS,
                {
                    "baseline": (33.67, 22.6, 0.785, 0.757, 1.029, 0.904),
                    "cad": (30.88, 23.7, 0.844, 0.824, 1.0755, 0.934),
                },
            ),
        ),
        Block(
            "coco",
            "MS COCO",
            _cells(
                _F6B_COLS,
                {
                    "baseline": (20.1, 35.1, 0.7876, 0.6760, 1.0811, 0.8956),
                    "cad": (18.1, 35.3, 0.8404, 0.8060, 1.0687, 0.9304),
                },
            ),
        ),
    ),
)

TABLE_SPECS: dict[str, TableSpec] = {spec.name: spec for spec in (TABLE_5D, FIGURE_3A, FIGURE_6B)}


def get_spec(name: str) -> TableSpec:
    if name not in TABLE_SPECS:
        raise ValueError(f"unknown table {name!r}; known: {sorted(TABLE_SPECS)}")
    return TABLE_SPECS[name]
