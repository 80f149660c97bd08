"""Tables as column specs: each column is its heading, how a row's cell is written, its raw value and how it is shown,
declared once per table and rendered to markdown (the report), CSV, and rich (bench.cli.tables): never a list of
headings kept beside a list of cells."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Column:
    """One column: ``text(row)`` is its cell as a table writes it; ``value(row)`` its raw value where a CSV or JSON
    needs one (default: the text); ``left``: aligned left (text) rather than right (figures); ``style(row)``: how a
    terminal shows the cell (a rich style, e.g. "yellow"; "bold" is bold in markdown too); ``wrap``: the terminal may
    break the cell over lines."""

    name: str
    text: Callable[[Any], str]
    value: Callable[[Any], Any] | None = None
    left: bool = False
    style: Callable[[Any], str | None] | None = None
    wrap: bool = False

    def cell(self, row) -> str:
        return str(self.text(row))

    def raw(self, row):
        return self.value(row) if self.value is not None else self.cell(row)

    def styled(self, row) -> str | None:
        return self.style(row) if self.style is not None else None


def field(name: str, key: str | None = None, *, left: bool = False, write: Callable[[Any], str] = str) -> Column:
    """A column of a dict's ``key`` (default: the heading), written by ``write``, its value the dict's own."""
    key = key or name
    return Column(name, lambda row: "-" if row.get(key) is None else write(row[key]), lambda row: row.get(key), left)


def markdown(columns: Iterable[Column], rows: Iterable) -> str:
    """A GitHub markdown table: the columns' headings, then a line per row (``|`` escaped, bold where styled so)."""
    columns, lines = list(columns), []

    def escaped(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    for row in rows:
        cells = []
        for c in columns:
            text = escaped(c.cell(row))
            cells.append(f"**{text}**" if "bold" in (c.styled(row) or "") and text not in ("", "-") else text)
        lines.append("| " + " | ".join(cells) + " |")
    head = ["| " + " | ".join(escaped(c.name) for c in columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    return "\n".join(head + lines)


def csv_text(columns: Iterable[Column], rows: Iterable) -> str:
    """CSV with a header line of the columns' names and a line per row of their raw values."""
    columns = list(columns)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([c.name for c in columns])
    writer.writerows([c.raw(row) for c in columns] for row in rows)
    return buf.getvalue()
