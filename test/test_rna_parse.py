"""parse_rna builds the vector by gene name and reports every unusable value instead of inventing one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import REFERENCE, ROOT

from chimera_surv.readers.rna import default_gene_order, parse_rna

GENES = ["A1BG", "A1CF", "A2M", "TP53", "ZZZ3"]


def test_values_follow_the_gene_list_not_the_key_order():
    raw = {"ZZZ3": 5.0, "TP53": 4.0, "A2M": 3.0, "A1CF": 2.0, "A1BG": 1.0}
    vec = parse_rna(raw, GENES)
    assert vec.values.dtype == np.float32 and vec.values.shape == (5,)
    np.testing.assert_array_equal(vec.values, [1, 2, 3, 4, 5])
    assert vec.report.present == 5 and vec.report.issues == []


def test_bad_values_are_nan_and_counted():
    raw = [{"A1BG": "2.5", "A1CF": float("nan"), "A2M": "abc", "TP53": None, "EXTRA1": 1, "EXTRA2": 2}]
    vec = parse_rna(raw, GENES)  # list-wrapped
    assert vec.values[0] == np.float32(2.5)
    assert np.isnan(vec.values[1:]).all()
    r = vec.report
    assert (r.present, r.coerced, r.nonfinite, r.nonnumeric, r.missing, r.extra) == (1, 1, 1, 1, 2, 2)
    assert r.n_genes == 5 and r.fraction_present == pytest.approx(0.2)


def test_infinities_booleans_and_float32_overflow():
    raw = {"A1BG": float("inf"), "A1CF": "-inf", "A2M": True, "TP53": 1e300, "ZZZ3": -3}
    vec = parse_rna(raw, GENES)
    assert np.isnan(vec.values[:4]).all() and vec.values[4] == -3.0
    assert vec.report.nonfinite == 3 and vec.report.nonnumeric == 1 and vec.report.present == 1


@pytest.mark.parametrize("raw", [{}, [], None, "garbage", 7, [{}]])
def test_empty_or_non_object_gives_all_nan(raw):
    vec = parse_rna(raw, GENES)
    assert vec.values.shape == (5,) and np.isnan(vec.values).all()
    assert vec.report.present == 0 and vec.report.missing == 5 and vec.report.issues


def test_report_serialises():
    report = parse_rna({"A1BG": "x"}, GENES).report
    assert json.loads(json.dumps(report.to_dict()))["nonnumeric"] == 1


def test_default_gene_order_is_the_repository_copy():
    genes = default_gene_order()
    assert len(genes) == 19359 and genes[:3] == ["A1BG", "A1CF", "A2M"] and genes == sorted(genes)
    assert genes == json.loads((ROOT / "resources" / "gene_order.json").read_text())
    assert "gene_order.json" in (ROOT / "resources" / "README.md").read_text()  # its source is named beside it


@pytest.mark.reference
def test_repository_gene_order_equals_the_reference_copy():
    assert default_gene_order() == json.loads((REFERENCE / "chimera" / "gene_order.json").read_text())


def test_full_length_vector_from_a_complete_json():
    genes = default_gene_order()
    raw = {g: float(i % 97) for i, g in enumerate(reversed(genes))}
    vec = parse_rna(raw, genes)
    assert vec.report.present == len(genes) and not np.isnan(vec.values).any()
    assert vec.values[-1] == 0.0 and vec.values[0] == float((len(genes) - 1) % 97)


def test_gene_order_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        default_gene_order(tmp_path / "none.json")
    dup = tmp_path / "dup.json"
    dup.write_text('["A", "A"]')
    with pytest.raises(ValueError):
        default_gene_order(dup)
