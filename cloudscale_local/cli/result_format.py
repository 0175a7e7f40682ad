"""How `cloudscale query` prints a result: a table, one record at a time, CSV, TSV or JSON.

`table` is for a terminal, and only while it stays readable: when the columns cannot each get
a useful width in the terminal (21 columns of `SELECT * FROM events` in 80 characters), the
result is printed `vertical` instead, one `column: value` line per column, record by record
(psql's `\\x auto`, MySQL's `\\G`), rather than squeezing every column to a character. CSV and TSV
come from the `csv` module, with a header row. NULL is `NULL` in the two layouts meant for
people, an empty field in CSV and TSV (as psql's and sqlite3's CSV output), and `null` in JSON;
a BLOB is written as SQLite writes its literal, `X'0A1B'`, everywhere but JSON (hex digits).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any, Final, Literal

import click
import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cloudscale_local.terminal_text import escape_controls

__all__ = ["FORMATS", "NULL_TEXT", "OutputFormat", "fits_as_table", "print_result"]

OutputFormat = Literal["table", "vertical", "csv", "tsv", "json"]
FORMATS: Final[tuple[OutputFormat, ...]] = ("table", "vertical", "csv", "tsv", "json")

NULL_TEXT: Final = "NULL"
"""NULL in the table and vertical layouts."""
MIN_COLUMN_WIDTH: Final = 8
"""A table column narrower than its content gets at least this many characters (or its header's)."""
_CELL_OVERHEAD: Final = 3
"""What rich's boxed table adds per column: a rule and a space either side."""


def print_result(output: OutputFormat, columns: Sequence[str], rows: Sequence[Sequence[Any]], width: int) -> None:
    """Print `rows` under `columns` in `output`, for a terminal `width` characters wide."""
    if output == "json":
        click.echo(orjson.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=_json_default).decode())
    elif output in ("csv", "tsv"):
        click.echo(_delimited(columns, rows, "," if output == "csv" else "\t"), nl=False)
    elif not columns or not rows:
        click.echo("(no rows)")
    elif output == "table" and fits_as_table(columns, rows, width):
        _print_table(columns, rows, width)
    else:
        click.echo(_vertical(columns, rows))


def fits_as_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], width: int) -> bool:
    """Whether every column can get its content's width, or at least `MIN_COLUMN_WIDTH` (its header's if wider)."""
    needed = 1  # the table's closing rule
    for index, column in enumerate(columns):
        natural = max(_width(column), *(_width(_shown(row[index])) for row in rows))
        needed += min(natural, max(MIN_COLUMN_WIDTH, _width(column))) + _CELL_OVERHEAD
    return needed <= width


def _print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], width: int) -> None:
    table = Table()
    for column in columns:
        table.add_column(Text(column), overflow="fold")
    for row in rows:
        # Text cells: a value holding `[...]` is data, not rich markup.
        table.add_row(*(Text(_shown(value)) for value in row))
    Console(width=width, highlight=False).print(table)


def _vertical(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """MySQL's `\\G` layout: a header line per record, then `column: value`, names right-aligned."""
    name_width = max(_width(column) for column in columns)
    lines: list[str] = []
    for number, row in enumerate(rows, start=1):
        lines.append(f"{'*' * 27} {number}. row {'*' * 27}")
        for column, value in zip(columns, row, strict=True):
            # A value on several lines keeps its later lines under the first.
            text = _shown(value).replace("\n", "\n" + " " * (name_width + 2))
            lines.append(f"{column:>{name_width}}: {text}")
    return "\n".join(lines)


def _delimited(columns: Sequence[str], rows: Sequence[Sequence[Any]], delimiter: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if value is None else _text(value) for value in row] for row in rows])
    return buffer.getvalue()


def _text(value: Any) -> str:
    if value is None:
        return NULL_TEXT
    if isinstance(value, bytes):
        return f"X'{value.hex().upper()}'"
    return str(value)


def _shown(value: Any) -> str:
    """`_text(value)` for a person to read: line breaks and tabs kept, other control characters escaped."""
    return escape_controls(_text(value), keep="\n\t")


def _width(text: str) -> int:
    """The widest line's length (a value on several lines is as wide as its widest)."""
    return max((len(line) for line in text.split("\n")), default=0)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
