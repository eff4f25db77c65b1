"""A patient whose slides give no usable patch (unreadable, no tissue, or encoding failed) trains as one without
slides, and one line says so; when no patient's slides give a patch, the run stops with the first cause (it used
to train on clinical data alone without a word, or to say 'run the extract step first' after a failed encoding)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from chimera_surv import synthetic
from chimera_surv.make_cases import write_training_cohort
from train.__main__ import Run
from train.config import load_config

RECIPE = {"encoder": "test-tiny", "weights": "seeded", "target_mpp": 2.0, "patch_size": 32, "min_tissue": 0.5,
          "max_patches": 64, "time_budget_s": None, "batch_size": 64}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("failing-slides")
    options = synthetic.CohortOptions(wsi_size=(1024, 768))
    write_training_cohort(synthetic.make_cohort(2, 6, 0, options), root, workers=1)
    return root


def _run(cohort: Path, work: Path) -> Run:
    return Run(load_config({"task": 2, "seed": 0, "threads": 1, "cohort": {"root": str(cohort)},
                            "modalities": ["wsi", "clinical"], "recipe": RECIPE, "work_dir": str(work),
                            "out": str(work / "bundle")}))


def _break(slide: Path) -> None:
    slide.write_bytes(b"not a tiff")


def test_one_failed_patient_trains_without_slides(cohort, tmp_path, capsys):
    broken = tmp_path / "cohort"
    shutil.copytree(cohort, broken)
    slides = sorted(broken.rglob("*_HE.tif"))
    _break(slides[0])
    run = _run(broken, tmp_path / "work")
    run.extract()
    data = run.arrays()
    case = slides[0].name.removesuffix("_HE.tif")
    bags = dict(zip(data.case_ids, data.bags))
    assert bags[case] is None
    assert sum(b is not None for b in bags.values()) >= 1
    out = capsys.readouterr().out
    assert re.search(r"wsi: \d of 6 patients with slides have no usable patch \(0 failed to encode; first, ", out)
    assert f"{case}: slide 0 ({case}_HE.tif): unsupported, truncated or corrupt slide file" in out


def test_no_encodable_slide_stops_with_the_cause(cohort, tmp_path):
    broken = tmp_path / "cohort"
    shutil.copytree(cohort, broken)
    for slide in broken.rglob("*_HE.tif"):
        _break(slide)
    run = _run(broken, tmp_path / "work")
    run.extract()
    with pytest.raises(ValueError, match=r"no slide gave a usable patch: all 6 patients with slides"):
        run.arrays()


def test_an_encoder_failure_is_recorded_and_the_patient_trains_without_slides(cohort, tmp_path, monkeypatch, capsys):
    """An exception while encoding one patient (the recorded `failed` path, e.g. a missing library) is no longer
    mistaken for a skipped extract step."""
    from chimera_surv import features

    real = features.extract_case_bag
    run = _run(cohort, tmp_path / "work")
    victim = run.patients[0]

    def flaky(slides, *args, **kwargs):
        if slides is victim.slides:
            raise ModuleNotFoundError("No module named 'pyvips'")
        return real(slides, *args, **kwargs)

    monkeypatch.setattr(features, "extract_case_bag", flaky)
    run.extract()
    data = run.arrays()
    assert dict(zip(data.case_ids, data.bags))[victim.case_id] is None
    out = capsys.readouterr().out
    assert f"(1 failed to encode; first, {victim.case_id}: ModuleNotFoundError: No module named 'pyvips')" in out


def test_a_missing_bag_without_a_recorded_failure_still_asks_for_extract(cohort, tmp_path):
    run = _run(cohort, tmp_path / "work")
    with pytest.raises(FileNotFoundError, match="run the `extract` step first"):
        run.arrays()
