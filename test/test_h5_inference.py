"""Precomputed `.h5` patch features in place of slides at inference (inference.py and predict_cohort).

A case given as the `.h5` export (train/h5features.py) of its own extraction must predict what the slide case
predicts, decode no slide, and a file made with another recipe must be refused with a DEGRADED line that names the
file and the field, the slide never used in its place.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

import inference
from chimera_surv.features import FeatureRecipe
from chimera_surv.tasks import TASKS
from train.h5features import export_bag, slide_stem

TASK = TASKS[3]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A Task 3 bundle whose members read the slides (ridge on every modality) and one clean held-out case."""
    from chimera_surv import synthetic
    from chimera_surv.bundle import load_bundle
    from chimera_surv.gc import read_case
    from chimera_surv.make_cases import write_gc_cases
    from train import demo

    root = tmp_path_factory.mktemp("h5-inference")
    model = root / "model"
    demo.train_task(3, root / "work", model, 36, seed=0, overrides={"model": {"family": "ridge"}},
                    steps=("extract", "fit", "export"))
    bundle = load_bundle(model / TASK.name)
    assert "wsi" in bundle.modalities
    options = dataclasses.replace(demo._options(3, "test"), wsi_size=(2048, 1536))
    case = Path(write_gc_cases(synthetic.make_cohort(3, 1, 7, options), root / "clean", seed=7)[0])
    slides = read_case(case).slides
    from chimera_surv.features import extract_case_bag

    bag, _ = extract_case_bag(slides, bundle.recipe, model / "encoders")
    assert len(bag.features) > 0
    return {"model": model, "case": case, "bag": bag, "recipe": bundle.recipe, "slides": slides, "root": root}


def _run(case: Path, model: Path, out: Path, caplog) -> tuple[float, dict, list[str]]:
    caplog.clear()
    with caplog.at_level("INFO"):
        assert inference.main(["--input", str(case), "--output", str(out), "--model", str(model)]) == 0
    value = json.loads((out / TASK.output_file).read_text())
    result = json.loads(caplog.text.split("RESULT", 1)[1].splitlines()[0])
    return value, result, [line for line in caplog.text.splitlines() if "DEGRADED" in line]


@pytest.fixture
def no_decoding(monkeypatch) -> list[str]:
    """Records every call that would decode a slide (extraction, the slide reader)."""
    import chimera_surv.features
    import chimera_surv.readers.slide

    calls: list[str] = []
    real_extract, real_open = chimera_surv.features.extract_case_bag, chimera_surv.readers.slide.open_slide

    def extract(*args, **kwargs):
        calls.append("extract_case_bag")
        return real_extract(*args, **kwargs)

    def open_slide(*args, **kwargs):
        calls.append("open_slide")
        return real_open(*args, **kwargs)

    monkeypatch.setattr(chimera_surv.features, "extract_case_bag", extract)
    monkeypatch.setattr(chimera_surv.readers.slide, "open_slide", open_slide)
    return calls


def _export(trained: dict, folder: Path, recipe: FeatureRecipe | None = None) -> list[Path]:
    names = [slide_stem(s.wsi) for s in trained["slides"]]
    return export_bag(trained["bag"].features, trained["bag"].coords, recipe or trained["recipe"], folder, names)


def _slide_folder(case: Path) -> Path:
    return next(p.parent for p in case.rglob("*.tif") if "mask" not in str(p.parent))


def test_h5_case_predicts_what_the_slide_case_predicts_and_decodes_nothing(trained, tmp_path, caplog,
                                                                          no_decoding) -> None:
    slide_value, slide_result, _ = _run(trained["case"], trained["model"], tmp_path / "a", caplog)
    assert "wsi" in slide_result["provenance"] and no_decoding  # the slide route did decode
    # 1. the .h5 beside the slide
    beside = Path(shutil.copytree(trained["case"], tmp_path / "beside"))
    _export(trained, _slide_folder(beside))
    no_decoding.clear()
    value, result, degraded = _run(beside, trained["model"], tmp_path / "b", caplog)
    assert no_decoding == [] and "wsi" in result["provenance"]
    assert math.isclose(value, slide_value, rel_tol=1e-5, abs_tol=1e-6), (value, slide_value)
    assert not [line for line in degraded if '"stage": "wsi"' in line]
    # 2. only the .h5, in <input>/features/, the slide file removed
    only = Path(shutil.copytree(trained["case"], tmp_path / "only"))
    _export(trained, only / "features")
    for tif in _slide_folder(only).glob("*.tif"):
        tif.unlink()
    folder = _slide_folder(trained["case"]).relative_to(trained["case"])
    shutil.copy(next((only / "features").glob("*.h5")), only / folder)  # the socket folder holds only the .h5
    value, result, _ = _run(only, trained["model"], tmp_path / "c", caplog)
    assert no_decoding == [] and "wsi" in result["provenance"]
    assert math.isclose(value, slide_value, rel_tol=1e-5, abs_tol=1e-6)
    # 3. other features give another value: the equality above is not a model that ignores the slides
    other = Path(shutil.copytree(only, tmp_path / "other"))
    bag = trained["bag"]
    export_bag(bag.features[::-1] * 3.0, bag.coords, trained["recipe"], other / folder,
               [slide_stem(s.wsi) for s in trained["slides"]])
    value, _, _ = _run(other, trained["model"], tmp_path / "d", caplog)
    assert not math.isclose(value, slide_value, rel_tol=1e-3), value


@pytest.mark.parametrize(("field", "change"), [("target_mpp", {"target_mpp": 1.0}), ("patch_size", {"patch_size": 256}),
                                               ("encoder", {"encoder": "uni"})])
def test_a_mismatched_recipe_is_refused_naming_the_file_and_field(trained, tmp_path, caplog, no_decoding, field,
                                                                   change) -> None:
    case = Path(shutil.copytree(trained["case"], tmp_path / "case"))
    recipe = dataclasses.replace(trained["recipe"], **change)
    bag = trained["bag"]
    if field == "encoder":  # a UNI file has UNI's width
        bag = dataclasses.replace(bag, features=np.zeros((len(bag.features), 1024), np.float32))
    (path,) = export_bag(bag.features, bag.coords, recipe, _slide_folder(case),
                         [slide_stem(s.wsi) for s in trained["slides"]])
    value, result, degraded = _run(case, trained["model"], tmp_path / "out", caplog)
    assert math.isfinite(value) and "wsi" not in result["provenance"]
    assert no_decoding == []  # the slide beside the refused file is not decoded in its place
    assert any(path.name in line and f"{field}:" in line and '"stage": "wsi"' in line for line in degraded), degraded


def test_predict_cohort_folder_takes_features_instead_of_slides(trained, tmp_path, no_decoding) -> None:
    from chimera_surv.predict_cohort import predict_cohort

    src = trained["case"]
    patient = tmp_path / "cohort" / "P1"
    patient.mkdir(parents=True)
    for name, pattern in (("P1_CD.json", "*clinical*.json"), ("P1_RNA.json", "*rna*.json")):
        shutil.copy(next(src.glob(pattern)), patient / name)
    slides_root = tmp_path / "with-slides"
    shutil.copytree(patient, slides_root / "P1")
    for s in trained["slides"]:
        shutil.copy(s.wsi, slides_root / "P1" / s.wsi.name)
        shutil.copy(s.mask, slides_root / "P1" / f"{s.wsi.name.split('.')[0]}_mask.tif")
    _export(trained, patient / "features")
    _, with_slides = predict_cohort(trained["model"] / TASK.name, slides_root, tmp_path / "a.csv")
    no_decoding.clear()
    _, with_h5 = predict_cohort(trained["model"] / TASK.name, tmp_path / "cohort", tmp_path / "b.csv")
    assert no_decoding == []
    assert with_h5[0]["used"] == with_slides[0]["used"] and "wsi" in with_h5[0]["used"]
    assert math.isclose(with_h5[0]["risk"], with_slides[0]["risk"], rel_tol=1e-5, abs_tol=1e-6)


class _Standardiser:
    names = ("a_mm", "b_ml", "c")


@dataclasses.dataclass
class _MRIBundle:
    """The two things the MRI check reads from a bundle: `mri_kind` and the members' fitted MRI names."""

    modalities: tuple = ("mri",)
    mri_kind: str = "measurements"
    members: tuple = (type("M", (), {"preprocessors": {"mri": _Standardiser()}})(),)


def _mri_case(tmp_path: Path, payload: dict, suffix: str = ".json") -> object:
    from chimera_surv.case import Case, MRIInput

    path = tmp_path / "features" / f"mri{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".json":
        path.write_text(json.dumps(payload))
    elif suffix == ".npy":
        np.save(path, np.asarray(payload["values"], np.float32))
    else:
        import h5py

        with h5py.File(path, "w") as handle:
            handle.create_dataset("features", data=np.asarray(payload["values"], np.float32)[None])
            handle.attrs.update({k: json.dumps(v) if k == "names" else v for k, v in payload.items()
                                 if k != "values"})
    return Case(task=TASKS[1], mri=MRIInput(t2=tmp_path / "t2.mha", features=path))


@pytest.mark.parametrize("suffix", [".json", ".h5"])
def test_a_precomputed_mri_vector_is_used_instead_of_the_volumes(tmp_path, monkeypatch, suffix) -> None:
    import chimera_surv.mri_features
    from chimera_surv.predict import DegradedLog, modality_inputs

    monkeypatch.setattr(chimera_surv.mri_features, "mri_features", lambda *a, **k: pytest.fail("volume read"))
    case = _mri_case(tmp_path, {"kind": "measurements", "names": ["a_mm", "b_ml", "c"], "values": [1.0, 2.5, -3.0]},
                     suffix)
    degraded = DegradedLog()
    inputs = modality_inputs(case, _MRIBundle(), None, degraded, tmp_path, None, None)
    assert np.array_equal(inputs.mri, np.array([1.0, 2.5, -3.0], np.float32)) and not degraded.entries


@pytest.mark.parametrize(("payload", "suffix", "field"), [
    ({"kind": "medicalnet-resnet10", "names": ["a_mm", "b_ml", "c"], "values": [1, 2, 3]}, ".json", "mri_kind"),
    ({"kind": "measurements", "names": ["a_mm", "x", "c"], "values": [1, 2, 3]}, ".json", "names"),
    ({"kind": "measurements", "values": [1, 2]}, ".json", "dim"),
    ({"values": [1, 2, 3]}, ".npy", "mri_kind"),  # a bare .npy says nothing about its extractor
])
def test_a_mismatched_mri_vector_is_refused_naming_the_field(tmp_path, monkeypatch, payload, suffix, field) -> None:
    import chimera_surv.mri_features
    from chimera_surv.predict import DegradedLog, modality_inputs

    monkeypatch.setattr(chimera_surv.mri_features, "mri_features", lambda *a, **k: pytest.fail("volume read"))
    degraded = DegradedLog()
    inputs = modality_inputs(_mri_case(tmp_path, payload, suffix), _MRIBundle(), None, degraded, tmp_path, None, None)
    assert inputs.mri is None
    (entry,) = degraded.entries
    assert entry["stage"] == "mri" and f"mri{suffix}: {field}:" in entry["cause"], entry
