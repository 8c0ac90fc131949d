"""Paper tables: specs holding the paper's values and a pure renderer (ours beside theirs)."""
from benchmarks.tables.render import render_table, write_table
from benchmarks.tables.specs import FIGURE_3A, FIGURE_6B, TABLE_5D, TABLE_SPECS, TableSpec, get_spec

__all__ = ["render_table", "write_table", "get_spec", "TABLE_SPECS", "TableSpec", "TABLE_5D", "FIGURE_3A", "FIGURE_6B"]
