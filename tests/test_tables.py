"""labkit.tables: Markdown tables rendered in a notebook, printed as text in a terminal."""

from __future__ import annotations

import pytest

from labkit import plots, tables
from labkit.tables import Table, markdown_table, show_table


def test_markdown_table_writes_cells_with_str_and_escapes_pipes():
    text = markdown_table(("run", "lr", "acc"), [("a|b", 0.1, 0.75)])
    assert text.splitlines() == ["| run | lr | acc |", "| --- | ---: | ---: |", r"| a\|b | 0.1 | 0.75 |"]
    assert markdown_table(("a", "b"), [], numeric_from=2).splitlines()[1] == "| --- | --- |"
    with pytest.raises(ValueError, match="3 cells"):
        markdown_table(("a", "b"), [("x", "y", "z")])


def test_throughput_still_exports_markdown_table():
    import throughput

    assert throughput.markdown_table is tables.markdown_table


def test_table_is_markdown_in_a_notebook_and_text_under_print():
    table = Table(("measure", "value"), [("speed", 12)])
    assert table._repr_markdown_() == str(table) == repr(table) == table.markdown
    assert str(table).splitlines()[-1] == "| speed | 12 |"
    assert table.header == ["measure", "value"] and table.rows == [["speed", 12]]


@pytest.mark.parametrize("given", ["text", "table", "object"])
def test_show_table_prints_plain_text_in_a_terminal(given, monkeypatch, capsys):
    monkeypatch.setattr(plots, "in_notebook", lambda: False)
    text = markdown_table(("a", "b"), [("x", "1")])
    table = {"text": text, "table": Table(("a", "b"), [("x", "1")]), "object": _Stringy(text)}[given]
    show_table(table)
    assert capsys.readouterr().out == text + "\n"


@pytest.mark.parametrize("given", ["text", "table"])
def test_show_table_displays_markdown_in_a_notebook(given, monkeypatch, capsys):
    import IPython.display

    shown = []
    monkeypatch.setattr(plots, "in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kwargs: shown.append(obj))
    text = markdown_table(("a", "b"), [("x", "1")])
    show_table(text if given == "text" else Table(("a", "b"), [("x", "1")]))
    assert len(shown) == 1 and isinstance(shown[0], IPython.display.Markdown)
    assert shown[0].data == text and shown[0]._repr_markdown_() == text
    assert capsys.readouterr().out == ""  # rendered, not printed as well


class _Stringy:
    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text
