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


@pytest.mark.parametrize("mutation,expected", [
    (lambda c: [c], "wrapped in a one-element list"),
    (lambda c: {**c, "LVI": "-1"}, "'LVI': missing"),
    (lambda c: {**c, "smoking": "x"}, "'smoking': missing"),
    (lambda c: {**c, "age": None}, "'age': missing"),
    (lambda c: {**c, "age": str(c["age"])}, "number given as text"),
    (lambda c: {**c, "stage": "T9HG"}, "unknown category"),
    (lambda c: {k: v for k, v in c.items() if k != "grade"}, "'grade': key absent"),
])
def test_clinical_json_problems(trained, tmp_path, caplog, mutation, expected):
    case = copy_case(trained, 3, tmp_path)
    path = clinical_path(case)
    path.write_text(json.dumps(mutation(json.loads(path.read_text()))))
    _, log = run(case, trained, tmp_path, caplog)
    assert_degraded(log, '"stage": "clinical"', expected)


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
