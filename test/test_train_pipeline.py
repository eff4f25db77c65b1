"""train/ end to end on tiny synthetic cohorts (no slides, so it runs in seconds): folds, resumability,
determinism, report rows, and a cohort with another clinical schema and gene panel trained from config alone."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chimera_surv import synthetic
from chimera_surv.bundle import ModalityInputs, load_bundle
from chimera_surv.make_cases import write_training_cohort
from chimera_surv.readers.clinical import parse_clinical
from chimera_surv.readers.rna import parse_rna
from train.__main__ import Run
from train.cohort import LabelSpec, load_cohort
from train.config import load_config
from train.folds import cohort_holdout, inner_split, repeated_kfold

TINY_TRAIN = {"epochs": 6, "batch_size": 16, "lr": 0.01, "weight_decay": 1e-4, "patience": 3, "min_epochs": 2,
              "max_patches": 8, "modality_dropout": {"rna": 0.2}, "seeds": 1}
TINY_MODEL = {"encoders": {"clinical": {"name": "mlp", "hidden": [8]}, "rna": {"name": "mlp", "hidden": [8]}},
              "fusion": {"name": "concat_mlp", "hidden": [8], "dropout": 0.0}}


@pytest.fixture(scope="module")
def task3_cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cohort3")
    genes = tuple(synthetic.gene_panel(40))
    options = synthetic.CohortOptions(with_images=False, genes=genes)
    write_training_cohort(synthetic.make_cohort(3, 48, 0, options), root, workers=1)
    return root


def _config(cohort: Path, work: Path, out: Path, **extra) -> dict:
    raw = {"task": 3, "seed": 0, "cohort": {"root": str(cohort)}, "modalities": ["clinical", "rna"],
           "genes": "from_cohort", "work_dir": str(work), "out": str(out),
           "preprocess": {"rna": {"log1p": True, "top_k": 20, "n_components": 4}},
           "protocol": {"folds": 3, "repeats": 1, "inner_val": 0.25, "cohort_holdout": True, "bootstrap": 20,
                        "members": 3},
           "train": TINY_TRAIN, "model": TINY_MODEL,
           "compare": {"clinical_only": {"modalities": ["clinical"], "fusion": {"name": "concat_mlp", "hidden": []}}}}
    raw.update(extra)
    return load_config(raw)


def test_folds_never_mix_test_and_training():
    rng = random.Random(0)
    outcome = [rng.randint(0, 1) for _ in range(60)]
    cohorts = [rng.choice(["3A", "3B"]) for _ in range(60)]
    splits = repeated_kfold(outcome, cohorts, 5, 2, seed=0)
    assert len(splits) == 10
    for repeat in (0, 1):
        tests = [i for s in splits if s.repeat == repeat for i in s.test]
        assert sorted(tests) == list(range(60))  # every patient reported exactly once per repeat
    for split in splits:
        assert not set(split.train) & set(split.test)
        inner, val = inner_split(split.train, outcome, cohorts, 0.2, seed=1)
        assert set(inner) | set(val) == set(split.train) and not set(inner) & set(val)
        assert not set(val) & set(split.test)  # early stopping never sees the reported fold
    holdout = cohort_holdout(cohorts)
    assert {s.name for s in holdout} == {"train_3B__test_3A", "train_3A__test_3B"}
    for split in holdout:
        assert len({cohorts[i] for i in split.test}) == 1 and not {cohorts[i] for i in split.test} & {
            cohorts[i] for i in split.train}


@settings(max_examples=200, deadline=None)
@given(n=st.integers(3, 40), data=st.data())
def test_inner_split_never_fails_on_small_training_parts(n, data):
    """An inner training part of 16 patients in 4 event x cohort strata has a 3-patient validation side, too few
    for one of each stratum: the split falls back to the event alone, then to none, instead of raising."""
    outcome = data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    cohorts = data.draw(st.lists(st.sampled_from(["3A", "3B", "3C"]), min_size=n, max_size=n))
    indices = list(range(100, 100 + n))
    full_outcome, full_cohorts = [0] * 100 + outcome, ["x"] * 100 + cohorts
    inner, val = inner_split(indices, full_outcome, full_cohorts, 0.2, seed=data.draw(st.integers(0, 5)))
    assert sorted(inner + val) == indices and len(val) == max(2, round(0.2 * n))


def test_inner_split_keeps_the_event_mix_when_the_strata_do_not_fit():
    outcome = [1, 0] * 8  # 16 patients, 4 event x cohort strata of 4: 3 validation patients cannot hold all 4
    cohorts = ["3A"] * 8 + ["3B"] * 8
    _, val = inner_split(list(range(16)), outcome, cohorts, 0.2, seed=0)
    assert len(val) == 3 and {outcome[i] for i in val} == {0, 1}  # stratified on the event alone


def test_cohort_loader_reads_the_training_layout(task3_cohort):
    from chimera_surv.readers.clinical import load_schema

    patients = load_cohort(task3_cohort, LabelSpec.from_config(load_schema(3), {}, task3_cohort), survival=True)
    assert len(patients) == 48
    assert {p.cohort for p in patients} == {"3A", "3B"}
    with open(task3_cohort / "labels.csv") as handle:
        lines = handle.read().splitlines()[1:]
    truth = {row.split(",")[0]: row.split(",") for row in lines}
    for p in patients:
        assert p.time == pytest.approx(float(truth[p.case_id][2])) and p.event == int(truth[p.case_id][3])
        assert isinstance(p.rna, dict) and set(p.rna) == set(synthetic.gene_panel(40))


def test_task1_layout_pairs_slides_masks_and_mri(tmp_path):
    pid = "1004"
    (tmp_path / "clinical_data").mkdir()
    (tmp_path / "clinical_data" / f"{pid}.json").write_text(json.dumps(
        {"age_at_prostatectomy": 61, "BCR": "1.0", "time_to_follow-up/BCR": 12.5}))
    slides = tmp_path / "pathology" / "images" / pid
    slides.mkdir(parents=True)
    for name in (f"{pid}_1.tif", f"{pid}_1_tissue.tif", f"{pid}_2.tif", f"{pid}_2_tissue.tif"):
        (slides / name).write_bytes(b"x")
    mri = tmp_path / "radiology" / "images" / pid
    mri.mkdir(parents=True)
    for seq in ("t2w", "adc", "hbv", "mask"):
        (mri / f"{pid}_0001_{seq}.mha").write_bytes(b"x")
    from chimera_surv.readers.clinical import load_schema

    [patient] = load_cohort(tmp_path, LabelSpec.from_config(load_schema(1), {}, tmp_path), survival=True)
    assert (patient.time, patient.event) == (12.5, 1)
    assert [(s.wsi.name, s.mask.name) for s in patient.slides] == [(f"{pid}_1.tif", f"{pid}_1_tissue.tif"),
                                                                   (f"{pid}_2.tif", f"{pid}_2_tissue.tif")]
    assert patient.mri.t2.name.endswith("_t2w.mha") and patient.mri.mask.name.endswith("_mask.mha")


def test_train_cv_export_report_resume_and_determinism(task3_cohort, tmp_path, capsys):
    run = Run(_config(task3_cohort, tmp_path / "work", tmp_path / "bundle_a"))
    for step in ("extract", "fit", "cv", "export", "report"):
        getattr(run, step)()
    report = json.loads((tmp_path / "work" / "report" / "report.json").read_text())
    archs = report["architectures"]
    assert set(archs) == {"model", "clinical_only"}
    assert [f["split"] for f in archs["model"]["folds"]] == [f["split"] for f in archs["clinical_only"]["folds"]]
    assert {(r["arch"], r["split"]) for r in report["holdout"]} == {
        (a, s) for a in ("model", "clinical_only") for s in ("train_3B__test_3A", "train_3A__test_3B")}
    for row in report["holdout"]:  # the robustness table: drop against CV, clinical-only on the same split
        assert row["drop_vs_cv"] == pytest.approx(row["value"] - archs[row["arch"]]["fold_mean"])
        same = next(r for r in report["holdout"] if r["arch"] == "clinical_only" and r["split"] == row["split"])
        # the comparator is another, clinical-only architecture: never the row itself (issue 19)
        assert row["clinical_only"] == (None if row is same else {"arch": "clinical_only", "value": same["value"]})
    assert "held-out − CV" in (tmp_path / "work" / "report" / "report.md").read_text()
    assert all(0.0 <= f["value"] <= 1.0 for f in archs["model"]["folds"])
    assert (tmp_path / "work" / "report" / "km_by_risk_group.png").stat().st_size > 1000

    # The bundle predicts through the inference API, with and without RNA.
    bundle = load_bundle(tmp_path / "bundle_a")
    assert bundle.modalities == ["clinical", "rna"] and bundle.genes == sorted(synthetic.gene_panel(40))
    raw_clinical = json.loads(next((task3_cohort / "data").glob("*/*_CD.json")).read_text())
    record = parse_clinical(raw_clinical, bundle.clinical_schema)
    rna = parse_rna({g: 5.0 for g in bundle.genes}, bundle.genes)
    full = bundle.predict(ModalityInputs(clinical=record, rna=rna))
    alone = bundle.predict(ModalityInputs(clinical=record))
    assert full.used == ["clinical", "rna"] and alone.used == ["clinical"]
    assert np.isfinite([full.value, alone.value]).all() and full.value > 0

    # Resume: a second run in the same work folder trains nothing and writes the same bytes.
    member_files = sorted((tmp_path / "work" / "members").glob("*.safetensors"))
    stamps = [p.stat().st_mtime_ns for p in member_files]
    again = Run(_config(task3_cohort, tmp_path / "work", tmp_path / "bundle_b"))
    capsys.readouterr()
    again.export()
    assert [p.stat().st_mtime_ns for p in member_files] == stamps
    said = capsys.readouterr().out  # the cached results are said to be read, not refitted
    assert f"fit members: {len(bundle.members)} of {len(bundle.members)} read from" in said and "0 fitted now" in said
    assert "cv: " in said and " read from " in said
    assert "cv: model: Harrell C-index " in said and "(mean ± SD over " in said  # the CV figures on the console
    assert "cohort-held-out: model tested on " in said
    again.cv(), again.fit()  # a later step in the same process reuses them and does not say so again
    assert "read from" not in capsys.readouterr().out
    # Determinism: a fresh work folder (everything retrained) gives byte-identical files.
    fresh = Run(_config(task3_cohort, tmp_path / "work2", tmp_path / "bundle_c"))
    fresh.cv()
    fresh.export()
    for name in ("bundle.json", "weights.safetensors"):
        a = (tmp_path / "bundle_a" / name).read_bytes()
        assert a == (tmp_path / "bundle_b" / name).read_bytes() == (tmp_path / "bundle_c" / name).read_bytes()


def test_other_schema_and_gene_panel_train_from_config_alone(tmp_path):
    """A new user's cohort: other clinical fields, other label keys, another gene panel, one site."""
    rng = np.random.default_rng(3)
    schema = {"name": "other-cohort", "features": {
        "ki67": {"type": "numeric", "range": [0, 100]},
        "grade_who": {"type": "categorical", "categories": ["low", "high"]}},
        "labels": {"time": "os_months", "event": "death", "event_true": ["1"]}}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    genes = [f"GENE{i:02d}" for i in range(15)]
    (tmp_path / "genes.json").write_text(json.dumps(genes))
    for k in range(36):
        z = rng.normal()
        case = tmp_path / "cohort" / "data" / f"P{k:03d}"
        case.mkdir(parents=True)
        clinical = {"ki67": float(np.clip(30 + 15 * z + rng.normal(), 0, 100)),
                    "grade_who": "high" if z + rng.normal() > 0 else "low",
                    "os_months": float(np.round(rng.exponential(40 * np.exp(-z)) + 1, 1)),
                    "death": int(rng.random() < 0.6)}
        (case / f"P{k:03d}_CD.json").write_text(json.dumps(clinical))
        (case / f"P{k:03d}_RNA.json").write_text(json.dumps({g: float(np.exp(rng.normal() + z * (i < 3)))
                                                                 for i, g in enumerate(genes)}))
    (tmp_path / "config.yaml").write_text(
        "task: 3\nschema: schema.json\ngenes: genes.json\nmodalities: [clinical, rna]\n"
        "cohort: {root: cohort}\nwork_dir: work\nout: bundle\n"
        "protocol: {folds: 3, repeats: 1, inner_val: 0.25, bootstrap: 10, members: 2}\n"
        f"train: {json.dumps(TINY_TRAIN)}\n"
        "model: {family: ridge}\n")  # a family on both modalities (the default `auto` may keep clinical alone)
    from train.__main__ import main

    assert main([str(tmp_path / "config.yaml"), "--steps", "fit", "cv", "export"]) == 0
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.genes == genes and [f.key for f in bundle.clinical_schema.features] == ["ki67", "grade_who"]
    record = parse_clinical({"ki67": 80, "grade_who": "high"}, bundle.clinical_schema)
    prediction = bundle.predict(ModalityInputs(clinical=record, rna=parse_rna({g: 1.0 for g in genes}, genes)))
    assert np.isfinite(prediction.value) and prediction.used == ["clinical", "rna"]
