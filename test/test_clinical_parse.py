"""parse_clinical on the bad inputs the platform may send (chimera-spec.md §2): it never raises on content."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chimera_surv.readers.clinical import ClinicalRecord, load_schema, parse_clinical, read_labels

T1 = {
    "age_at_prostatectomy": 64,
    "primary_gleason": 4,
    "secondary_gleason": 3,
    "tertiary_gleason": "x",
    "ISUP": 3,
    "pre_operative_PSA": 7.9,
    "pT_stage": "3b",
    "positive_lymph_nodes": "0",
    "capsular_penetration": "1",
    "positive_surgical_margins": 1,
    "invasion_seminal_vesicles": "1",
    "lymphovascular_invasion": "1.0",
    "earlier_therapy": "none",
    "BCR": "1.0",
    "time_to_follow-up/BCR": 23.5,
    "BCR_PSA": 0.4,
}
T3 = {
    "age": 71,
    "sex": "Male",
    "smoking": "-1",
    "tumor": "Primary",
    "stage": "T1HG",
    "substage": "T1e",
    "grade": "G3",
    "reTUR": "Yes",
    "LVI": "No",
    "variant": "UCC + Variant",
    "EORTC": "Highest risk",
    "no_instillations": 21,
    "BRS": "BRS3",
    "progression": 1,
    "Time_to_prog_or_FUend": 14,
}


def test_task1_typical_record():
    record = parse_clinical(T1, load_schema(1))
    v = record.values
    assert v["age_at_prostatectomy"] == 64.0 and v["pre_operative_PSA"] == 7.9
    assert v["pT_stage"] == 3.5 and v["ISUP"] == 3.0
    assert v["tertiary_gleason"] is None
    assert v["lymphovascular_invasion"] == 1.0  # the "1.0" float string
    assert v["capsular_penetration"] == 1.0 and v["positive_lymph_nodes"] == 0.0
    assert [v[f"earlier_therapy__{k}"] for k in ("radiotherapy", "hormones", "cryotherapy")] == [
        0.0,
        0.0,
        0.0,
    ]
    assert "BCR" not in v and "BCR_PSA" not in v
    assert record.issues == ["clinical 'tertiary_gleason': missing ('x')"]  # labels are dropped silently


def test_list_wrapped_object_equals_the_object():
    assert parse_clinical([T1], 1).values == parse_clinical(T1, 1).values
    assert parse_clinical('[{"age": 70}]', 2).values["age"] == 70.0  # JSON text also accepted


@pytest.mark.parametrize("token", ["-1", -1, "x", "X", None, "", "nan", float("nan"), "NaN", -1.0])
def test_missing_tokens_become_none_with_an_issue(token):
    record = parse_clinical({**T3, "sex": token, "no_instillations": token}, 3)
    assert record.values["sex"] is None and record.values["no_instillations"] is None
    assert any("'sex'" in issue for issue in record.issues)
    assert any("'no_instillations'" in issue for issue in record.issues)


def test_numbers_as_strings_and_ints_for_string_categories():
    record = parse_clinical(
        {
            **T1,
            "age_at_prostatectomy": " 64 ",
            "pre_operative_PSA": "7.9",
            "primary_gleason": "4",
            "capsular_penetration": 1,
            "invasion_seminal_vesicles": 0,
            "positive_surgical_margins": "1",
            "pT_stage": "pT2c",
        },
        1,
    )
    v = record.values
    assert v["age_at_prostatectomy"] == 64.0 and v["pre_operative_PSA"] == 7.9 and v["primary_gleason"] == 4.0
    assert v["capsular_penetration"] == 1.0 and v["invasion_seminal_vesicles"] == 0.0
    assert v["positive_surgical_margins"] == 1.0 and v["pT_stage"] == 2.4


def test_case_and_spacing_of_categories_are_forgiven():
    v = parse_clinical({**T3, "variant": "ucc+variant", "EORTC": "HIGHEST RISK", "sex": " male "}, 3).values
    assert (v["variant"], v["EORTC"], v["sex"]) == ("UCC + Variant", "Highest risk", "Male")


def test_unknown_category_names_key_and_value():
    record = parse_clinical({**T3, "grade": "G9", "stage": "T4HG"}, 3)
    assert record.values["grade"] is None and record.values["stage"] is None
    assert "clinical 'grade': unknown category 'G9'" in record.issues
    assert "clinical 'stage': unknown category 'T4HG'" in record.issues


def test_missing_keys_and_unknown_keys():
    record = parse_clinical({"age": 70, "new_marker": 3}, 2)
    assert record.values["age"] == 70.0
    assert all(record.values[k] is None for k in record.values if k != "age")
    assert "clinical 'sex': key absent" in record.issues
    assert "clinical: unknown key 'new_marker' ignored" in record.issues


def test_task2_drops_brs_label_and_extra_id_but_task3_keeps_brs():
    t2 = parse_clinical({**T3, "chimera_id_t3": "3B_007"}, 2)
    assert "BRS" not in t2.values
    assert not [i for i in t2.issues if "BRS" in i or "chimera_id_t3" in i]
    t3 = parse_clinical(T3, 3)
    assert t3.values["BRS"] == "BRS3"
    assert t3.issues == ["clinical 'smoking': missing ('-1')"]  # labels dropped silently


def test_out_of_range_and_non_numbers():
    v = parse_clinical({**T1, "age_at_prostatectomy": 640, "pre_operative_PSA": "high"}, 1)
    assert v.values["age_at_prostatectomy"] is None and v.values["pre_operative_PSA"] is None
    assert any("outside" in i for i in v.issues) and any("not a number" in i for i in v.issues)


def test_earlier_therapy_substrings():
    v = parse_clinical({**T1, "earlier_therapy": "Radiotherapy + hormones"}, 1).values
    assert (
        v["earlier_therapy__radiotherapy"],
        v["earlier_therapy__hormones"],
        v["earlier_therapy__cryotherapy"],
    ) == (1.0, 1.0, 0.0)
    unknown = parse_clinical({**T1, "earlier_therapy": "unknown"}, 1)
    assert unknown.values["earlier_therapy__hormones"] is None


@pytest.mark.parametrize("raw", ["not json", 42, [], [1, 2], None, {"a": {"b": 1}}, True, b"\xff"])
def test_non_objects_give_an_all_missing_record(raw):
    record = parse_clinical(raw, 1)
    assert isinstance(record, ClinicalRecord)
    assert record.n_present() == 0 and record.issues


def test_nested_values_are_unusable_not_fatal():
    record = parse_clinical({**T3, "age": [71], "sex": {"v": "Male"}}, 3)
    assert record.values["age"] is None and record.values["sex"] is None
    assert any("unusable" in i for i in record.issues)


def test_read_labels():
    assert read_labels(T1, 1) == {"time": 23.5, "event": 1.0}
    assert read_labels({**T1, "BCR": "0.0"}, 1)["event"] == 0.0
    assert read_labels(T3, 3) == {"time": 14.0, "event": 1.0}
    assert read_labels({"BRS": "BRS2"}, 2) == {"target": 0.0}
    assert read_labels({"BRS": "brs3"}, 2) == {"target": 1.0}
    assert read_labels({}, 2) == {"target": None}


junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
keys = st.sampled_from(sorted(set(T1) | set(T3))) | st.text(max_size=6)


@settings(max_examples=150, deadline=None, database=None)  # no .hypothesis/ folder in the tree
@given(raw=st.dictionaries(keys, junk, max_size=12) | junk, task=st.sampled_from([1, 2, 3]))
def test_junk_never_raises_and_values_are_typed(raw, task):
    record = parse_clinical(raw, task)
    assert set(record.values) == {name for name, _ in load_schema(task).columns()}
    for value in record.values.values():
        assert value is None or isinstance(value, str) or (isinstance(value, float) and math.isfinite(value))
