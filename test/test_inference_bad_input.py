"""The bad-input list of the container issue, end to end through inference.py with trained bundles.

Small Task 1 and Task 3 bundles are trained once through train/ (synthetic cohorts, the seeded test-tiny encoder),
so slides, MRI and RNA are really read. Each broken case must still give one finite number at the task's output file,
exit 0, and log a DEGRADED line that names the cause.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import openslide
import pytest
import yaml

import inference
from chimera_surv.tasks import TASKS
from chimera_surv.writers import write_mask, write_wsi


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Bundles for Tasks 1 and 3 plus one clean held-out case per task (module-scoped: trained once)."""
    from chimera_surv import synthetic
    from chimera_surv.make_cases import write_gc_cases
    from train import demo

    root = tmp_path_factory.mktemp("bad-input")
    model = root / "model"
    cases = {}
    for task, n in ((3, 36), (1, 30)):
        # The demo's former default network (its `compare.deep`): bundles that read every modality.
        deep = yaml.safe_load((demo.CONFIG_DIR / f"demo_task{task}.yaml").read_text())["compare"]["deep"]
        demo.train_task(task, root / "work", model, n, seed=0, overrides={"model": deep})
        # Slides big enough for tissue patches at 0.5 µm/px; Task 1 with two slides.
        options = dataclasses.replace(demo._options(task, "test"), wsi_size=(2048, 1536),
                                      slides_per_case=(2,) if task == 1 else None)
        patients = synthetic.make_cohort(task, 1, 7, options)
        cases[task] = Path(write_gc_cases(patients, root / f"clean{task}", seed=7)[0])
    return {"model": model, "cases": cases, "root": root}


def run(case: Path, trained: dict, tmp_path: Path, caplog) -> tuple[float, str]:
    """Run inference.py's main in-process; return (the number written, the log text)."""
    caplog.clear()
    out = tmp_path / "out"
    with caplog.at_level("INFO"):
        assert inference.main(["--input", str(case), "--output", str(out), "--model", str(trained["model"])]) == 0
    files = list(out.iterdir())
    task = TASKS[3] if "likelihood" in files[0].name else TASKS[1]
    assert [f.name for f in files] == [task.output_file]
    value = json.loads(files[0].read_text())
    assert isinstance(value, float) and math.isfinite(value) and value >= 0
    return value, caplog.text


def copy_case(trained: dict, task: int, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained["cases"][task], tmp_path / "case"))


def degraded_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "DEGRADED" in line]


def assert_degraded(log: str, *fragments: str) -> None:
    lines = degraded_lines(log)
    assert any(all(f in line for f in fragments) for line in lines), \
        f"no DEGRADED line with {fragments}:\n" + "\n".join(lines)


def inputs_of(case: Path) -> list[dict]:
    return json.loads((case / "inputs.json").read_text())


def socket_path(case: Path, slug_part: str) -> Path:
    for entry in inputs_of(case):
        socket = entry.get("socket") or entry["interface"]
        if slug_part in socket["slug"]:
            return case / socket["relative_path"]
    raise KeyError(slug_part)


def only_file(folder: Path) -> Path:
    (file,) = [p for p in folder.iterdir() if p.is_file()]
    return file


def test_clean_cases_use_every_modality(trained, tmp_path, caplog):
    for task, expected in ((3, "wsi+clinical+rna"), (1, "wsi+mri+clinical")):
        _, log = run(trained["cases"][task], trained, tmp_path / str(task), caplog)
        result = json.loads(log.split("RESULT", 1)[1].splitlines()[0])
        assert result["provenance"].startswith(f"bundle:{TASKS[task].name}")
        assert set(expected.split("+")) == set(result["provenance"].split("[")[1].rstrip("]").split("+"))
        # the RESULT line says what the number is: unit, meaning, S(t) at the bundle's horizons, the model
        assert result["unit"] == "months" and "recurrence" in result["meaning"] and "member" in result["model"]
        survival = result["survival"]
        assert survival and all(k.startswith("S(") and k.endswith(" months)") for k in survival)
        assert all(0.0 <= v <= 1.0 for v in survival.values())
        by_month = sorted((float(k[2:].split()[0]), v) for k, v in survival.items())
        assert [v for _, v in by_month] == sorted(survival.values(), reverse=True)  # later horizon, lower S(t)


def test_auto_bundle_runs_through_inference_and_degrades(trained, tmp_path, caplog):
    """The demo default (`model: auto`, classical members) through inference.py: a clean case and one whose slide
    is unreadable both give a finite bundle prediction."""
    from train import demo

    model = tmp_path / "model-auto"
    demo.train_task(3, trained["root"] / "work", model, 36, seed=0)
    doc = json.loads((model / TASKS[3].name / "bundle.json").read_text())
    assert {m["kind"] for m in doc["members"]} == {"classical"} and doc["meta"]["auto"]["chosen"]
    auto = {**trained, "model": model}
    clean, log = run(trained["cases"][3], auto, tmp_path / "clean", caplog)
    assert "bundle:nmibc-recurrence[" in log and np.isfinite(clean)
    case = copy_case(trained, 3, tmp_path)
    for slide in case.rglob("*.tif"):
        slide.write_bytes(b"not a tiff")
    broken, log = run(case, auto, tmp_path, caplog)
    assert np.isfinite(broken) and "bundle:nmibc-recurrence[" in log


def test_missing_inputs_json(trained, tmp_path, caplog):
    case = copy_case(trained, 3, tmp_path)
    (case / "inputs.json").unlink()
    _, log = run(case, trained, tmp_path, caplog)
    assert_degraded(log, "inputs.json missing")


def test_unknown_and_extra_sockets(trained, tmp_path, caplog):
    case = copy_case(trained, 3, tmp_path)
    entries = inputs_of(case)
    extra = {"interface": {"slug": "a-socket-from-the-future", "relative_path": "future.json",
                           "super_kind": "Value", "kind": "Anything"}, "value": {"x": 1}, "image": None}
    (case / "inputs.json").write_text(json.dumps(entries + [extra, {"junk": True}]))
    _, log = run(case, trained, tmp_path, caplog)
    assert_degraded(log, "unknown socket", "a-socket-from-the-future")


def test_image_folder_without_a_file(trained, tmp_path, caplog):
    case = copy_case(trained, 3, tmp_path)
    only_file(socket_path(case, "whole-slide-image")).unlink()
    _, log = run(case, trained, tmp_path, caplog)
    assert_degraded(log, "no .tif/.tiff/.mha file")


def test_image_folder_with_two_files(trained, tmp_path, caplog):
    case = copy_case(trained, 3, tmp_path)
    wsi = only_file(socket_path(case, "whole-slide-image"))
    shutil.copy(wsi, wsi.with_name("another.tif"))
    _, log = run(case, trained, tmp_path, caplog)
    assert_degraded(log, "2 image files")


def test_truncated_tiff(trained, tmp_path, caplog):
    case = copy_case(trained, 3, tmp_path)
    wsi = only_file(socket_path(case, "whole-slide-image"))
    wsi.write_bytes(wsi.read_bytes()[: wsi.stat().st_size // 3])
    _, log = run(case, trained, tmp_path, caplog)
    assert any('"stage": "wsi"' in line for line in degraded_lines(log))


def test_corrupt_tiff(trained, tmp_path, caplog):
    case = copy_case(trained, 3, tmp_path)
    only_file(socket_path(case, "whole-slide-image")).write_bytes(b"II*\x00" + b"\x17" * 4096)
    _, log = run(case, trained, tmp_path, caplog)
    assert_degraded(log, '"stage": "wsi"', "predicting without slides")


def test_wsi_without_resolution_tags(trained, tmp_path, caplog):
    case = copy_case(trained, 3, tmp_path)
    wsi = only_file(socket_path(case, "whole-slide-image"))
    with openslide.OpenSlide(str(wsi)) as slide:
        rgb = np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB"))
    wsi.unlink()
    write_wsi(wsi, rgb, mpp=0.25, resolution=False)
    _, log = run(case, trained, tmp_path, caplog)
    assert_degraded(log, "no resolution")


def test_mask_whose_aspect_does_not_match(trained, tmp_path, caplog):
    case = copy_case(trained, 3, tmp_path)
    mask = only_file(socket_path(case, "tissue-mask"))
    mask.unlink()
    write_mask(mask, np.ones((40, 200), dtype=np.uint8), mpp=4.0)
    _, log = run(case, trained, tmp_path, caplog)
    assert_degraded(log, "mask")


def test_all_zero_mask(trained, tmp_path, caplog):
    case = copy_case(trained, 3, tmp_path)
    mask = only_file(socket_path(case, "tissue-mask"))
    with openslide.OpenSlide(str(mask)) as handle:
        width, height = handle.dimensions
    mask.unlink()
    write_mask(mask, np.zeros((height, width), dtype=np.uint8), mpp=4.0)
    _, log = run(case, trained, tmp_path, caplog)
    assert_degraded(log, '"stage": "wsi"')


def clinical_path(case: Path) -> Path:
    return socket_path(case, "clinical-data")


def clean_clinical() -> dict:
    """A Task 3 record with nothing to remark (a synthetic patient's), so a mutation is the only irregularity."""
    from chimera_surv import synthetic
    from chimera_surv.readers.clinical import load_schema, parse_clinical

    schema = load_schema(3)
    patients = synthetic.make_cohort(3, 30, 0, synthetic.CohortOptions(with_images=False, with_rna=False))
    return next(p.clinical for p in patients if not parse_clinical(p.clinical, schema).issues)


@pytest.mark.parametrize("mutation,expected", [
    (lambda c: [c], "wrapped in a one-element list"),
    (lambda c: {**c, "age": str(c["age"])}, "number given as text"),
])
def test_clinical_json_read_as_given_is_a_note_not_degraded(trained, tmp_path, caplog, mutation, expected):
    """Nothing lost (a record wrapped in a list, a number as text): one NOTE line says what was read, and the case
    is not degraded, since no value was imputed."""
    case = copy_case(trained, 3, tmp_path)
    clinical_path(case).write_text(json.dumps(mutation(clean_clinical())))
    _, log = run(case, trained, tmp_path, caplog)
    notes = [line for line in log.splitlines() if "NOTE" in line and '"stage": "clinical"' in line]
    assert any(expected in line and "no value imputed" in line for line in notes), log
    assert not [line for line in degraded_lines(log) if '"stage": "clinical"' in line]


@pytest.mark.parametrize("mutation,expected", [
    (lambda c: {**c, "LVI": "-1"}, "'LVI': missing"),
    (lambda c: {**c, "smoking": "x"}, "'smoking': missing"),
    (lambda c: {**c, "age": None}, "'age': missing"),
    (lambda c: {**c, "stage": "T9HG"}, "unknown category"),
    (lambda c: {k: v for k, v in c.items() if k != "grade"}, "'grade': key absent"),
])
def test_clinical_json_problems(trained, tmp_path, caplog, mutation, expected):
    case = copy_case(trained, 3, tmp_path)
    clinical_path(case).write_text(json.dumps(mutation(clean_clinical())))
    _, log = run(case, trained, tmp_path, caplog)
    assert_degraded(log, '"stage": "clinical"', expected, "1 value(s) treated as missing and imputed")


def rna_path(case: Path) -> Path:
    return socket_path(case, "rna-seq")


@pytest.mark.parametrize("mutation,expected", [
    (lambda r: dict(list(r.items())[: len(r) // 2]), "missing"),
    (lambda r: {**r, next(iter(r)): float("nan")}, "non"),
    (lambda r: {**r, next(iter(r)): "high"}, "non"),
    (lambda r: {}, "no usable gene value"),
])
def test_rna_problems(trained, tmp_path, caplog, mutation, expected):
    case = copy_case(trained, 3, tmp_path)
    path = rna_path(case)
    # json.dumps writes NaN as the bare token NaN, which json.loads (ours) accepts, like a real JSON producer might.
    path.write_text(json.dumps(mutation(json.loads(path.read_text()))))
    entries = inputs_of(case)
    for entry in entries:  # keep inputs.json's inline value from masking the file
        if "rna" in (entry.get("socket") or entry["interface"])["slug"]:
            entry["value"] = None
    (case / "inputs.json").write_text(json.dumps(entries))
    _, log = run(case, trained, tmp_path, caplog)
    assert_degraded(log, '"stage": "rna"', expected)


def test_missing_mri_sequence(trained, tmp_path, caplog):
    case = copy_case(trained, 1, tmp_path)
    only_file(socket_path(case, "axial-adc-prostate-mri")).unlink()
    _, log = run(case, trained, tmp_path, caplog)
    assert_degraded(log, "axial-adc-prostate-mri", "no .tif/.tiff/.mha file")
    assert any('"stage": "mri"' in line for line in degraded_lines(log))


def test_relative_path_escaping_input(trained, tmp_path, caplog):
    case = copy_case(trained, 3, tmp_path)
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"age": 99}))
    entries = inputs_of(case)
    for entry in entries:
        socket = entry.get("socket") or entry["interface"]
        if "clinical-data" in socket["slug"]:
            socket["relative_path"] = "../outside.json"
            entry["interface"] = entry["socket"] = socket
            entry["value"] = None
    (case / "inputs.json").write_text(json.dumps(entries))
    _, log = run(case, trained, tmp_path, caplog)
    assert_degraded(log, "escapes the input folder")


# ---------------------------------------------------------------------------------------------------------------
# Issue 11: the seven classes of input and model-folder faults, end to end (unit tests: test_input_faults.py).

def run_task(case: Path, model: Path, tmp_path: Path, caplog, task_id: int) -> tuple[float, str, dict]:
    """Run inference.py's main; the only file written must be `task_id`'s. Returns (value, log, RESULT)."""
    caplog.clear()
    out = tmp_path / "out"
    with caplog.at_level("INFO"):
        assert inference.main(["--input", str(case), "--output", str(out), "--model", str(model)]) == 0
    assert [f.name for f in out.iterdir()] == [TASKS[task_id].output_file]
    value = json.loads((out / TASKS[task_id].output_file).read_text())
    assert isinstance(value, float) and math.isfinite(value) and value >= 0
    result = json.loads(caplog.text.split("RESULT", 1)[1].splitlines()[0])
    return value, caplog.text, result


def write_inputs(case: Path, entries: list[dict]) -> None:
    (case / "inputs.json").write_text(json.dumps(entries))


def stray(slug: str) -> dict:
    socket = {"slug": slug, "relative_path": f"{slug}.json", "super_kind": "Value", "kind": "Anything"}
    return {"interface": socket, "socket": socket, "value": {"note": 1}, "image": None}


@pytest.mark.parametrize("extra", ["internal-qc-note", "axial-dwi-prostate-mri", "transverse-hbv-prostate-mri",
                                   "chimera-clinical-data-of-bladder-cancer-patients"])
def test_a_stray_socket_keeps_the_task_and_its_file(trained, tmp_path, caplog, extra):
    case = copy_case(trained, 3, tmp_path)
    write_inputs(case, inputs_of(case) + [stray(extra)])
    _, log, result = run_task(case, trained["model"], tmp_path, caplog, 3)
    assert result["provenance"].startswith("bundle:nmibc-recurrence")
    assert_degraded(log, extra, "ignored")


def test_a_task2_case_with_a_stray_socket_writes_the_task2_file(trained, tmp_path, caplog):
    case = copy_case(trained, 3, tmp_path)
    entries = [e for e in inputs_of(case) if "rna" not in e["interface"]["slug"]]
    for e in entries:
        if "clinical-data" in e["interface"]["slug"]:
            e["interface"]["slug"] = "chimera-clinical-data-of-bladder-cancer-patients"
            e["socket"] = e["interface"]
    write_inputs(case, entries + [stray("internal-qc-note")])
    value, log, _ = run_task(case, trained["model"], tmp_path, caplog, 2)
    assert 0.0 <= value <= 1.0
    assert_degraded(log, "internal-qc-note", "ignored")


def test_broken_socket_fields_cost_that_socket_only(trained, tmp_path, caplog):
    case = copy_case(trained, 3, tmp_path)
    entries = inputs_of(case)
    for e in entries:
        if e["interface"]["slug"] == "tissue-mask":
            e["interface"]["relative_path"] = 17
        if e["interface"]["slug"].endswith("whole-slide-image"):
            e["image"] = {"pk": 1, "name": 12345}
        e["socket"] = e["interface"]
    write_inputs(case, entries)
    clinical_path(case).write_text("[" * 100_000 + "]" * 100_000)
    _, log, result = run_task(case, trained["model"], tmp_path, caplog, 3)
    assert "wsi" in result["provenance"] and "rna" in result["provenance"]
    assert_degraded(log, "17", "not a non-empty string")
    assert_degraded(log, "image.name 12345 is not a string")
    assert_degraded(log, "clinical", "nested too deeply")


def test_a_400_digit_clinical_integer_costs_that_value(trained, tmp_path, caplog):
    case = copy_case(trained, 3, tmp_path)
    path = clinical_path(case)
    path.write_text(json.dumps({**json.loads(path.read_text()), "age": 10 ** 400}))
    _, log, result = run_task(case, trained["model"], tmp_path, caplog, 3)
    assert "clinical" in result["provenance"]
    assert_degraded(log, '"stage": "clinical"', "'age': not a number")


def model_copy(trained: dict, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained["model"], tmp_path / "model"))


def test_a_bundle_of_another_task_is_refused_by_name(trained, tmp_path, caplog):
    model = model_copy(trained, tmp_path)
    shutil.rmtree(model / "prostate-bcr")
    shutil.copytree(model / "nmibc-recurrence", model / "prostate-bcr")  # a Task 3 bundle in the Task 1 folder
    doc = json.loads((model / "nmibc-recurrence" / "bundle.json").read_text())
    doc.update(task_id=2, output_kind="probability")  # a Task 2 bundle in the Task 3 folder
    (model / "nmibc-recurrence" / "bundle.json").write_text(json.dumps(doc))
    _, log, result = run_task(trained["cases"][1], model, tmp_path / "1", caplog, 1)
    assert result["provenance"].startswith("prior:")
    assert_degraded(log, "Task 3 bundle (output months) in the folder of Task 1", "refused")
    _, log, result = run_task(trained["cases"][3], model, tmp_path / "3", caplog, 3)
    assert result["provenance"].startswith("prior:")
    assert_degraded(log, "Task 2 bundle (output probability) in the folder of Task 3", "refused")
    # The right task and output kind, but a calibration that gives probabilities: refused too.
    doc.update(task_id=3, output_kind="months", calibration={"name": "sigmoid"})
    (model / "nmibc-recurrence" / "bundle.json").write_text(json.dumps(doc))
    _, log, result = run_task(trained["cases"][3], model, tmp_path / "3b", caplog, 3)
    assert result["provenance"].startswith("prior:")
    assert_degraded(log, "calibration 'sigmoid' gives probability, but the bundle's output_kind is months")


def test_a_mask_declaring_a_huge_size_is_refused_fast(trained, tmp_path, caplog):
    from test_input_faults import tiny_tiff_declaring

    case = copy_case(trained, 3, tmp_path)
    mask = only_file(socket_path(case, "tissue-mask"))
    mask.unlink()
    tiny_tiff_declaring(mask, 153_600, 204_800)
    _, log, result = run_task(case, trained["model"], tmp_path, caplog, 3)
    assert_degraded(log, mask.name, "153600x204800 px", "decoding limit")
    assert_degraded(log, "saturation-threshold tissue estimate")
    assert "wsi" in result["provenance"] and result["seconds"] < 60


@pytest.mark.parametrize("fault,expected", [
    ("huge_header", "over the limit"), ("adc_outside", "ADC field of view covers 0%"), ("t2_nan", "not finite"),
])
def test_mri_faults_drop_the_mri_with_the_cause(trained, tmp_path, caplog, fault, expected):
    import SimpleITK as sitk
    from test_input_faults import mha_declaring

    case = copy_case(trained, 1, tmp_path)
    t2 = only_file(socket_path(case, "axial-t2-prostate-mri"))
    adc = only_file(socket_path(case, "axial-adc-prostate-mri"))
    if fault == "huge_header":
        mha_declaring(t2, (1000, 1000, 1000))
    elif fault == "adc_outside":
        image = sitk.ReadImage(str(adc))
        image.SetOrigin(tuple(o + 1000.0 for o in image.GetOrigin()))
        sitk.WriteImage(image, str(adc))
    else:
        image = sitk.ReadImage(str(t2), sitk.sitkFloat32)
        nan = sitk.Image(image.GetSize(), sitk.sitkFloat32) + float("nan")
        nan.CopyInformation(image)
        sitk.WriteImage(nan, str(t2))
    _, log, result = run_task(case, trained["model"], tmp_path, caplog, 1)
    assert "mri" not in result["provenance"] and "wsi" in result["provenance"]
    assert_degraded(log, '"stage": "mri"', expected, "MB)")


def test_a_slide_linked_from_outside_the_input_is_refused(trained, tmp_path, caplog):
    case = copy_case(trained, 3, tmp_path)
    wsi = only_file(socket_path(case, "whole-slide-image"))
    outside = tmp_path / "elsewhere.tif"
    shutil.move(wsi, outside)
    wsi.symlink_to(outside)
    _, log, result = run_task(case, trained["model"], tmp_path, caplog, 3)
    assert "wsi" not in result["provenance"]
    assert_degraded(log, "links outside the input folder")


def test_broken_bundle_json_and_memory_errors_name_the_real_cause(trained, tmp_path, caplog, monkeypatch):
    model = model_copy(trained, tmp_path)
    bundle_json = model / "nmibc-recurrence" / "bundle.json"
    doc = json.loads(bundle_json.read_text())
    del doc["weights_sha256"]
    bundle_json.write_text(json.dumps(doc))
    _, log, _ = run_task(trained["cases"][3], model, tmp_path / "a", caplog, 3)
    assert_degraded(log, "bundle.json: field 'weights_sha256'")
    assert not any("weights.safetensors" in line for line in degraded_lines(log))

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr("chimera_surv.features.extract_case_bag", out_of_memory)
    _, log, result = run_task(trained["cases"][3], trained["model"], tmp_path / "b", caplog, 3)
    assert "wsi" not in result["provenance"]
    assert_degraded(log, '"stage": "wsi"', "MB)", "MemoryError: out of memory")
# --- deadline (issue 12): a deliberately tiny deadline ends in time with a prefix bag and a DEGRADED line ---
def test_a_tiny_deadline_keeps_a_prefix_bag_and_says_so(trained, tmp_path, caplog, monkeypatch):
    import time

    monkeypatch.setenv("CHIMERA_PATCH_RATE", "0.5")  # a fixed, very slow rate: the plan keeps one batch
    out = tmp_path / "out"
    started = time.monotonic()
    with caplog.at_level("INFO"):  # the clock is passed down explicitly: nothing global to reset afterwards
        assert inference.main(["--input", str(trained["cases"][1]), "--output", str(out), "--model",
                               str(trained["model"]), "--deadline", "30"]) == 0
    assert time.monotonic() - started < 30
    assert "DEVICE {" in caplog.text and "DEADLINE {" in caplog.text
    extract = json.loads(caplog.text.split("EXTRACT ", 1)[1].splitlines()[0])
    assert 0 < extract["done"] < extract["total"] and extract["stopped"] == "planned"
    assert '"stage": "wsi"' in caplog.text and "deadline:" in caplog.text
    result = json.loads(caplog.text.split("RESULT ", 1)[1].splitlines()[0])
    assert "wsi" in result["provenance"] and math.isfinite(result["value"])
