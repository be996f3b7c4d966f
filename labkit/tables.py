"""Markdown tables: rendered in a notebook, printed as text in a terminal (the benches and READMEs quote them)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["Table", "markdown_table", "show_table"]


def _cell(value: Any) -> str:
    # a "|" inside a cell would end it early; a newline would end the row
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]], numeric_from: int = 1) -> str:
    """Columns from `numeric_from` on are right-aligned (figures); a row of the wrong length is refused."""
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
    """A markdown table: rendered when it is a notebook cell's value, its text under `print()`, `str()`, `repr()`."""

    def __init__(self, header: Sequence[Any], rows: Iterable[Sequence[Any]], numeric_from: int = 1) -> None:
        self.header = list(header)
        self.rows = [list(row) for row in rows]
        self.markdown = markdown_table(self.header, self.rows, numeric_from)

    def _repr_markdown_(self) -> str:
        return self.markdown

    __str__ = __repr__ = _repr_markdown_


def show_table(table: str | Table | Any) -> None:
    """Show Markdown text, a `Table` or anything with `_repr_markdown_()` (else its `str()`): rendered in a
    notebook, printed elsewhere."""
    from labkit.plots import in_notebook

    text = table if isinstance(table, str) else getattr(table, "_repr_markdown_", table.__str__)()
    if in_notebook():
        from IPython.display import Markdown, display

        display(Markdown(text))
    else:
        print(text)
