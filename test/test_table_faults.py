"""A table costs a bad row or cell, never the cohort (issue 20, class 2): chimera_surv/readers/table.py and
`predict_cohort` on a CSV with Excel's byte-order mark, a latin-1 byte, a 200 kB cell, extra or missing cells,
an unclosed quote, a NUL byte, `;` separators, repeated or missing ids, and Parquet without pyarrow."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from fault_builders import classical_bundle, clinical_values

from chimera_surv.readers import table as table_module
from chimera_surv.readers.table import TableError, read_table

HEADER = "case_id,age,sex,stage,BRS,no_instillations\n"
ROWS = ["P1,61,Male,TaHG,BRS1,10\n", "P2,70,Female,T1HG,BRS2,3\n", "P3,55,Male,TaHG,BRS3,0\n"]


def _write(tmp_path, body: bytes, name="cohort.csv"):
    path = tmp_path / name
    path.write_bytes(body)
    return path


def _clean() -> bytes:
    return (HEADER + "".join(ROWS)).encode()


def test_a_clean_table_reads_every_row_as_text_indexed_by_line(tmp_path):
    frame, problems = read_table(_write(tmp_path, _clean()), "case_id")
    assert problems == [] and list(frame["case_id"]) == ["P1", "P2", "P3"] and list(frame.index) == [2, 3, 4]
    assert frame.loc[2, "age"] == "61" and frame.attrs["rejected"] == []


def test_one_latin1_line_leaves_the_utf8_lines_intact(tmp_path):
    path = _write(tmp_path, HEADER.encode() + "P1,61,Mâle,TaHG,BRS1,10\n".encode() + "P2,70,Fémale,T1HG,BRS2,3\n"
                  .encode("latin-1"))
    frame, problems = read_table(path, "case_id")
    assert list(frame["sex"]) == ["Mâle", "Fémale"] and "line(s) 3 " in problems[0]


def test_excel_utf8_byte_order_mark(tmp_path):
    frame, problems = read_table(_write(tmp_path, b"\xef\xbb\xbf" + _clean()), "case_id")
    assert problems == [] and frame.columns[0] == "case_id" and len(frame) == 3


def test_utf16_with_byte_order_mark(tmp_path):
    frame, _ = read_table(_write(tmp_path, _clean().decode().encode("utf-16")), "case_id")
    assert list(frame["case_id"]) == ["P1", "P2", "P3"]


def test_a_latin1_byte_falls_back_with_a_named_warning(tmp_path):
    path = _write(tmp_path, _clean() + "P4,60,Fémale,TaHG,BRS1,1\n".encode("latin-1"))
    frame, problems = read_table(path, "case_id")
    assert len(frame) == 4 and frame.loc[5, "sex"] == "Fémale"
    assert len(problems) == 1 and str(path) in problems[0] and "line(s) 5 " in problems[0] and "cp1252" in problems[0]


def test_an_oversized_cell_is_missing_and_named(tmp_path):
    path = _write(tmp_path, _clean() + b"P4,60," + b"x" * 200_000 + b",TaHG,BRS1,1\n")
    frame, problems = read_table(path, "case_id")
    assert len(frame) == 4 and isinstance(frame.loc[5, "sex"], float) and math.isnan(frame.loc[5, "sex"])
    assert any("line 5" in p and "'sex'" in p and str(path) in p for p in problems)


@pytest.mark.parametrize("row", ["P9,60,Male,TaHG,BRS1,1,surplus\n", "P9,60\n"])
def test_a_row_with_extra_or_missing_cells_costs_that_row_only(tmp_path, row):
    path = _write(tmp_path, (HEADER + ROWS[0] + row + ROWS[1] + ROWS[2]).encode())
    frame, problems = read_table(path, "case_id")
    assert list(frame["case_id"]) == ["P1", "P2", "P3"]
    assert frame.attrs["rejected"][0][:2] == (3, "P9")
    assert any("line 3" in p and "'P9'" in p and str(path) in p for p in problems)


def test_an_unclosed_quote_does_not_swallow_the_rest(tmp_path):
    path = _write(tmp_path, (HEADER + '"P1,61,Male,TaHG,BRS1,10\n' + ROWS[1] + ROWS[2]).encode())
    frame, problems = read_table(path, "case_id")
    assert {"P2", "P3"} <= set(frame["case_id"]) and problems


def test_semicolons_nul_bytes_blank_lines_and_whitespace(tmp_path):
    body = b"case_id;age;sex\n\nP1; 61 ;Male\nP2;\x0070;  \n"
    frame, _ = read_table(_write(tmp_path, body), "case_id")
    assert list(frame["case_id"]) == ["P1", "P2"] and frame.loc[3, "age"] == "61" and frame.loc[4, "age"] == "70"
    assert isinstance(frame.loc[4, "sex"], float)


def test_missing_and_repeated_ids_are_skipped_and_named(tmp_path):
    path = _write(tmp_path, (HEADER + ROWS[0] + ",60,Male,TaHG,BRS1,1\n" + ROWS[0]).encode())
    frame, problems = read_table(path, "case_id")
    assert list(frame["case_id"]) == ["P1"]
    assert [r[2] for r in frame.attrs["rejected"]] == ["no id", "repeats the id of line 2"]
    assert len(problems) == 2


def test_repeated_and_empty_header_names_are_renamed(tmp_path):
    frame, problems = read_table(_write(tmp_path, b"case_id,age,age,\nP1,1,2,3\n"), "case_id")
    assert list(frame.columns) == ["case_id", "age", "age.2", "column_4"] and len(problems) == 2


@pytest.mark.parametrize("body, cause", [(b"", "empty"), (b"\n\n  \n", "empty"), (b"a,b\n1,2\n", "no id column")])
def test_a_file_that_is_no_table_is_one_line(tmp_path, body, cause):
    path = _write(tmp_path, body)
    with pytest.raises(TableError, match=cause) as info:
        read_table(path, "case_id")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_and_oversized_files_are_refused(tmp_path, monkeypatch):
    with pytest.raises(TableError, match="cannot read"):
        read_table(tmp_path / "absent.csv")
    monkeypatch.setattr(table_module, "MAX_TABLE_BYTES", 10)
    with pytest.raises(TableError, match="over the table limit"):
        read_table(_write(tmp_path, _clean()))


def test_parquet_without_pyarrow_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setattr(table_module.importlib.util, "find_spec", lambda name: None)
    path = _write(tmp_path, b"PAR1....", "cohort.parquet")
    with pytest.raises(TableError, match="pyarrow") as info:
        read_table(path, "case_id")
    assert str(path) in str(info.value)


def test_the_csv_module_limit_is_left_as_it_was(tmp_path):
    before = csv.field_size_limit()
    read_table(_write(tmp_path, _clean()))
    assert csv.field_size_limit() == before


def test_predict_cohort_keeps_every_readable_patient(tmp_path):
    """The issue's four faults in one CSV: BOM, latin-1 byte, 200 kB cell, a row with an extra cell."""
    from chimera_surv.predict_cohort import predict_cohort

    bundle = classical_bundle(tmp_path / "model" / "nmibc-recurrence")
    rng = np.random.default_rng(5)
    cells = []
    for k in range(6):
        values = clinical_values(rng)
        cells.append([f"P{k}".encode()] + [str(values[key]).encode() for key in HEADER.strip().split(",")[1:]])
    cells[1][2] = "Fémale".encode("latin-1")
    cells[2][2] = b"y" * 200_000
    cells[3].append(b"surplus")
    lines = [b",".join(row) + b"\n" for row in cells]
    path = _write(tmp_path, b"\xef\xbb\xbf" + HEADER.encode() + b"".join(lines))
    out, rows = predict_cohort(bundle, path, tmp_path / "out.json")
    by_id = {r["case_id"]: r for r in rows}
    assert set(by_id) == {f"P{k}" for k in range(6)}
    predicted = [k for k, r in by_id.items() if not str(r["status"]).startswith("failed")]
    assert sorted(predicted) == ["P0", "P1", "P2", "P4", "P5"]
    assert all(math.isfinite(by_id[k]["months"]) for k in predicted)
    assert "line 5" in by_id["P3"]["status"] and "cells" in by_id["P3"]["status"]
    assert json.loads(out.read_text()) == rows
