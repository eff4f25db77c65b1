"""`predict_cohort` reads the CHIMERA Task 1 training layout (`clinical_data/<id>.json`, images named `<id>_*` in
other folders) with the name rules training uses (chimera_surv/readers/layout.py), and still reads patient folders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from chimera_surv import synthetic
from chimera_surv.bundle import load_bundle
from chimera_surv.make_cases import write_training_cohort
from chimera_surv.predict_cohort import folder_cases, predict_cohort

SMALL_SLIDES = (256, 192)


def _task1_cohort(root: Path, n: int, seed: int, stream: str = "training", first_id: int = 1) -> Path:
    options = synthetic.CohortOptions(wsi_size=SMALL_SLIDES, slides_per_case=(1, 2), stream=stream, first_id=first_id)
    return write_training_cohort(synthetic.make_cohort(1, n, seed, options), root, workers=1)


@pytest.fixture(scope="module")
def task1_bundle(tmp_path_factory) -> Path:
    """A Task 1 bundle on MRI + clinical (ridge: seconds), trained from the Task 1 training layout."""
    from train.__main__ import Run
    from train.config import load_config
    from train.demo import CONFIG_DIR

    root = tmp_path_factory.mktemp("task1-bundle")
    cohort = _task1_cohort(root / "cohort", 36, seed=0)
    config = load_config(CONFIG_DIR / "demo_task1.yaml", {
        "cohort": {"root": str(cohort)}, "work_dir": str(root / "work"), "out": str(root / "bundle"),
        "encoder_root": str(root / "encoders"), "model": {"family": "ridge"}, "modalities": ["mri", "clinical"]})
    config["compare"] = {}
    run = Run(config)
    for step in ("extract", "fit", "export"):
        getattr(run, step)()
    return root / "bundle"


def test_task1_layout_finds_each_patients_slides_masks_and_mri(tmp_path):
    root = _task1_cohort(tmp_path / "new", 3, seed=4, stream="test", first_id=901)
    stems = sorted(p.stem for p in (root / "clinical_data").glob("*.json"))
    cases = dict(folder_cases(root))
    assert sorted(cases) == stems and len(stems) == 3
    for case_id, inputs in cases.items():
        assert inputs["clinical"] == root / "clinical_data" / f"{case_id}.json"
        assert inputs["slides"], case_id
        for slide in inputs["slides"]:  # every slide paired with its own tissue mask, none of another patient
            assert slide.wsi.name.startswith(f"{case_id}_") and slide.mask.name == f"{slide.wsi.stem}_tissue.tif"
        mri = inputs["mri"]
        assert {mri.t2.name, mri.adc.name, mri.hbv.name, mri.mask.name} == {
            f"{case_id}_0001_{seq}.mha" for seq in ("t2w", "adc", "hbv", "mask")}
        assert inputs["rna"] is None and inputs["slide_embeddings"] == []


def test_task1_slide_embeddings_are_found_by_id(tmp_path):
    root = _task1_cohort(tmp_path / "new", 2, seed=4, stream="test", first_id=901)
    first, second = sorted(p.stem for p in (root / "clinical_data").glob("*.json"))
    folder = root / "features" / "slide_embeddings"
    folder.mkdir(parents=True)
    (folder / f"{first}_1.json").write_text(json.dumps({"encoder": "titan", "values": [1.0, 2.0]}))
    cases = dict(folder_cases(root))
    assert cases[first]["slide_embeddings"] == [folder / f"{first}_1.json"]
    assert cases[second]["slide_embeddings"] == []


def test_patient_folders_and_task1_patients_in_one_root(tmp_path):
    root = _task1_cohort(tmp_path / "new", 2, seed=4, stream="test", first_id=901)
    folder = root / "data" / "X7"
    folder.mkdir(parents=True)
    for name in ("X7_CD.json", "X7_HE.tif", "X7_HE_mask.tif", "X7_0001_adc.mha", "X7_HE.h5"):
        (folder / name).write_text("{}")
    cases = dict(folder_cases(root))
    assert sorted(cases) == sorted([*(p.stem for p in (root / "clinical_data").glob("*.json")), "X7"])
    [slide] = cases["X7"]["slides"]
    assert (slide.wsi.name, slide.mask.name, slide.features.name) == ("X7_HE.tif", "X7_HE_mask.tif", "X7_HE.h5")
    assert cases["X7"]["mri"].adc.name == "X7_0001_adc.mha" and cases["X7"]["mri"].t2 is None


def test_task1_layout_predicts_one_row_per_patient(task1_bundle, tmp_path):
    bundle = load_bundle(task1_bundle)
    assert bundle.modalities == ["mri", "clinical"]
    root = _task1_cohort(tmp_path / "new", 3, seed=4, stream="test", first_id=901)
    path, rows = predict_cohort(task1_bundle, root, tmp_path / "out.json")
    assert json.loads(path.read_text()) == rows
    assert [r["case_id"] for r in rows] == sorted(p.stem for p in (root / "clinical_data").glob("*.json"))
    for row in rows:
        # the synthetic clinical data carries unusable values ('x'), imputed: only that stage may be degraded
        assert row["status"] in ("ok", "degraded: clinical"), row
        assert math.isfinite(row["months"]) and row["months"] > 0
        assert set(row["used"].split("+")) == set(bundle.modalities)
