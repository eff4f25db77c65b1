"""The synthetic patient model without any image: outcomes, clinical conventions, RNA, determinism.

Outcome checks run on large image-free cohorts and compare with the published summary of the Task 3 outcomes
(the real table itself is an optional `reference` run), so the generator is tested separately from the writers.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from conftest import REFERENCE, ROOT

from chimera_surv import synthetic
from chimera_surv.synthetic import CohortOptions, make_cohort

NO_IMAGES = CohortOptions(with_images=False, with_rna=False)


# Summary of the 176 public Task 3 training outcomes (months): event share, median event time, median follow-up of
# the censored (chimera-spec.md §7). The generator is fitted to these; the table is not redistributed.
TASK3_SUMMARY = {"event_rate": 64 / 176, "event_median": 14.0, "censored_median": 91.0}


def _target(source: str) -> dict[str, float]:
    if source == "summary":
        return TASK3_SUMMARY
    with (REFERENCE / "chimera" / "bladder-rec.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    time, event = np.array([float(r["Time"]) for r in rows]), np.array([int(r["Progression"]) for r in rows])
    return {"event_rate": event.mean(), "event_median": float(np.median(time[event == 1])),
            "censored_median": float(np.median(time[event == 0]))}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


@pytest.fixture(scope="module")
def task3_large() -> list[synthetic.SyntheticPatient]:
    return make_cohort(3, 3000, seed=11, options=NO_IMAGES)


@pytest.mark.parametrize("source", ["summary", pytest.param("real", marks=pytest.mark.reference)])
@pytest.mark.parametrize("task", [1, 3])
def test_time_and_censoring_resemble_bladder_rec(task: int, source: str, task3_large) -> None:
    patients = task3_large if task == 3 else make_cohort(1, 3000, seed=12, options=NO_IMAGES)
    target = _target(source)
    time = np.array([p.time for p in patients], dtype=float)
    event = np.array([p.event for p in patients])
    assert set(np.unique(event)) == {0, 1}
    assert abs(event.mean() - target["event_rate"]) < 0.04  # 64/176 = 36.4%
    assert abs(np.median(time[event == 1]) - target["event_median"]) <= 3  # 14 months
    assert abs(np.median(time[event == 0]) - target["censored_median"]) <= 6  # 91 months
    assert time.min() >= 1 and time.max() <= 260
    # Real follow-up rarely ends before 17 months; real events start at 5 months.
    assert np.mean(time[event == 0] < 12) < 0.03
    assert np.quantile(time[event == 1], 0.05) >= 4


def test_outcome_units_follow_each_task_convention(task3_large) -> None:
    task1 = make_cohort(1, 50, seed=3, options=NO_IMAGES)
    for p in task1:
        assert p.labels["BCR"] == ("1.0" if p.event else "0.0")
        assert (
            isinstance(p.labels["time_to_follow-up/BCR"], float)
            and p.labels["time_to_follow-up/BCR"] == p.time
        )
        assert (p.labels["BCR_PSA"] >= 0.1) == bool(p.event)  # the documented leak, kept on purpose
    for p in task3_large[:200]:
        assert p.labels == {"progression": p.event, "Time_to_prog_or_FUend": int(p.time)}
        assert isinstance(p.labels["progression"], int) and float(p.time).is_integer()


def test_oracle_c_index_well_above_half(task3_large) -> None:
    oracle = synthetic.oracle_c_index(task3_large)
    assert 0.70 < oracle < 0.90
    flipped = [
        synthetic.SyntheticPatient(**{**p.__dict__, "latent_risk": -p.latent_risk}) for p in task3_large
    ]
    assert synthetic.oracle_c_index(flipped) == pytest.approx(1 - oracle, abs=1e-3)  # few ties in z
    assert synthetic.oracle_c_index(make_cohort(1, 1500, seed=4, options=NO_IMAGES)) > 0.70


def test_brs3_prevalence_near_31_percent() -> None:
    patients = make_cohort(2, 3000, seed=5, options=NO_IMAGES)
    brs3 = np.array([p.brs3 for p in patients])
    assert abs(brs3.mean() - 57 / 182) < 0.03
    assert all((p.labels["BRS"] == "BRS3") == bool(p.brs3) for p in patients)
    assert {p.labels["BRS"] for p in patients} == {"BRS1", "BRS2", "BRS3"}
    assert synthetic.oracle_auc(patients) > 0.75


def test_task1_clinical_keys_types_and_monotone_signal() -> None:
    patients = make_cohort(1, 1200, seed=6, options=NO_IMAGES)
    required = {
        "age_at_prostatectomy",
        "primary_gleason",
        "secondary_gleason",
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
    isup_of = {
        (3, 3): 1,
        (3, 4): 2,
        (4, 3): 3,
        (4, 4): 4,
        (3, 5): 4,
        (5, 3): 4,
        (4, 5): 5,
        (5, 4): 5,
        (5, 5): 5,
    }
    tertiary_styles = set()
    for p in patients:
        c = p.clinical
        assert required <= set(c) <= required | {"tertiary_gleason"}
        assert not {"BCR", "time_to_follow-up/BCR", "BCR_PSA"} & set(c)  # labels only in the training layout
        for key in (
            "age_at_prostatectomy",
            "primary_gleason",
            "secondary_gleason",
            "ISUP",
            "positive_surgical_margins",
        ):
            assert type(c[key]) is int, key
        assert isup_of[(c["primary_gleason"], c["secondary_gleason"])] == c["ISUP"]
        assert isinstance(c["pre_operative_PSA"], float) and c["pre_operative_PSA"] > 0
        assert c["pT_stage"] in {"2", "2a", "2b", "2c", "3", "3a", "3b", "4", "4a", "4b", "x"}
        for key in ("positive_lymph_nodes", "capsular_penetration", "invasion_seminal_vesicles"):
            assert c[key] in {"0", "1", "x"}
        assert c["lymphovascular_invasion"] in {"0", "1", "0.0", "1.0", "x"}
        assert c["positive_surgical_margins"] in {0, 1}
        tertiary = c.get("tertiary_gleason", "absent")
        assert tertiary in {"absent", "x", None} or (type(tertiary) is int and 1 <= tertiary <= 5)
        tertiary_styles.add("int" if type(tertiary) is int else str(tertiary))
    assert tertiary_styles == {"int", "x", "None", "absent"}  # every missingness style occurs
    z = np.array([p.latent_risk for p in patients])

    def col(key: str) -> np.ndarray:
        return np.array([p.clinical[key] for p in patients], dtype=float)

    assert _spearman(col("ISUP"), z) > 0.4
    assert _spearman(np.log(col("pre_operative_PSA")), z) > 0.3
    assert _spearman(col("positive_surgical_margins"), z) > 0.15
    svi = np.array([p.clinical["invasion_seminal_vesicles"] == "1" for p in patients], dtype=float)
    assert _spearman(svi, z) > 0.15
    assert np.mean([p.clinical["pT_stage"].startswith("3") for p in patients]) > 0.15
    # The clinical variables carry part of the signal, not all of it (the oracle stays ahead).
    assert _spearman(col("ISUP"), z) < 0.8


@pytest.mark.parametrize("task", [2, 3])
def test_bladder_clinical_matches_spec_categories(task: int) -> None:
    patients = make_cohort(task, 800, seed=7, options=NO_IMAGES)
    spec = {
        "sex": {"Male", "Female", "-1"},
        "smoking": {"No", "Yes", "-1"},
        "tumor": {"Primary", "Recurrence"},
        "stage": {"TaHG", "T1HG", "T2HG", "T3HG"},
        "substage": {"T1e", "T1m", "-1"},
        "grade": {"G2", "G3"},
        "reTUR": {"No", "Yes", "-1"},
        "LVI": {"No", "Yes", "-1"},
        "variant": {"UCC", "UCC + Variant"},
        "EORTC": {"High risk", "Highest risk", "-1"},
    }
    task3_only = {
        "sex": {"Female", "Male"},
        "tumor": {"Primary"},
        "stage": {"T1HG", "TaHG"},
        "reTUR": {"No", "Yes"},
        "EORTC": {"High risk", "Highest risk"},
    }
    seen: dict[str, set] = {key: set() for key in spec}
    for p in patients:
        c = p.clinical
        expected_keys = set(spec) | {"age", "no_instillations"} | ({"BRS"} if task == 3 else set())
        assert set(c) == expected_keys
        for key, allowed in spec.items():
            assert isinstance(c[key], str) and c[key] in allowed, (key, c[key])
            seen[key].add(c[key])
        assert type(c["age"]) is int and type(c["no_instillations"]) is int
        assert c["no_instillations"] == -1 or c["no_instillations"] >= 1
        if c["stage"] == "TaHG":
            assert c["substage"] == "-1"
    assert "-1" in seen["smoking"] and "-1" in seen["LVI"] and "-1" in seen["substage"]
    assert any(p.clinical["no_instillations"] == -1 for p in patients)
    if task == 3:
        for key, allowed in task3_only.items():
            assert seen[key] <= allowed, key
        assert {p.clinical["BRS"] for p in patients} == {"BRS1", "BRS2", "BRS3"}
    else:
        assert "BRS" not in patients[0].clinical and "-1" in seen["EORTC"]
    z = np.array([p.latent_risk for p in patients])
    stage = np.array([p.clinical["stage"] != "TaHG" for p in patients], dtype=float)
    eortc = np.array([p.clinical["EORTC"] == "Highest risk" for p in patients], dtype=float)
    assert _spearman(stage, z) > 0.2 and _spearman(eortc, z) > 0.2


@pytest.mark.parametrize("task", [1, 2, 3])
def test_clinical_values_are_known_to_the_project_schema(task: int) -> None:
    """Every categorical value generated is a level of resources/schemas/task{t}.json or a missing token."""
    schema = json.loads((ROOT / "resources" / "schemas" / f"task{task}.json").read_text())
    missing = {str(t).lower() for t in schema["missing_tokens"]}
    patients = make_cohort(task, 400, seed=8, options=NO_IMAGES)
    for p in patients:
        for key, value in p.clinical.items():
            feature = schema["features"][key]
            if value is None or str(value).lower() in missing:
                continue
            if feature["type"] == "categorical":
                assert value in feature["categories"], (key, value)
            elif feature["type"] == "ordinal":
                text = str(value).lower()
                assert text in feature["levels"] or f"{float(text):g}" in feature["levels"], (key, value)
            elif feature["type"] == "binary":
                assert str(value) in {"0", "1", "0.0", "1.0"}, (key, value)


def test_rna_panel_module_and_batch_shift() -> None:
    panel = synthetic.gene_panel(600)
    assert len(panel) == 600 and panel == sorted(panel) and set(synthetic.module_genes()) <= set(panel)
    patients = make_cohort(
        3, 300, seed=9, options=CohortOptions(with_images=False, genes=tuple(panel), cohort_b_fraction=0.5)
    )
    values = np.array([[p.rna[g] for g in panel] for p in patients])
    assert all(list(p.rna) == panel for p in patients)
    assert np.isfinite(values).all() and values.min() >= 0
    assert 1 < np.median(values) < 1e3 and values.max() > 1e3 and (values == 0).mean() > 0.005
    logv = np.log1p(values)
    z = np.array([p.latent_risk for p in patients])
    in_module = np.array([g in set(synthetic.module_genes()) for g in panel])
    corr = np.array(
        [abs(np.corrcoef(logv[:, j], z)[0, 1]) if logv[:, j].std() > 0 else 0.0 for j in range(len(panel))]
    )
    assert in_module.sum() == synthetic.MODULE_SIZE
    assert corr[in_module].mean() > 0.35 and corr[~in_module].mean() < 0.12
    cohort_b = np.array([p.cohort == "B" for p in patients])
    shift = logv[cohort_b].mean(axis=0) - logv[~cohort_b].mean(axis=0)
    assert shift.mean() > 0.05  # batch offset of cohort B


def test_censoring_stand_in_matches_the_published_summary() -> None:
    """The default censoring (no file): 112 deterministic times, median ~91, mean ~92, within 17-202 months."""
    times = synthetic.load_censoring_times()
    assert times.size == 112 and np.array_equal(times, synthetic.load_censoring_times())
    assert abs(np.median(times) - 91) <= 2 and abs(times.mean() - 92) <= 2
    assert times.min() >= 17 and times.max() <= 202 and np.all(np.diff(times) >= 0)


def test_censoring_table_that_cannot_be_read_falls_back_without_a_path(tmp_path) -> None:
    bad = tmp_path / "follow-up.csv"
    bad.write_text("case_id,Time\nx,10\n")  # no Progression column
    with pytest.warns(UserWarning) as caught:
        times = synthetic.load_censoring_times(bad)
    assert np.array_equal(times, synthetic.load_censoring_times())
    message = str(caught[0].message)
    assert message.startswith("follow-up.csv:") and str(tmp_path) not in message


@pytest.mark.reference
def test_censoring_stand_in_resembles_the_real_censored_follow_up() -> None:
    real = synthetic.load_censoring_times(REFERENCE / "chimera" / "bladder-rec.csv")
    stand_in = synthetic.load_censoring_times()
    assert real.size == stand_in.size == 112
    assert abs(np.median(real) - np.median(stand_in)) <= 6 and abs(real.mean() - stand_in.mean()) <= 6


def test_full_gene_list_is_the_chimera_gene_order() -> None:
    genes = json.loads((ROOT / "resources" / "gene_order.json").read_text())
    patient = make_cohort(3, 1, seed=0, options=CohortOptions(with_images=False))[0]
    assert list(patient.rna) == genes and len(genes) == 19359


def test_cohorts_are_deterministic_prefix_stable_and_stream_separated() -> None:
    a = make_cohort(3, 12, seed=21, options=CohortOptions(genes=tuple(synthetic.gene_panel(100))))
    b = make_cohort(3, 12, seed=21, options=CohortOptions(genes=tuple(synthetic.gene_panel(100))))
    assert a == b
    prefix = make_cohort(3, 5, seed=21, options=CohortOptions(genes=tuple(synthetic.gene_panel(100))))
    assert prefix == a[:5]
    other = make_cohort(3, 12, seed=22, options=CohortOptions(genes=tuple(synthetic.gene_panel(100))))
    assert [p.latent_risk for p in other] != [p.latent_risk for p in a]
    test_stream = make_cohort(
        3, 12, seed=21, options=CohortOptions(stream="test", with_images=False, with_rna=False, first_id=901)
    )
    assert not {p.latent_risk for p in test_stream} & {p.latent_risk for p in a}
    assert all(p.case_id.startswith(("3A_9", "3B_9")) for p in test_stream)
    # Changing the RNA panel never changes anything else about a patient.
    small = make_cohort(3, 12, seed=21, options=CohortOptions(genes=tuple(synthetic.gene_panel(60))))
    assert [(p.clinical, p.time, p.slides) for p in small] == [(p.clinical, p.time, p.slides) for p in a]


def test_slide_counts_ids_and_image_parameters() -> None:
    cycled = make_cohort(1, 6, seed=1, options=CohortOptions(slides_per_case=(1, 2, 3)))
    assert [len(p.slides) for p in cycled] == [1, 2, 3, 1, 2, 3]
    assert all(p.mri is not None and p.case_id.isdigit() for p in cycled)
    drawn = make_cohort(1, 40, seed=1)
    assert {len(p.slides) for p in drawn} == {1, 2, 3}
    bladder = make_cohort(3, 40, seed=1, options=CohortOptions(with_rna=False))
    assert all(len(p.slides) == 1 and p.mri is None for p in bladder)
    assert {p.cohort for p in bladder} == {"A", "B"}
    import re

    assert all(re.fullmatch(rf"3{p.cohort}_\d{{3}}", p.case_id) for p in bladder)
    assert len({p.case_id for p in bladder}) == 40
    # Nuclear density rises with z on average.
    z = np.array([p.latent_risk for p in drawn])
    density = np.array([np.mean([s.nuclear_density for s in p.slides]) for p in drawn])
    assert _spearman(density, z) > 0.6
    volume = np.array([p.mri.prostate_volume_ml for p in drawn])
    adc = np.array([p.mri.lesion_adc for p in drawn])
    assert _spearman(volume, z) < 0 and _spearman(adc, z) < -0.5
    assert math.isclose(drawn[0].slides[0].mpp, 0.25)
