"""Config/cohort checks: labels-CSV columns must exist, the declared RNA scale and its plausibility warning."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from chimera_surv.readers.clinical import load_schema
from train.cohort import LabelSpec, load_cohort
from train.data import check_rna_scale, rna_options

SCHEMA = {"name": "t", "features": {"age": {"type": "numeric", "range": [0, 120]}},
          "labels": {"time": "os", "event": "dead", "event_true": ["1"]}}


@pytest.fixture()
def cohort(tmp_path):
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    for k in range(4):
        case = tmp_path / "data" / f"P{k}"
        case.mkdir(parents=True)
        (case / f"P{k}_CD.json").write_text(json.dumps({"age": 50 + k, "os": 10.0 + k, "dead": k % 2}))
    (tmp_path / "labels.csv").write_text("id,months,death,site\n" + "".join(
        f"P{k},{20 + k},{1 - k % 2},{'A' if k < 2 else 'B'}\n" for k in range(4)))
    return tmp_path


def _load(root, columns):
    schema = load_schema(root / "schema.json")
    spec = LabelSpec.from_config(schema, {"csv": "labels.csv", "columns": columns}, root)
    return load_cohort(root, spec, survival=True)


def test_labels_csv_with_named_columns_reads_labels_and_cohort(cohort):
    patients = _load(cohort, {"case_id": "id", "time": "months", "event": "death", "cohort": "site"})
    assert [(p.case_id, p.time, p.event, p.cohort) for p in patients] == [
        ("P0", 20.0, 1, "A"), ("P1", 21.0, 0, "A"), ("P2", 22.0, 1, "B"), ("P3", 23.0, 0, "B")]


def test_a_missing_label_column_is_an_error_naming_it(cohort):
    with pytest.raises(ValueError, match="no column 'time' for `time`"):  # default name, not in the CSV
        _load(cohort, {"case_id": "id", "event": "death"})
    with pytest.raises(ValueError, match="no column 'centre' for `cohort`"):  # a named column that is absent
        _load(cohort, {"case_id": "id", "time": "months", "event": "death", "cohort": "centre"})
    with pytest.raises(ValueError, match="no column 'case_id'"):
        _load(cohort, {"time": "months", "event": "death"})


def test_null_roles_read_labels_from_the_clinical_json(cohort):
    patients = _load(cohort, {"case_id": "id", "time": None, "event": None, "cohort": "site"})
    assert [(p.time, p.event, p.cohort) for p in patients] == [(10.0, 0, "A"), (11.0, 1, "A"), (12.0, 0, "B"),
                                                               (13.0, 1, "B")]


def test_rna_scale_decides_log1p():
    assert rna_options({})["log1p"] is True
    assert rna_options({"scale": "log", "top_k": 5}) == {"log1p": False, "top_k": 5}
    assert rna_options({"scale": "counts", "log1p": True})["log1p"] is True
    with pytest.raises(ValueError, match="contradicts scale: log"):
        rna_options({"scale": "log", "log1p": True})
    with pytest.raises(ValueError, match="scale must be one of"):
        rna_options({"scale": "tpm"})


def test_rna_scale_warning_when_values_look_logged_or_counts(caplog):
    rng = np.random.default_rng(0)
    counts = rng.negative_binomial(2, 0.002, size=(20, 50)).astype(np.float32)
    logged = np.log2(counts + 1) - 5.0  # log values, centred: small and partly negative
    with caplog.at_level(logging.WARNING, logger="train.data"):
        assert check_rna_scale(counts, "counts") is None
        assert check_rna_scale(logged, "log") is None
        assert "look already log-transformed" in check_rna_scale(logged, "counts")
        assert "look like counts" in check_rna_scale(counts, "log")
        assert check_rna_scale(np.full((3, 4), np.nan), "counts") is None
    assert sum("RNA values look" in r.message for r in caplog.records) == 2
