"""One robust reader for a patient table (CSV/TSV, or Parquet when pyarrow is installed): one bad row or byte costs
that row, never the table.

Why: `predict_cohort` and training's table route read tables written by hand or by Excel. `pandas.read_csv` stops
the whole cohort at a row with an extra cell, a latin-1 byte, a 200 kB cell or Excel's byte-order mark. Here:

- encoding: a UTF-8 BOM (Excel "CSV UTF-8") or UTF-16 BOM is honoured, else UTF-8, else each line that is not
  UTF-8 is read as cp1252 (then latin-1, which decodes any byte), named with the file in a problem line;
- delimiter: `,`, `;` (Excel in many locales) or tab, whichever the header line holds most of;
- a cell over `limits.MAX_TABLE_CELL_CHARS` characters is treated as missing, named (row, column);
- a row with more or fewer cells than the header is skipped and named (file line and id); an unclosed quote that
  swallowed the following lines is detected and those lines are read on their own;
- blank and whitespace-only cells are missing (NaN); every other cell is the stripped text (no type guessing:
  callers decide what a number is); a row without an id, or repeating an earlier id, is skipped and named.

    frame, problems = read_table(path, id_column="case_id")

`frame` has one row per kept patient, index = the row's line number in the file (1 = header; Parquet: row number
+ 1), cells str or NaN. `problems` are one-line messages naming the file; `frame.attrs["rejected"]` lists the
skipped rows as (line, id or None, cause) so a caller can report those patients too. A file that cannot be a table
at all (missing, over `limits.MAX_TABLE_BYTES`, no header, no id column, Parquet without pyarrow) raises
`TableError`, one line naming the file and the cause.
"""

from __future__ import annotations

import codecs
import csv
import importlib.util
import io
import math
from pathlib import Path
from typing import Any

from chimera_surv.limits import MAX_TABLE_BYTES, MAX_TABLE_CELL_CHARS

PARQUET_SUFFIXES = (".parquet", ".pq")


class TableError(ValueError):
    """The file cannot be read as a table at all (one line naming the file and the cause)."""


def read_table(path: Path | str, id_column: str | None = None) -> tuple[Any, list[str]]:
    """(DataFrame of str-or-NaN cells indexed by file line, problems); see the module docstring."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise TableError(f"{path}: cannot read the table ({type(err).__name__}: {err.strerror or err})") from None
    if size > MAX_TABLE_BYTES:
        raise TableError(f"{path}: {size:,} bytes, over the table limit of {MAX_TABLE_BYTES:,} bytes "
                         f"(chimera_surv/limits.py)")
    problems: list[str] = []
    if path.suffix.lower() in PARQUET_SUFFIXES:
        header, rows = _parquet_rows(path)
    else:
        header, rows = _csv_rows(path, problems)
    return _frame(path, header, rows, id_column, problems), problems


# -- decoding ----------------------------------------------------------------------------------------------------


def decode(path: Path, data: bytes, problems: list[str]) -> str:
    """Text of `data`: a BOM's encoding, else UTF-8, else line by line UTF-8 / cp1252 / latin-1, so one latin-1
    byte in an otherwise UTF-8 file costs nothing else (the lines read otherwise are named in `problems`)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            problems.append(f"{path}: starts with a UTF-16 byte-order mark but is not UTF-16; read as bytes")
            data = data[2:]
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    lines, other = [], {}
    for number, raw in enumerate(data.split(b"\n"), 1):
        for name in ("utf-8", "cp1252", "latin-1"):
            try:
                lines.append(raw.decode(name))
            except UnicodeDecodeError:
                continue
            if name != "utf-8":
                other.setdefault(name, []).append(number)
            break
    for name, numbers in other.items():
        shown = ", ".join(map(str, numbers[:10])) + (" ..." if len(numbers) > 10 else "")
        problems.append(f"{path}: line(s) {shown} not UTF-8; read as {name}: check accented values")
    return "\n".join(lines)


# -- CSV -----------------------------------------------------------------------------------------------------------


def _csv_rows(path: Path, problems: list[str]) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TableError(f"{path}: cannot read the table ({type(err).__name__}: {err.strerror or err})") from None
    text = decode(path, data, problems).replace("\x00", "")
    lines = io.StringIO(text, newline="").readlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise TableError(f"{path}: the table is empty (no header line)")
    counts = {d: lines[first].count(d) for d in (",", ";", "\t")}
    delimiter = max(counts, key=lambda d: (counts[d], d == ","))
    old_limit = csv.field_size_limit()
    csv.field_size_limit(max(old_limit, MAX_TABLE_BYTES))  # long cells are bounded per cell below, not here
    try:
        parsed = _parse(lines[first:], delimiter, first)
    finally:
        csv.field_size_limit(old_limit)
    if not parsed:
        raise TableError(f"{path}: the table is empty (no header line)")
    header = [cell.strip() for cell in parsed[0][1]]
    return header, _fix_swallowed(path, parsed[1:], len(header), delimiter, problems)


def _parse(lines: list[str], delimiter: str, offset: int) -> list[tuple[int, list[str], int]]:
    """(first line number, cells, last line number) per CSV record, blank records dropped."""
    reader = csv.reader(iter(lines), delimiter=delimiter)
    out: list[tuple[int, list[str], int]] = []
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return out
        except csv.Error:  # a malformed record: its lines come back as a row that will not fit the header
            row = ["<malformed>"]
        end = reader.line_num
        if any(cell.strip() for cell in row):
            out.append((start + offset, row, end + offset))
        start = end + 1


def _fix_swallowed(path: Path, records: list[tuple[int, list[str], int]], width: int, delimiter: str,
                   problems: list[str]) -> list[tuple[int, list[str]]]:
    """A record that does not fit the header and spans several lines (an unclosed quote) is read line by line."""
    rows: list[tuple[int, list[str]]] = []
    for first, cells, last in records:
        if len(cells) == width or last == first:
            rows.append((first, cells))
            continue
        problems.append(f"{path}: lines {first}-{last} do not fit the header (an unclosed quote?); read line by line")
        text = delimiter.join(cells)
        for k, line in enumerate(text.splitlines()):
            if line.strip():
                split = next(csv.reader([line], delimiter=delimiter, quoting=csv.QUOTE_NONE))
                rows.append((first + k, [cell.strip().strip('"') for cell in split]))
    return rows


# -- Parquet -------------------------------------------------------------------------------------------------------


def _parquet_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    if importlib.util.find_spec("pyarrow") is None and importlib.util.find_spec("fastparquet") is None:
        raise TableError(f"{path}: Parquet needs pyarrow, which is not installed here; save the table as CSV "
                         f"(or `pip install pyarrow`)")
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - any reader failure is this file's, named
        raise TableError(f"{path}: unreadable Parquet ({type(err).__name__}: {str(err)[:200]})") from None
    header = [str(c) for c in frame.columns]
    rows = [(k + 2, ["" if _missing(v) else str(v) for v in values])
            for k, values in enumerate(frame.itertuples(index=False, name=None))]
    return header, rows


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value) in ("nan", "NaT", "<NA>")


# -- rows → frame --------------------------------------------------------------------------------------------------


def _frame(path: Path, header: list[str], rows: list[tuple[int, list[str]]], id_column: str | None,
           problems: list[str]) -> Any:
    import numpy as np
    import pandas as pd

    header = _unique_header(path, header, problems)
    if id_column is not None and id_column not in header:
        raise TableError(f"{path}: no id column {id_column!r} (columns: {header[:20]})")
    id_at = header.index(id_column) if id_column is not None else None
    kept: list[list[Any]] = []
    index: list[int] = []
    rejected: list[tuple[int, str | None, str]] = []
    seen: dict[str, int] = {}
    for line, cells in rows:
        row_id = _cell_id(cells, id_at)
        if len(cells) != len(header):
            cause = f"{len(cells)} cells, the header has {len(header)}"
            rejected.append((line, row_id, cause))
            problems.append(f"{path}: line {line} (id {row_id!r}): {cause}; this row is skipped")
            continue
        values: list[Any] = []
        for column, cell in zip(header, cells):
            if len(cell) > MAX_TABLE_CELL_CHARS:
                problems.append(f"{path}: line {line}, column {column!r}: a {len(cell):,}-character cell (limit "
                                f"{MAX_TABLE_CELL_CHARS:,}); treated as missing")
                values.append(np.nan)
            else:
                values.append(cell.strip() or np.nan)
        if id_at is not None:
            row_id = values[id_at] if isinstance(values[id_at], str) else None
            cause = ("no id" if row_id is None else
                     f"repeats the id of line {seen[row_id]}" if row_id in seen else None)
            if cause is not None:
                rejected.append((line, row_id, cause))
                problems.append(f"{path}: line {line} (id {row_id!r}): {cause}; this row is skipped")
                continue
            seen[row_id] = line
        kept.append(values)
        index.append(line)
    frame = pd.DataFrame(kept, columns=header, index=pd.Index(index, name="line"), dtype=object)
    frame.attrs["rejected"] = rejected
    return frame


def _cell_id(cells: list[str], id_at: int | None) -> str | None:
    if id_at is None or id_at >= len(cells):
        return None
    text = cells[id_at].strip()
    return text[:80] if text else None


def _unique_header(path: Path, header: list[str], problems: list[str]) -> list[str]:
    """Empty column names become `column_<k>`; a repeated name gets `.2`, `.3` (named in `problems`)."""
    out: list[str] = []
    for k, name in enumerate(header, 1):
        base = (name if len(name) <= MAX_TABLE_CELL_CHARS else name[:40]) or f"column_{k}"
        candidate, n = base, 1
        while candidate in out:
            n += 1
            candidate = f"{base}.{n}"
        if candidate != name:
            problems.append(f"{path}: header column {k} {name[:40]!r} renamed {candidate!r} (empty or repeated)")
        out.append(candidate)
    return out
