"""Tables of results: Markdown text that a notebook shows as a rendered table and a terminal prints.

`markdown_table(header, rows)` builds the text (the benches print it, the READMEs quote it);
`Table` holds one and renders itself in Jupyter (`_repr_markdown_`) while `print()` gives the text;
`show_table(...)` shows either, or any Markdown string, the right way for where it runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["Table", "markdown_table", "show_table"]


def _cell(value: Any) -> str:
    # a "|" inside a cell would end it early; a newline would end the row
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]], numeric_from: int = 1) -> str:
    """A markdown table; columns from `numeric_from` on are right-aligned (figures).

    Cells are written with `str()`; a row with another number of cells than the header is refused.
    """
    header = [_cell(h) for h in header]
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    for row in rows:
        row = list(row)
        if len(row) != len(header):
            raise ValueError(f"row {row!r} has {len(row)} cells, the header {len(header)}")
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines)


class Table:
    """A markdown table: rendered when it is a notebook cell's value, its text under `print()`/`str()`."""

    def __init__(self, header: Sequence[Any], rows: Iterable[Sequence[Any]], numeric_from: int = 1) -> None:
        self.header = list(header)
        self.rows = [list(row) for row in rows]
        self.markdown = markdown_table(self.header, self.rows, numeric_from)

    def _repr_markdown_(self) -> str:
        return self.markdown

    def __str__(self) -> str:
        return self.markdown

    def __repr__(self) -> str:  # a terminal REPL shows the table itself, too
        return self.markdown


def show_table(table: str | Table | Any) -> None:
    """Show a table: rendered (IPython Markdown) in a Jupyter notebook, printed as text elsewhere.

    `table` is Markdown text, a `Table`, or any object with `_repr_markdown_()` (else its `str()`).
    """
    from labkit.plots import in_notebook

    if isinstance(table, str):
        text = table
    elif hasattr(table, "_repr_markdown_"):
        text = table._repr_markdown_()
    else:
        text = str(table)
    if in_notebook():
        from IPython.display import Markdown, display

        display(Markdown(text))
    else:
        print(text)
