"""The per-task schema files: every key of chimera-spec.md §2 is there, labels are not features, and a new
cohort trains from a schema JSON alone."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

from chimera_surv.readers.clinical import ClinicalSchema, load_schema, parse_clinical
from chimera_surv.tasks import TASKS

TASK1_KEYS = {
    "age_at_prostatectomy",
    "primary_gleason",
    "secondary_gleason",
    "tertiary_gleason",
    "ISUP",
    "pre_operative_PSA",
    "pT_stage",
    "positive_lymph_nodes",
    "capsular_penetration",
    "positive_surgical_margins",
    "invasion_seminal_vesicles",
    "lymphovascular_invasion",
    "earlier_therapy",
}
BLADDER_KEYS = {
    "age",
    "sex",
    "smoking",
    "tumor",
    "stage",
    "substage",
    "grade",
    "reTUR",
    "LVI",
    "variant",
    "EORTC",
    "no_instillations",
}


@pytest.mark.parametrize("task_id", [1, 2, 3])
def test_schema_files_load_by_every_name(task_id):
    by_id = load_schema(task_id)
    assert load_schema(f"task{task_id}").raw == by_id.raw
    assert load_schema(TASKS[task_id]).raw == by_id.raw
    assert load_schema(ROOT / "resources" / "schemas" / f"task{task_id}.json").raw == by_id.raw
    assert ClinicalSchema.from_dict(json.loads(json.dumps(by_id.to_dict()))).columns() == by_id.columns()


def test_feature_keys_match_the_spec():
    assert {f.key for f in load_schema(1).features} == TASK1_KEYS
    assert {f.key for f in load_schema(2).features} == BLADDER_KEYS
    assert {f.key for f in load_schema(3).features} == BLADDER_KEYS | {"BRS"}


def test_labels_and_leakage_are_dropped_not_features():
    t1, t2, t3 = load_schema(1), load_schema(2), load_schema(3)
    assert {"BCR", "time_to_follow-up/BCR", "BCR_PSA"} <= t1.drop_keys
    assert "BRS" in t2.drop_keys and "BRS" in t2.label_keys  # Task 2: BRS is the label
    assert "BRS" not in t3.drop_keys  # Task 3: BRS is a feature
    assert {"progression", "Time_to_prog_or_FUend"} <= t3.label_keys
    assert "chimera_id_t3" in t2.drop_keys and "chimera_id_t3" in t3.drop_keys


def test_earlier_therapy_expands_to_flags():
    names = [name for name, _ in load_schema(1).columns()]
    assert [n for n in names if n.startswith("earlier_therapy")] == [
        "earlier_therapy__radiotherapy",
        "earlier_therapy__hormones",
        "earlier_therapy__cryotherapy",
    ]


def test_a_new_cohort_schema_from_a_path(tmp_path):
    schema = {
        "name": "other-cohort",
        "features": {
            "ki67": {"type": "numeric", "range": [0, 100]},
            "site": {"type": "categorical"},  # open category set
            "node": {"type": "binary", "true": ["pos"], "false": ["neg"]},
            "grade": {"type": "ordinal", "levels": {"low": 1, "high": 3}},
        },
        "labels": {"time": "os_months", "event": "dead"},
        "missing_tokens": ["unknown"],
    }
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    record = parse_clinical(
        {
            "ki67": "12.5",
            "site": "Colon",
            "node": "POS",
            "grade": "High",
            "os_months": 3,
            "dead": 1,
            "extra": 1,
        },
        str(path),
    )
    assert record.values == {"ki67": 12.5, "site": "Colon", "node": 1.0, "grade": 3.0}
    assert record.issues == ["clinical 'ki67': number given as text ('12.5'), parsed",
                             "clinical: unknown key 'extra' ignored"]
    assert parse_clinical({"ki67": "unknown", "site": "unknown"}, path).values["ki67"] is None


@pytest.mark.parametrize(
    "bad",
    [
        {"features": {"a": {"type": "text"}}},
        {"features": {"a": {"type": "ordinal"}}},
        {"features": {"a": {"type": "numeric", "range": [5, 1]}}},
        {"features": {"BCR": {"type": "numeric"}}, "labels": {"event": "BCR"}},
        {"no_features": {}},
    ],
)
def test_malformed_schema_is_a_config_error(bad):
    with pytest.raises(ValueError):
        ClinicalSchema.from_dict(bad)


def test_missing_schema_path_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_schema(tmp_path / "nope.json")
