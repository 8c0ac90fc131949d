"""Render a table spec with our results beside the paper's: a pure function returning Markdown, CSV and LaTeX.

``results``: ``{block_key: {row_key: {column_key: value}}}`` (numbers, or strings such as the Inception Score's
"n/a: ..." that are printed as they are; anything missing prints as "—").
``context`` labels what the numbers are, in the table itself:

- ``block_labels``: ``{block_key: "Fashion-MNIST (stand-in for CIFAR-10)"}`` (default: the paper's dataset name)
- ``blocks``: block keys to render, in order (default: all blocks of the spec)
- ``notes``: ``{label: text}`` printed under the table (scale, datasets, noise temperature and relabelling accuracy,
  number of evaluation samples, sampler and steps, guidance scale, feature extractor per metric, ...)
"""
from __future__ import annotations

import csv
import io
import numbers
from pathlib import Path

from benchmarks.tables.specs import Column, TableSpec
from cad.io import atomic_write_text

MISSING = "—"
DIFF_LABEL = "Δ (ours − paper)"
ARROWS = {"lower": "↓", "higher": "↑", None: ""}


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def format_cell(value, column: Column) -> str:
    if value is None:
        return MISSING
    if _is_number(value):
        return format(value, column.fmt)
    return str(value)


def format_diff(ours, paper, column: Column) -> str:
    if _is_number(ours) and _is_number(paper):
        return format(ours - paper, "+" + column.fmt)
    return MISSING


def table_cells(spec: TableSpec, results: dict, context: dict) -> list[dict]:
    """The table as records: one per (block, row, column) with ours / paper / diff already formatted."""
    block_keys = context.get("blocks") or [b.key for b in spec.blocks]
    labels = context.get("block_labels", {})
    unknown = set(results) - {b.key for b in spec.blocks}
    if unknown:
        raise ValueError(f"results name blocks {sorted(unknown)} that {spec.name} does not have")
    records = []
    for block_key in block_keys:
        block = spec.block(block_key)
        for row in spec.rows:
            ours_row = results.get(block_key, {}).get(row.key, {})
            paper_row = block.paper.get(row.key, {})
            for column in spec.columns:
                ours, paper = ours_row.get(column.key), paper_row.get(column.key)
                records.append(
                    {
                        "block": block_key,
                        "block_label": labels.get(block_key, block.label),
                        "row": row.key,
                        "row_label": row.label,
                        "column": column.key,
                        "column_label": column.label,
                        "ours": format_cell(ours, column),
                        "paper": format_cell(paper, column),
                        "diff": format_diff(ours, paper, column),
                    }
                )
    return records


def _grid(spec: TableSpec, records: list[dict], block_key: str) -> list[tuple[str, str, list[str]]]:
    """(method label, source, cells) lines of one block: ours, paper, diff per method."""
    lines = []
    for row in spec.rows:
        cells = {r["column"]: r for r in records if r["block"] == block_key and r["row"] == row.key}
        for source, field in (("ours", "ours"), ("paper", "paper"), (DIFF_LABEL, "diff")):
            lines.append((row.label if source == "ours" else "", source, [cells[c.key][field] for c in spec.columns]))
    return lines


def _notes(context: dict) -> list[tuple[str, str]]:
    return [(str(k), str(v)) for k, v in context.get("notes", {}).items()]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(spec: TableSpec, records: list[dict], context: dict) -> str:
    out = [
        f"## {spec.title}",
        "",
        f"Paper values: {spec.source}. {DIFF_LABEL} where both exist; {MISSING}: not available.",
        "",
    ]
    header = ["Method", "Source"] + [f"{c.label} {ARROWS[c.better]}".strip() for c in spec.columns]
    for block_key in dict.fromkeys(r["block"] for r in records):
        label = next(r["block_label"] for r in records if r["block"] == block_key)
        out += [f"### {_md_escape(label)}", ""]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join(["---", "---"] + ["---:"] * len(spec.columns)) + "|")
        for method, source, cells in _grid(spec, records, block_key):
            out.append("| " + " | ".join(_md_escape(x) for x in [method, source, *cells]) + " |")
        out.append("")
    notes = _notes(context)
    if notes:
        out += ["Notes:", ""] + [f"- {_md_escape(k)}: {_md_escape(v)}" for k, v in notes] + [""]
    return "\n".join(out)


def render_csv(spec: TableSpec, records: list[dict], context: dict) -> str:
    """Tidy CSV (one line per cell); title and notes as leading '#' comment lines (pandas: ``comment='#'``)."""
    buffer = io.StringIO()
    buffer.write(f"# {spec.title}\n# paper values: {spec.source}\n")
    for key, value in _notes(context):
        buffer.write(f"# {key}: {value}\n".replace("\r", " "))
    fields = ["block", "block_label", "row", "row_label", "column", "column_label", "ours", "paper", "diff"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", MISSING: "---", "−": "$-$", "Δ": r"$\Delta$",
    "↓": r"$\downarrow$", "↑": r"$\uparrow$", "β": r"$\beta$", "ω": r"$\omega$",
}


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)


def render_latex(spec: TableSpec, records: list[dict], context: dict) -> str:
    n = len(spec.columns)
    out = [
        f"% {tex_escape(spec.title)} -- generated by benchmarks.tables.render; do not edit",
        r"\begin{tabular}{ll" + "r" * n + "}",
        r"\toprule",
        " & ".join(["Method", "Source"] + [tex_escape(f"{c.label} {ARROWS[c.better]}".strip()) for c in spec.columns])
        + r" \\",
    ]
    for block_key in dict.fromkeys(r["block"] for r in records):
        label = next(r["block_label"] for r in records if r["block"] == block_key)
        out += [r"\midrule", rf"\multicolumn{{{n + 2}}}{{l}}{{\textbf{{{tex_escape(label)}}}}} \\", r"\midrule"]
        for method, source, cells in _grid(spec, records, block_key):
            out.append(" & ".join(tex_escape(x) for x in [method, source, *cells]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    notes = _notes(context)
    if notes:
        out.append(r"\par\footnotesize")
        out += [rf"\textit{{{tex_escape(k)}}}: {tex_escape(v)}\\" for k, v in notes]
    return "\n".join(out) + "\n"


def render_table(spec: TableSpec, results: dict, *, context: dict) -> dict[str, str]:
    """Markdown, CSV and LaTeX renderings (keys ``md``, ``csv``, ``tex``) of ``results`` beside the paper's values."""
    records = table_cells(spec, results, context)
    return {
        "md": render_markdown(spec, records, context),
        "csv": render_csv(spec, records, context),
        "tex": render_latex(spec, records, context),
    }


def write_table(outputs: dict[str, str], directory, name: str) -> list[Path]:
    """Atomically write ``<directory>/<name>.md|.csv|.tex`` from :func:`render_table`'s outputs."""
    paths = []
    for ext in ("md", "csv", "tex"):
        if ext not in outputs:
            raise ValueError(f"outputs lack {ext!r}: pass render_table's result")
        path = Path(directory) / f"{name}.{ext}"
        atomic_write_text(path, outputs[ext])
        paths.append(path)
    return paths
