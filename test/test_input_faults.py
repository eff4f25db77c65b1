"""The seven classes of input and model-folder faults (issue 11), unit by unit, on cases in the organisers' layout.

Each class is tested as a class: every task, every kind of stray socket, every field type, not one instance.
Huge inputs are tiny files that *declare* a huge size (a TIFF or .mha header), so the guards are exercised
without writing big data. The end-to-end runs of the same faults are in test_inference_bad_input.py.
"""

from __future__ import annotations

import json
import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from chimera_surv import limits
from chimera_surv.bundle import BundleError, check_bundle_doc, read_bundle_json
from chimera_surv.case import MRIInput
from chimera_surv.errors import describe
from chimera_surv.gc import read_case
from chimera_surv.predict import DegradedLog, attempt, files_label
from chimera_surv.readers import slide as slide_reader
from chimera_surv.readers.mri import MissingModality, align_and_crop, read_mri, read_volume
from chimera_surv.tasks import REQUIRED_SOCKETS, TASK_SOCKETS, TASKS, choose_task, classify_slug
from chimera_surv.writers import write_mha

# The organisers' relative path of each socket (chimera-spec.md §1.2-1.4).
RELATIVE = {
    "axial-t2-prostate-mri": "images/axial-t2-prostate-mri",
    "axial-adc-prostate-mri": "images/axial-adc-prostate-mri",
    "transverse-hbv-prostate-mri": "images/transverse-hbv-prostate-mri",
    "prostate-tissue-mask-for-axial-t2-prostate-mri": "images/prostate-tissue-mask-for-axial-t2-prostate-mri",
    "prostatectomy-tissue-whole-slide-image": "images/prostatectomy-wsi",
    "prostatectomy-tissue-mask": "images/prostatectomy-tissue-mask",
    "chimera-clinical-data-of-prostate-cancer-patients": "chimera-clinical-data-of-prostate-cancer-patients.json",
    "bladder-cancer-tissue-biopsy-whole-slide-image": "images/bladder-cancer-tissue-biopsy-wsi",
    "tissue-mask": "images/tissue-mask",
    "chimera-clinical-data-of-bladder-cancer-patients": "chimera-clinical-data-of-bladder-cancer-patients.json",
    "bulk-rna-seq-bladder-cancer": "bulk-rna-seq-bladder-cancer.json",
    "chimera-clinical-data-of-bladder-cancer-recurrence":
        "chimera-clinical-data-of-bladder-cancer-recurrence-patients.json",
}


def entry(slug: str, relative: object | None = None, value: object = None, image_name: object = None) -> dict:
    relative = RELATIVE.get(slug, f"images/{slug}") if relative is None else relative
    json_socket = isinstance(relative, str) and relative.endswith(".json")
    interface = {"slug": slug, "relative_path": relative, "super_kind": "Value" if json_socket else "Image",
                 "kind": "Anything" if json_socket else "Image"}
    return {"pk": 1, "file": None, "value": value, "interface": interface, "socket": interface,
            "image": {"pk": "x", "name": image_name} if image_name is not None else None}


def materialise(root: Path, entries: list[dict]) -> Path:
    """inputs.json plus one file per socket (a placeholder .tif per image folder, the JSON value per file)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "inputs.json").write_text(json.dumps(entries))
    for item in entries:
        relative = item["interface"]["relative_path"]
        if not isinstance(relative, str) or ".." in relative:
            continue
        if item["interface"]["super_kind"] == "Image":
            (root / relative).mkdir(parents=True, exist_ok=True)
            (root / relative / f"{item['interface']['slug']}.tif").write_bytes(b"\x00")
        else:
            (root / relative).write_text(json.dumps(item["value"] if item["value"] is not None else {"age": 70}))
    return root


def task_entries(task_id: int) -> list[dict]:
    """The complete socket set of a task's first interface, with small valid JSON values."""
    values = {"bulk-rna-seq-bladder-cancer": {"A1BG": 1.0}}
    return [entry(slug, value=values.get(slug, {"age": 70}) if RELATIVE[slug].endswith(".json") else None,
                  image_name=f"{slug}.tif" if not RELATIVE[slug].endswith(".json") else None)
            for slug in sorted(REQUIRED_SOCKETS[task_id])]


# ---------------------------------------------------------------------------------------------------------------
# 1. Task identification follows from the sockets each task defines.

STRAYS = ["internal-qc-note", "rna-quality-report", "prostate-notes", "bladder-recurrence-comment",
          "chimera-clinical-data-of-something-else", "axial-dwi-prostate-mri", "transverse-dce-prostate-mri",
          "tissue-mask-2", "axial-t2-prostate-mri-copy"]


@pytest.mark.parametrize("task_id", [1, 2, 3])
def test_a_stray_socket_never_changes_the_task(tmp_path, task_id, caplog):
    others = [slug for t in TASK_SOCKETS if t != task_id for slug in REQUIRED_SOCKETS[t]
              if slug not in TASK_SOCKETS[task_id]]
    for n, stray in enumerate(STRAYS + others):
        root = materialise(tmp_path / str(n), task_entries(task_id) + [entry(stray, value={"x": 1})])
        with caplog.at_level(logging.WARNING):
            case = read_case(root)
        assert case.task.id == task_id, stray
        assert any(stray in issue and "ignored" in issue for issue in case.issues), (stray, case.issues)
        assert stray in caplog.text


def test_slugs_are_matched_exactly_never_by_a_word_they_contain():
    for task_id, table in TASK_SOCKETS.items():
        for slug, role in table.items():
            assert classify_slug(slug, TASKS[task_id]) == role
            for variant in (f"x-{slug}", f"{slug}-x", slug.upper(), slug.replace("-", "_")):
                assert classify_slug(variant) is None, variant
    assert classify_slug("bulk-rna-seq-bladder-cancer", TASKS[2]) is None  # not a Task 2 socket


@pytest.mark.parametrize("a,b", [(1, 2), (1, 3), (2, 3)])
def test_sockets_of_two_tasks_the_required_sockets_decide_and_the_log_says_so(a, b):
    # Complete task `a` plus one required socket of task `b` (not shared with `a`) → `a`, and the reverse.
    for main, extra in ((a, b), (b, a)):
        stray = min(REQUIRED_SOCKETS[extra] - set(TASK_SOCKETS[main]))
        task, note = choose_task(sorted(REQUIRED_SOCKETS[main]) + [stray])
        assert task.id == main
        assert note is not None and f"Task {main} chosen by its required sockets" in note
    # Both complete: the larger required set (Task 3 contains Task 2's shared slide sockets; Task 1 has seven).
    task, note = choose_task(sorted(REQUIRED_SOCKETS[a] | REQUIRED_SOCKETS[b]))
    assert task.id == max((a, b), key=lambda t: len(REQUIRED_SOCKETS[t])) and note


def test_a_clean_socket_set_logs_nothing():
    for task_id in TASKS:
        assert choose_task(sorted(TASK_SOCKETS[task_id])) == (TASKS[task_id], None)


def test_partial_socket_sets_still_name_their_task():
    for task_id in TASKS:
        own = REQUIRED_SOCKETS[task_id] - set().union(*(TASK_SOCKETS[t] for t in TASKS if t != task_id))
        for slug in own:  # any one socket that only this task defines is enough
            assert choose_task([slug])[0].id == task_id
    # Only the shared bladder slide sockets: Task 2 (its required set is the smaller one they complete more of),
    # and the log says the choice was made between two tasks.
    task, note = choose_task(["tissue-mask", "bladder-cancer-tissue-biopsy-whole-slide-image"])
    assert task.id == 2 and "Task 2 chosen by its required sockets" in note
    with pytest.raises(ValueError):
        choose_task(["internal-qc-note", "axial-dwi-prostate-mri"])


# ---------------------------------------------------------------------------------------------------------------
# 2. An exception while parsing one field or socket costs that field or socket only.

def deep(levels: int) -> str:
    return "[" * levels + "1" + "]" * levels


@pytest.mark.parametrize("task_id", [1, 2, 3])
def test_wrong_types_in_any_socket_field_cost_that_socket_only(tmp_path, task_id):
    image_slug = "prostatectomy-tissue-whole-slide-image" if task_id == 1 else \
        "bladder-cancer-tissue-biopsy-whole-slide-image"
    faults = {
        "relative_path is a number": lambda e: e["interface"].update(relative_path=123),
        "relative_path is a list": lambda e: e["interface"].update(relative_path=["images", "x"]),
        "image.name is a number": lambda e: e.update(image={"pk": 1, "name": 12345}),
        "image is a string": lambda e: e.update(image="name.tif"),
        "socket is a list": lambda e: e.update(socket=[1, 2], interface=[1, 2]),
        "slug is a number": lambda e: e["interface"].update(slug=7),
        "value is a 400-digit integer": lambda e: e.update(value=10 ** 400),
    }
    for n, (name, fault) in enumerate(faults.items()):
        entries = task_entries(task_id)
        for item in entries:
            if item["interface"]["slug"] in (image_slug, min(REQUIRED_SOCKETS[task_id])):
                fault(item)
        root = tmp_path / str(n)
        materialise(root, task_entries(task_id))
        (root / "inputs.json").write_text(json.dumps(entries))
        case = read_case(root)
        assert case.task.id == task_id, name
        assert case.clinical == {"age": 70}, name  # the other sockets are still read


def test_deep_nesting_and_huge_json_cost_that_file_only(tmp_path, monkeypatch):
    root = materialise(tmp_path / "case", task_entries(3))
    clinical = root / RELATIVE["chimera-clinical-data-of-bladder-cancer-recurrence"]
    rna = root / RELATIVE["bulk-rna-seq-bladder-cancer"]
    clinical.write_text(deep(100_000))  # RecursionError inside json.loads
    rna.write_text(json.dumps({"A1BG": 10 ** 400}))  # a 400-digit integer
    case = read_case(root)
    assert case.task.id == 3
    assert any("nested too deeply" in issue for issue in case.issues)
    assert case.clinical == {"age": 70}  # the inline value of inputs.json took over
    # A deeply nested inputs.json: the sockets are rebuilt from the folder layout, the task is still known.
    (root / "inputs.json").write_text(deep(100_000))
    case = read_case(root)
    assert case.task.id == 3 and any("inputs.json unreadable" in issue for issue in case.issues)
    # A JSON file over the size limit is not read at all.
    monkeypatch.setattr("chimera_surv.gc.MAX_JSON_BYTES", 10)
    (root / "inputs.json").write_text(json.dumps(task_entries(3)))
    case = read_case(root)
    assert case.task.id == 3 and any("over the 10-byte limit" in issue for issue in case.issues)


def test_inputs_json_naming_no_task_socket_falls_back_to_the_layout(tmp_path):
    import os

    root = materialise(tmp_path / "case", task_entries(3))
    for content in ([], [{"interface": {"slug": "internal-qc-note"}}], {"socket": 5}, [1, "x", None]):
        (root / "inputs.json").write_text(json.dumps(content))
        case = read_case(root)
        assert case.task.id == 3 and case.rna == {"A1BG": 1.0}
        assert any("names no socket of any task" in issue for issue in case.issues)
    # A JSON socket that is a FIFO would block a read forever: refused, the inline value used.
    (root / "inputs.json").write_text(json.dumps(task_entries(3)))
    rna = root / RELATIVE["bulk-rna-seq-bladder-cancer"]
    rna.unlink()
    os.mkfifo(rna)
    case = read_case(root)
    assert case.rna == {"A1BG": 1.0} and any("not a regular file" in issue for issue in case.issues)


def test_clinical_parsing_failures_cost_the_value_only():
    from chimera_surv.readers.clinical import load_schema, parse_clinical
    from chimera_surv.readers.rna import parse_rna

    record = parse_clinical({"age": 10 ** 400, "sex": "Male", "stage": [[[[["T1"]]]]]}, load_schema(3))
    assert record.values["age"] is None and record.values["sex"] is not None
    vector = parse_rna({"A1BG": 10 ** 400, "A2M": 3.0}, ["A1BG", "A2M"])
    assert np.isnan(vector.values[0]) and vector.values[1] == 3.0 and vector.report.nonfinite == 1


# ---------------------------------------------------------------------------------------------------------------
# 3. A bundle of another task (or output kind) is refused, naming both.

def bundle_doc(task_id: int, kind: str) -> dict:
    return {"format_version": 1, "task_id": task_id, "output_kind": kind, "modalities": ["clinical"],
            "members": [{"name": "m"}], "calibration": {}, "weights_sha256": "0" * 64}


def test_a_bundle_of_another_task_or_output_kind_is_refused():
    file = Path("model/x/bundle.json")
    for doc_task in TASKS.values():
        for case_task in TASKS.values():
            doc = bundle_doc(doc_task.id, doc_task.output_kind)
            if doc_task.id == case_task.id:
                check_bundle_doc(doc, file, case_task)
                continue
            with pytest.raises(BundleError, match=f"Task {doc_task.id} bundle .* Task {case_task.id}"):
                check_bundle_doc(doc, file, case_task)
    with pytest.raises(BundleError, match="output probability"):  # right task id, wrong kind
        check_bundle_doc(bundle_doc(3, "probability"), file, TASKS[3])


# ---------------------------------------------------------------------------------------------------------------
# 4. Size and time guards before decoding.

def tiny_tiff_declaring(path: Path, width: int, height: int) -> Path:
    """A 300-byte classic TIFF of one deflate strip whose header declares width x height uint8 pixels."""
    blob = zlib.compress(bytes(width))
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 8), (262, 3, 1), (273, 4, 0),
            (277, 3, 1), (278, 4, height), (279, 4, len(blob))]
    data_offset = 8 + 2 + 12 * len(tags) + 4
    out = bytearray(b"II*\x00" + struct.pack("<IH", 8, len(tags)))
    for tag, kind, value in tags:
        value = data_offset if tag == 273 else value
        out += struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3 else
                                                     struct.pack("<I", value))
    path.write_bytes(bytes(out + struct.pack("<I", 0) + blob))
    return path


def test_a_mask_declaring_a_huge_single_level_is_refused_before_decoding(tmp_path):
    mask = tiny_tiff_declaring(tmp_path / "mask.tif", 153_600, 204_800)
    assert mask.stat().st_size < 1000
    with pytest.raises(slide_reader.SlideError, match=r"153600x204800 px, over the .* decoding limit"):
        slide_reader._read_mask_pixels(mask, limits.MAX_MASK_PIXELS)
    # Under the decoding limit but over the pixel budget: shrunk while decoding, to at most the budget.
    pixels = slide_reader._read_mask_pixels(tiny_tiff_declaring(tmp_path / "m2.tif", 400, 300), 1200)
    assert pixels.size <= 1200 * 1.05 and pixels.shape[1] > pixels.shape[0]


def one_level_slide(path: Path, width: int, height: int) -> Path:
    """A tiled JPEG TIFF without a pyramid: a pink tissue disc on white."""
    import pyvips

    y, x = np.mgrid[:height, :width]
    rgb = np.full((height, width, 3), 245, np.uint8)
    rgb[(x - width / 3) ** 2 + (y - height / 2) ** 2 < (height / 3) ** 2] = (200, 110, 170)
    image = pyvips.Image.new_from_array(rgb).copy(interpretation="srgb")
    image.tiffsave(str(path), tile=True, tile_width=128, tile_height=128, compression="jpeg", Q=90,
                   xres=4000.0, yres=4000.0, resunit="cm")
    return path


def test_the_tissue_estimate_reads_a_slide_without_pyramid_by_bounded_tiles(tmp_path, monkeypatch):
    path = one_level_slide(tmp_path / "flat.tif", 1000, 700)
    with slide_reader.open_slide(path) as wsi:
        assert wsi.level_count == 1
        reference = slide_reader.estimate_tissue_mask(wsi, max_side=1000)  # read whole: the small-slide path
        coarse = reference.tissue[2::5, 2::5]  # the centre pixel of each 5x5 block
        shrunk = slide_reader.estimate_tissue_mask(wsi, max_side=200)  # streamed through pyvips
        assert shrunk.tissue.shape == (140, 200) and (coarse == shrunk.tissue).mean() > 0.97
        # When pyvips cannot read the file: openslide, tile by tile.
        monkeypatch.setattr(slide_reader, "_thumbnail", lambda path, size, side: None)
        monkeypatch.setattr(slide_reader, "ESTIMATE_TILE", 96)
        sizes = []
        original = wsi.read_region

        def spy(x0, y0, level, width, height):
            sizes.append(width * height)
            return original(x0, y0, level, width, height)

        monkeypatch.setattr(wsi, "read_region", spy)
        tiled = slide_reader.estimate_tissue_mask(wsi, max_side=200)
        assert max(sizes) <= 96 * 96 and len(sizes) > 20  # never the whole level at once
        assert tiled.tissue.shape == (140, 200) and tiled.scale == pytest.approx((5.0, 5.0))
        assert (coarse == tiled.tissue).mean() > 0.97
        assert abs(tiled.fraction - np.pi / 9 * 0.7) < 0.02  # the disc: pi (h/3)^2 / (w h)
        monkeypatch.setattr(slide_reader, "MAX_ESTIMATE_DECODE_PIXELS", 10_000)
        with pytest.raises(slide_reader.SlideError, match="1000x700 px.*limit of the tissue estimate"):
            slide_reader.estimate_tissue_mask(wsi, max_side=200)
        monkeypatch.setattr(slide_reader, "ESTIMATE_TIME_S", -1.0)
        monkeypatch.setattr(slide_reader, "MAX_ESTIMATE_DECODE_PIXELS", 10**9)
        with pytest.raises(slide_reader.SlideError, match="over its -1 s limit"):
            slide_reader.estimate_tissue_mask(wsi, max_side=200)
        with pytest.raises(slide_reader.SlideError, match="too large to read whole"):
            monkeypatch.setattr(slide_reader, "MAX_MASK_PIXELS", 1000)
            wsi.read_level(0)


def test_the_tissue_estimate_shrinks_the_coarsest_pyramid_level_when_it_is_still_large(tmp_path, monkeypatch):
    from chimera_surv.writers import write_wsi

    y, x = np.mgrid[:768, :1024]
    rgb = np.full((768, 1024, 3), 245, np.uint8)
    rgb[(x - 512) ** 2 + (y - 384) ** 2 < 250 ** 2] = (200, 110, 170)
    path = write_wsi(tmp_path / "pyramid.tif", rgb, mpp=0.25)

    def no_tiles(*args):
        raise AssertionError("read by openslide tiles although pyvips can shrink the page")

    monkeypatch.setattr(slide_reader, "_read_level_reduced", no_tiles)
    with slide_reader.open_slide(path) as wsi:
        assert min(max(d) for d in wsi.level_dimensions) > 100
        mask = slide_reader.estimate_tissue_mask(wsi, max_side=100)
    assert max(mask.tissue.shape) == 100
    assert abs(mask.fraction - np.pi * 250 ** 2 / (1024 * 768)) < 0.03


def mha_declaring(path: Path, size: tuple[int, int, int], spacing: str = "1 1 1") -> Path:
    """An .mha whose header declares `size` voxels, with only a few bytes of data."""
    header = (f"ObjectType = Image\nNDims = 3\nDimSize = {size[0]} {size[1]} {size[2]}\nElementSpacing = {spacing}\n"
              "ElementType = MET_FLOAT\nElementDataFile = LOCAL\n")
    path.write_bytes(header.encode() + b"\x00" * 64)
    return path


def test_mri_headers_are_checked_before_decoding(tmp_path):
    with pytest.raises(MissingModality, match=r"1000x1000x1000 = 1,000,000,000 voxels, over the limit"):
        read_volume(mha_declaring(tmp_path / "huge.mha", (1000, 1000, 1000)))
    with pytest.raises(MissingModality, match="spacing"):
        read_volume(mha_declaring(tmp_path / "flat.mha", (2, 2, 2), spacing="1 0 1"))


# ---------------------------------------------------------------------------------------------------------------
# 5. Empty, non-overlapping or non-finite volumes and masks are detected and the modality dropped.

def small_mri(directory: Path, adc_origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
              t2: np.ndarray | None = None, mask: np.ndarray | None = None) -> MRIInput:
    rng = np.random.default_rng(0)
    shape = (8, 32, 32)  # (z, y, x), 1 mm voxels
    t2_values = rng.uniform(100, 300, shape).astype(np.float32) if t2 is None else t2
    prostate = np.zeros(shape, np.uint8)
    prostate[2:6, 10:22, 10:22] = 1
    write_mha(directory / "t2.mha", t2_values, (1.0, 1.0, 1.0))
    write_mha(directory / "mask.mha", prostate if mask is None else mask, (1.0, 1.0, 1.0))
    for name in ("adc", "hbv"):
        write_mha(directory / f"{name}.mha", rng.uniform(500, 2000, (8, 16, 16)).astype(np.float32),
                  (2.0, 2.0, 1.0), origin=adc_origin if name == "adc" else (0.0, 0.0, 0.0))
    return MRIInput(*(directory / f"{n}.mha" for n in ("t2", "adc", "hbv", "mask")))


def test_clean_small_mri_aligns(tmp_path):
    aligned = align_and_crop(read_mri(small_mri(tmp_path)))
    assert aligned.mask.any() and aligned.adc is not None and np.isfinite(aligned.adc).all()


@pytest.mark.parametrize("fault,message", [
    ("adc_outside", "ADC field of view covers 0% of the prostate"),
    ("t2_nan", "not finite"),
    ("t2_one_inf", "1 of 8,192 voxels are not finite"),
    ("t2_constant", "the volume is blank"),
    ("mask_empty", "prostate mask is empty"),
    ("mask_outside", "outside the T2 field of view"),
])
def test_corrupt_or_non_overlapping_mri_is_refused(tmp_path, fault, message):
    t2 = np.random.default_rng(1).uniform(100, 300, (8, 32, 32)).astype(np.float32)
    options: dict = {}
    if fault == "adc_outside":
        options["adc_origin"] = (500.0, 0.0, 0.0)
    elif fault == "t2_nan":
        options["t2"] = np.full_like(t2, np.nan)
    elif fault == "t2_one_inf":
        t2[0, 0, 0] = np.inf
        options["t2"] = t2
    elif fault == "t2_constant":
        options["t2"] = np.zeros_like(t2)
    elif fault == "mask_empty":
        options["mask"] = np.zeros(t2.shape, np.uint8)
    mri = small_mri(tmp_path, **options)
    if fault == "mask_outside":
        mask = np.zeros(t2.shape, np.uint8)
        mask[2:6, 10:22, 10:22] = 1
        write_mha(mri.mask, mask, (1.0, 1.0, 1.0), origin=(0.0, 0.0, 900.0))
    with pytest.raises(MissingModality, match=message):
        align_and_crop(read_mri(mri))


def test_non_finite_tissue_mask_is_refused():
    values = np.zeros((4, 4), np.float32)
    values[1, 1] = np.nan
    with pytest.raises(slide_reader.SlideError, match="1 of 16 pixels are not finite"):
        slide_reader._binarise(values, "m.tif")
    assert slide_reader._binarise(np.array([[0, 255]], np.uint8), "m.tif").tolist() == [[False, True]]


def test_a_mask_too_small_to_locate_tissue_is_refused(tmp_path):
    from chimera_surv.writers import write_mask

    slide = one_level_slide(tmp_path / "s.tif", 256, 192)
    with slide_reader.open_slide(slide) as wsi:
        for shape in ((1, 1), (3, 4)):
            mask = write_mask(tmp_path / f"m{shape[0]}.tif", np.ones(shape, np.uint8), mpp=4.0)
            with pytest.raises(slide_reader.SlideError, match="too small to locate tissue"):
                slide_reader.read_tissue_mask(mask, wsi)


def test_a_socket_appearing_twice_logs_which_one_was_used(tmp_path):
    entries = task_entries(2)
    duplicate = entry("tissue-mask", relative="images/tissue-mask-again")
    root = materialise(tmp_path, entries + [duplicate])
    case = read_case(root)
    assert case.slides[0].mask.parent.name == "tissue-mask"
    assert any("'tissue-mask' appears more than once" in issue and "used the first ('images/tissue-mask')" in issue
               and "tissue-mask-again" in issue for issue in case.issues), case.issues


# ---------------------------------------------------------------------------------------------------------------
# 6. Links that resolve outside /input are refused like `..` paths.

def test_links_out_of_the_input_folder_are_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "slide.tif").write_bytes(b"\x00")
    (outside / "clinical.json").write_text(json.dumps({"age": 1}))
    (outside / "folder").mkdir()
    (outside / "folder" / "mask.tif").write_bytes(b"\x00")
    root = materialise(tmp_path / "case", task_entries(2))
    wsi_dir = root / RELATIVE["bladder-cancer-tissue-biopsy-whole-slide-image"]
    for file in wsi_dir.iterdir():
        file.unlink()
    (wsi_dir / "slide.tif").symlink_to(outside / "slide.tif")  # a file link out
    mask_dir = root / RELATIVE["tissue-mask"]
    for file in mask_dir.iterdir():
        file.unlink()
    mask_dir.rmdir()
    mask_dir.symlink_to(outside / "folder")  # a folder link out
    clinical = root / RELATIVE["chimera-clinical-data-of-bladder-cancer-patients"]
    clinical.unlink()
    clinical.symlink_to(outside / "clinical.json")  # a JSON link out
    case = read_case(root)
    assert case.task.id == 2
    assert all(s.wsi is None for s in case.slides) and all(s.mask is None for s in case.slides)
    assert case.clinical == {"age": 70}  # the inline value, never the file outside
    assert any("slide.tif links outside the input folder" in issue for issue in case.issues)
    assert sum("escapes the input folder" in issue for issue in case.issues) == 2
    # A link that stays inside the input folder is fine.
    (wsi_dir / "slide.tif").unlink()
    (root / "elsewhere.tif").write_bytes(b"\x00")
    (wsi_dir / "slide.tif").symlink_to(root / "elsewhere.tif")
    assert read_case(root).slides[0].wsi == wsi_dir / "slide.tif"
    # inputs.json itself linked out: not read, sockets rebuilt from the layout.
    (outside / "inputs.json").write_text(json.dumps(task_entries(3)))
    (root / "inputs.json").unlink()
    (root / "inputs.json").symlink_to(outside / "inputs.json")
    case = read_case(root)
    assert case.task.id == 2 and any("escapes the input folder" in issue for issue in case.issues)


# ---------------------------------------------------------------------------------------------------------------
# 7. Every DEGRADED line names what was read, its size, and the real cause.

def test_messages_name_the_cause_even_for_silent_exceptions(tmp_path, caplog):
    assert describe(MemoryError()) == "MemoryError: out of memory"
    assert describe(RecursionError()) == "RecursionError: nested too deeply"
    assert describe(ValueError("bad")) == "ValueError: bad"
    slide = tmp_path / "s.tif"
    slide.write_bytes(b"\x00" * 2_500_000)
    degraded = DegradedLog()

    def fail():
        raise MemoryError

    with caplog.at_level(logging.WARNING):
        assert attempt(degraded, "wsi", "predicting without slides", fail, reading=files_label([slide, None])) is None
    assert degraded.entries[0]["cause"] == "reading s.tif (2.5 MB): MemoryError: out of memory"
    assert "s.tif (2.5 MB)" in caplog.text
    many = files_label([slide] * 40)  # ten slides and their masks: the label is cut, never the cause
    attempt(degraded, "wsi", "predicting without slides", fail, reading=many)
    assert len(many) > 500 and degraded.entries[1]["cause"].endswith("...: MemoryError: out of memory")


def test_a_broken_bundle_json_is_blamed_on_bundle_json(tmp_path):
    folder = tmp_path / "nmibc-recurrence"
    folder.mkdir()
    (folder / "weights.safetensors").write_bytes(b"\x00" * 16)
    for text, expected in (("{not json", "cannot read .*bundle.json"), (deep(100_000), "RecursionError"),
                           (json.dumps([1]), "bundle.json: unsupported bundle format 'list'")):
        (folder / "bundle.json").write_text(text)
        with pytest.raises(BundleError, match=expected) as info:
            read_bundle_json(folder)
        assert "weights.safetensors" not in str(info.value)
    doc = bundle_doc(3, "months")
    for key in ("weights_sha256", "members", "task_id"):
        broken = {k: v for k, v in doc.items() if k != key}
        with pytest.raises(BundleError, match=f"bundle.json: field '{key}'"):
            check_bundle_doc(broken, folder / "bundle.json", TASKS[3])
