"""Clinical priors: CAPRA-S arithmetic, monotone months, bounded probabilities, finiteness on any input."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from chimera_surv.priors import PRIORS, CapraS, PriorOutput, prior_for_task, restricted_mean_time
from chimera_surv.readers.clinical import ClinicalRecord, parse_clinical
from chimera_surv.tasks import TASKS


def _t1(psa=5.0, p=3, s=3, sm=0, ece="0", svi="0", lni="0", **extra):
    raw = {
        "pre_operative_PSA": psa,
        "primary_gleason": p,
        "secondary_gleason": s,
        "positive_surgical_margins": sm,
        "capsular_penetration": ece,
        "invasion_seminal_vesicles": svi,
        "positive_lymph_nodes": lni,
        "age_at_prostatectomy": 63,
        **extra,
    }
    return parse_clinical(raw, 1)


@pytest.mark.parametrize(
    "kwargs, points",
    [
        ({}, 0),
        ({"psa": 6.0}, 0),
        ({"psa": 6.01}, 1),
        ({"psa": 10.0}, 1),
        ({"psa": 15}, 2),
        ({"psa": 20.5}, 3),
        ({"p": 3, "s": 4}, 1),
        ({"p": 4, "s": 3}, 2),
        ({"p": 4, "s": 4}, 3),
        ({"p": 5, "s": 4}, 3),
        ({"sm": 1}, 2),
        ({"ece": "1"}, 1),
        ({"svi": "1"}, 2),
        ({"lni": "1"}, 1),
        ({"psa": 25, "p": 4, "s": 5, "sm": 1, "ece": "1", "svi": "1", "lni": "1"}, 12),
    ],
)
def test_capra_s_points(kwargs, points):
    out = PRIORS.build({"name": "capra_s"}).predict(_t1(**kwargs))
    assert out.score == points and not out.detail["imputed"]


def test_capra_s_fallbacks_isup_and_pt_stage():
    prior = CapraS()
    rec = parse_clinical(
        {
            "pre_operative_PSA": 4,
            "ISUP": 3,
            "pT_stage": "3b",
            "positive_surgical_margins": 0,
            "positive_lymph_nodes": "0",
        },
        1,
    )
    out = prior.predict(rec)
    assert out.detail["points"]["gleason"] == 2  # ISUP 3 = 4+3
    assert (
        out.detail["points"]["capsular_penetration"] == 1
        and out.detail["points"]["invasion_seminal_vesicles"] == 2
    )
    assert out.score == 5 and out.detail["imputed"] == []


def test_months_strictly_decrease_with_capra_s_score():
    prior = prior_for_task(1)
    rng = np.random.default_rng(0)
    # every combination of the six items, PSA drawn inside each band and age at random: many records per score
    records = []
    for (lo, hi), (p, s), sm, ece, svi, lni in itertools.product(
        [(0.5, 6.0), (6.01, 10.0), (10.01, 20.0), (20.01, 80.0)],
        [(3, 3), (3, 4), (4, 3), (4, 5)],
        [0, 1],
        ["0", "1"],
        ["0", "1"],
        ["0", "1"],
    ):
        for _ in range(2):
            records.append(
                _t1(
                    psa=float(rng.uniform(lo, hi)),
                    p=p,
                    s=s,
                    sm=sm,
                    ece=ece,
                    svi=svi,
                    lni=lni,
                    age_at_prostatectomy=float(rng.uniform(45, 75)),
                )
            )
    outs = [prior.predict(r) for r in records]
    by_score: dict[float, list[float]] = {}
    for out in outs:
        by_score.setdefault(out.score, []).append(out.value)
    assert sorted(by_score) == list(range(13))
    for lower, higher in zip(range(12), range(1, 13)):
        assert min(by_score[lower]) > max(by_score[higher]), (lower, higher)
    values = [o.value for o in outs]
    assert all(0 < v <= 120 for v in values)
    assert len(set(values)) == len(values)  # distinct PSA/age: the tie-breaker separates equal scores


def test_tie_breaker_orders_within_a_score():
    prior = prior_for_task(1)
    low, high = prior.predict(_t1(psa=6.1)), prior.predict(_t1(psa=9.9))
    assert low.score == high.score == 1 and low.value > high.value  # higher PSA in the same band: sooner


@pytest.mark.parametrize("task_id", [1, 2, 3])
def test_all_missing_record_is_finite_and_on_the_reference(task_id):
    prior = prior_for_task(task_id)
    for record in (parse_clinical({}, task_id), parse_clinical("junk", task_id), None, ClinicalRecord({})):
        out = prior.predict(record)
        assert isinstance(out, PriorOutput) and math.isfinite(out.value) and math.isfinite(out.score)
    if task_id == 2:
        assert out.value == pytest.approx(TASKS[2].fallback_value)  # the prevalence
    else:
        assert 0 < out.value <= prior.output["horizon"]


def test_task3_adverse_factors_mean_sooner_recurrence():
    prior = prior_for_task(3)
    base = {
        "age": 70,
        "sex": "Male",
        "tumor": "Primary",
        "stage": "TaHG",
        "substage": "-1",
        "grade": "G2",
        "LVI": "No",
        "variant": "UCC",
        "EORTC": "High risk",
        "no_instillations": 18,
        "BRS": "BRS1",
    }
    reference = prior.predict(parse_clinical(base, 3)).value
    for key, worse in [
        ("stage", "T1HG"),
        ("grade", "G3"),
        ("LVI", "Yes"),
        ("variant", "UCC + Variant"),
        ("EORTC", "Highest risk"),
        ("BRS", "BRS3"),
        ("tumor", "Recurrence"),
    ]:
        assert prior.predict(parse_clinical({**base, key: worse}, 3)).value < reference, key
    assert prior.predict(parse_clinical({**base, "BRS": "BRS2"}, 3)).value == pytest.approx(reference)
    # tie-breaker: more instillations later, older sooner
    assert prior.predict(parse_clinical({**base, "no_instillations": 30}, 3)).value > reference
    assert prior.predict(parse_clinical({**base, "age": 85}, 3)).value < reference


def test_task2_probability_moves_modestly_in_the_documented_direction():
    prior = prior_for_task(2)
    benign = {
        "stage": "TaHG",
        "substage": "-1",
        "grade": "G2",
        "LVI": "No",
        "variant": "UCC",
        "EORTC": "High risk",
        "tumor": "Primary",
        "age": 69,
    }
    adverse = {
        "stage": "T1HG",
        "substage": "T1e",
        "grade": "G3",
        "LVI": "Yes",
        "variant": "UCC + Variant",
        "EORTC": "Highest risk",
        "tumor": "Recurrence",
        "age": 69,
    }
    p_low, p_high = (prior.predict(parse_clinical(r, 2)).value for r in (benign, adverse))
    assert 0.15 < p_low < 0.31 < p_high < 0.5


def test_restricted_mean_time_is_strictly_decreasing_in_hazard():
    for baseline in (
        {"kind": "exponential", "anchor_time": 120, "anchor_survival": 0.842},
        {"kind": "piecewise_linear", "times": [0, 12, 202], "survival": [1.0, 0.85, 0.566]},
    ):
        values = [restricted_mean_time(baseline, hr, 120.0) for hr in (0.1, 0.5, 1.0, 2.0, 10.0, 100.0)]
        assert all(a > b for a, b in itertools.pairwise(values)) and all(0 < v <= 120 for v in values)


def test_tables_carry_sources_and_heuristic_labels():
    for name in PRIORS.names():
        table = json.loads((ROOT / "resources" / "priors" / f"{name}.json").read_text())
        assert table["sources"] and table["output"]["kind"] in ("months", "probability")
    capra = json.loads((ROOT / "resources" / "priors" / "capra_s.json").read_text())
    assert "10.1002/cncr.26169" in capra["sources"]["points"]
    assert "HEURISTIC" in capra["missing_points"]["note"]
    doc = (ROOT / "resources" / "priors" / "priors.md").read_text()
    assert "10.1002/cncr.26169" in doc and "heuristic" in doc.lower()


junk_scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
junk = st.recursive(
    junk_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
known_keys = st.sampled_from(
    [
        "pre_operative_PSA",
        "primary_gleason",
        "secondary_gleason",
        "ISUP",
        "pT_stage",
        "positive_surgical_margins",
        "capsular_penetration",
        "invasion_seminal_vesicles",
        "positive_lymph_nodes",
        "age_at_prostatectomy",
        "age",
        "stage",
        "substage",
        "grade",
        "LVI",
        "variant",
        "EORTC",
        "BRS",
        "tumor",
        "no_instillations",
        "tertiary_gleason",
        "lymphovascular_invasion",
    ]
)


@settings(max_examples=200, deadline=None, database=None)  # no .hypothesis/ folder in the tree
@given(
    raw=st.dictionaries(known_keys | st.text(max_size=5), junk, max_size=14) | junk,
    task_id=st.sampled_from([1, 2, 3]),
    direct=st.booleans(),
)
def test_junk_never_crashes_and_never_nan(raw, task_id, direct):
    prior = prior_for_task(task_id)
    # direct: a hand-built record whose values are raw junk (bypassing the parser); else the parsed record
    record = ClinicalRecord(raw if isinstance(raw, dict) else {}) if direct else parse_clinical(raw, task_id)
    out = prior.predict(record)
    assert math.isfinite(out.value) and math.isfinite(out.score)
    if task_id == 2:
        assert 0 < out.value < 1
    else:
        assert 0 <= out.value <= prior.output["horizon"]
