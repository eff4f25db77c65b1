"""gc.py: socket recognition, file resolution, JSON values, path safety and the output file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from chimera_surv.gc import UnknownTaskError, read_case, write_output
from chimera_surv.tasks import TASKS, classify_slug, identify_task


def socket(slug: str, relative: str, super_kind: str, value=None, image_name: str | None = None,
           legacy_only: bool = False) -> dict:
    interface = {"slug": slug, "relative_path": relative, "super_kind": super_kind,
                 "kind": "Image" if super_kind == "Image" else "Anything"}
    entry = {"pk": 1, "file": None, "value": value,
             "image": {"pk": "x", "name": image_name} if image_name else None, "interface": interface}
    if not legacy_only:
        entry["socket"] = interface
    return entry


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00")
    return path


def task1_sockets(n_slides: int) -> list[dict]:
    """The organisers' Task 1 interface with `n_slides` WSIs (interf0..interf9 of the template)."""
    entries = [
        socket("axial-t2-prostate-mri", "images/axial-t2-prostate-mri", "Image"),
        socket("axial-adc-prostate-mri", "images/axial-adc-prostate-mri", "Image"),
        socket("transverse-hbv-prostate-mri", "images/transverse-hbv-prostate-mri", "Image"),
        socket("prostate-tissue-mask-for-axial-t2-prostate-mri",
               "images/prostate-tissue-mask-for-axial-t2-prostate-mri", "Image"),
        socket("prostatectomy-tissue-whole-slide-image", "images/prostatectomy-wsi", "Image", image_name="p_1.tif"),
        socket("prostatectomy-tissue-mask", "images/prostatectomy-tissue-mask", "Image"),
        socket("chimera-clinical-data-of-prostate-cancer-patients",
               "chimera-clinical-data-of-prostate-cancer-patients.json", "Value", value={"ISUP": 2}),
    ]
    for k in range(1, n_slides):
        entries.append(socket(f"prostatectomy-tissue-whole-slide-image-{k}", f"images/prostatectomy-wsi-z-{k}",
                              "Image"))
        entries.append(socket(f"prostatectomy-tissue-whole-slide-image-{k}-2",
                              f"images/prostatectomy-tissue-mask-wsi-{k}", "Image"))
    return entries


def materialise(root: Path, entries: list[dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "inputs.json").write_text(json.dumps(entries))
    for entry in entries:
        interface = entry["interface"]
        if interface["super_kind"] == "Image":
            touch(root / interface["relative_path"] / f"{interface['slug']}.tif")
        elif entry.get("value") is not None:
            (root / interface["relative_path"]).write_text(json.dumps(entry["value"]))
    return root


@pytest.mark.parametrize("n_slides", range(1, 11))
def test_every_task1_interface_pairs_each_slide_with_its_mask(tmp_path, n_slides):
    case = read_case(materialise(tmp_path, task1_sockets(n_slides)))
    assert case.task.id == 1
    assert [s.index for s in case.slides] == list(range(n_slides))
    for slide in case.slides:
        assert slide.wsi is not None and slide.mask is not None
        expected_mask = "prostatectomy-tissue-mask" if slide.index == 0 else \
            f"prostatectomy-tissue-whole-slide-image-{slide.index}-2"
        assert slide.mask.name == f"{expected_mask}.tif"
        assert slide.wsi.parent.name in ("prostatectomy-wsi", f"prostatectomy-wsi-z-{slide.index}")
    assert case.mri.present() == ["t2", "adc", "hbv", "mask"]
    assert case.clinical == {"ISUP": 2}
    assert case.issues == []


def test_slug_classification_covers_every_role():
    assert classify_slug("prostatectomy-tissue-whole-slide-image-7") == ("wsi", 7)
    assert classify_slug("prostatectomy-tissue-whole-slide-image-7-2") == ("wsi_mask", 7)
    assert classify_slug("prostate-tissue-mask-for-axial-t2-prostate-mri") == ("mri_mask", 0)
    assert classify_slug("bulk-rna-seq-bladder-cancer") == ("rna", 0)
    assert classify_slug("chimera-clinical-data-of-bladder-cancer-recurrence") == ("clinical", 0)
    assert classify_slug("axial-dwi-prostate-mri") is None  # the evaluator's obsolete socket: ignored
    assert identify_task(["tissue-mask", "bladder-cancer-tissue-biopsy-whole-slide-image",
                          "chimera-clinical-data-of-bladder-cancer-patients"]).id == 2
    assert identify_task(["tissue-mask", "bulk-rna-seq-bladder-cancer"]).id == 3


def bladder_sockets(task_id: int) -> list[dict]:
    entries = [socket("bladder-cancer-tissue-biopsy-whole-slide-image", "images/bladder-cancer-tissue-biopsy-wsi",
                      "Image", image_name="3B_123_HE.tif"),
               socket("tissue-mask", "images/tissue-mask", "Image")]
    if task_id == 3:
        entries.append(socket("bulk-rna-seq-bladder-cancer", "bulk-rna-seq-bladder-cancer.json", "Value",
                              value={"A1BG": 1.0}))
        entries.append(socket("chimera-clinical-data-of-bladder-cancer-recurrence",
                              "chimera-clinical-data-of-bladder-cancer-recurrence-patients.json", "Value",
                              value={"age": 70}))
    else:
        entries.append(socket("chimera-clinical-data-of-bladder-cancer-patients",
                              "chimera-clinical-data-of-bladder-cancer-patients.json", "Value", value={"age": 70}))
    return entries


def test_json_file_wins_and_inline_value_is_the_fallback(tmp_path):
    root = materialise(tmp_path, bladder_sockets(3))
    (root / "bulk-rna-seq-bladder-cancer.json").write_text(json.dumps({"A1BG": 5.0}))
    (root / "chimera-clinical-data-of-bladder-cancer-recurrence-patients.json").unlink()
    case = read_case(root)
    assert case.task.id == 3
    assert case.rna == {"A1BG": 5.0}  # from the file
    assert case.clinical == {"age": 70}  # from `value`, the file being gone
    assert any("inline value" in issue for issue in case.issues)
    assert case.case_id == "3B_123_HE"


def test_legacy_interface_key_alone_is_enough(tmp_path):
    entries = [socket(**{k: v for k, v in s["interface"].items() if k in ("slug",)},
                      relative=s["interface"]["relative_path"], super_kind=s["interface"]["super_kind"],
                      value=s["value"], legacy_only=True) for s in bladder_sockets(2)]
    case = read_case(materialise(tmp_path, entries))
    assert case.task.id == 2 and len(case.slides) == 1 and case.clinical == {"age": 70}


def test_path_escaping_the_input_folder_is_refused(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"age": 1}))
    entries = bladder_sockets(2)
    entries[2]["interface"]["relative_path"] = "../secret.json"
    entries[2]["socket"] = entries[2]["interface"]
    entries[2]["value"] = None
    entries[0]["interface"]["relative_path"] = "../../etc"
    root = tmp_path / "case"
    materialise(root, entries[1:])
    (root / "inputs.json").write_text(json.dumps(entries))
    case = read_case(root)
    assert case.clinical is None
    assert any("escapes the input folder" in issue for issue in case.issues)
    assert case.slides == [] or all(s.wsi is None or s.wsi.is_relative_to(root) for s in case.slides)


def test_empty_and_ambiguous_image_folders_are_reported(tmp_path):
    root = materialise(tmp_path, bladder_sockets(2))
    wsi_dir = root / "images/bladder-cancer-tissue-biopsy-wsi"
    touch(wsi_dir / "3B_123_HE.tif.bak")
    touch(wsi_dir / "3B_123_HE.tif")  # the name the platform recorded
    for mask in (root / "images/tissue-mask").iterdir():
        mask.unlink()
    case = read_case(root)
    assert case.slides[0].wsi.name == "3B_123_HE.tif"
    assert any("2 image files" in issue for issue in case.issues)
    assert case.slides[0].mask is None
    assert any("no .tif/.tiff/.mha file" in issue for issue in case.issues)


def test_unknown_and_extra_sockets_are_ignored(tmp_path, caplog):
    entries = bladder_sockets(3) + [socket("some-new-socket", "new.json", "Value", value=1),
                                    socket("axial-dwi-prostate-mri", "images/axial-dwi", "Image")]
    entries = [e for e in entries if "prostate" not in e["interface"]["slug"]]
    case = read_case(materialise(tmp_path, entries))
    assert case.task.id == 3
    assert "some-new-socket" in caplog.text


def test_missing_inputs_json_rebuilds_from_the_layout(tmp_path):
    root = materialise(tmp_path, bladder_sockets(3))
    (root / "inputs.json").unlink()
    case = read_case(root)
    assert case.task.id == 3 and len(case.slides) == 1 and case.rna == {"A1BG": 1.0}
    assert any("inputs.json missing" in issue for issue in case.issues)
    with pytest.raises(UnknownTaskError):
        read_case(tmp_path / "nothing-here")


def test_output_is_one_finite_float_at_the_task_file_name(tmp_path):
    path = write_output(tmp_path, TASKS[3], 42.5)
    assert path.name == "likelihood-of-bladder-cancer-recurrence.json"
    assert json.loads(path.read_text()) == 42.5
    assert write_output(tmp_path, TASKS[1], 3).name == \
        "time-to-biochemical-recurrence-for-prostate-cancer-months.json"
    for bad in (math.nan, math.inf, -1.0):
        with pytest.raises(ValueError):
            write_output(tmp_path, TASKS[3], bad)
    with pytest.raises(ValueError):
        write_output(tmp_path, TASKS[2], 1.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "likelihood-of-bladder-cancer-recurrence.json",
        "time-to-biochemical-recurrence-for-prostate-cancer-months.json"]  # no temp files left behind
