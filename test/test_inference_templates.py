"""inference.py on case folders laid out by the organisers' own template generator (grand-challenge-forge).

The forge layout differs from ours: only the legacy `interface` key, UUID file names, stub .mha "slides" and
placeholder JSON values. Every interface of every task must still end with one finite number and exit 0.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from chimera_surv.tasks import TASKS

BIN = Path(sys.executable).parent


def image(slug: str, relative: str) -> dict:
    return {"slug": slug, "relative_path": relative, "kind": "Image", "super_kind": "Image"}


def value(slug: str, relative: str) -> dict:
    return {"slug": slug, "relative_path": relative, "kind": "Anything", "super_kind": "Value"}


def task1_interfaces() -> list[dict]:
    base = [image("axial-t2-prostate-mri", "images/axial-t2-prostate-mri"),
            image("axial-adc-prostate-mri", "images/axial-adc-prostate-mri"),
            image("transverse-hbv-prostate-mri", "images/transverse-hbv-prostate-mri"),
            image("prostate-tissue-mask-for-axial-t2-prostate-mri",
                  "images/prostate-tissue-mask-for-axial-t2-prostate-mri"),
            image("prostatectomy-tissue-whole-slide-image", "images/prostatectomy-wsi"),
            image("prostatectomy-tissue-mask", "images/prostatectomy-tissue-mask"),
            value("chimera-clinical-data-of-prostate-cancer-patients",
                  "chimera-clinical-data-of-prostate-cancer-patients.json")]
    interfaces = []
    for n in range(1, 11):
        extra = []
        for k in range(1, n):
            extra += [image(f"prostatectomy-tissue-whole-slide-image-{k}", f"images/prostatectomy-wsi-z-{k}"),
                      image(f"prostatectomy-tissue-whole-slide-image-{k}-2", f"images/prostatectomy-tissue-mask-wsi-{k}")]
        interfaces.append({"inputs": base + extra, "outputs": [
            value("time-to-biochemical-recurrence-for-prostate-cancer",
                  "time-to-biochemical-recurrence-for-prostate-cancer-months.json")]})
    return interfaces


BLADDER = [image("bladder-cancer-tissue-biopsy-whole-slide-image", "images/bladder-cancer-tissue-biopsy-wsi"),
           image("tissue-mask", "images/tissue-mask")]
CONTEXTS = {
    1: task1_interfaces(),
    2: [{"inputs": BLADDER + [value("chimera-clinical-data-of-bladder-cancer-patients",
                                    "chimera-clinical-data-of-bladder-cancer-patients.json")],
         "outputs": [value("brs-binary-classification", "brs-probability.json")]}],
    3: [{"inputs": BLADDER + [value("bulk-rna-seq-bladder-cancer", "bulk-rna-seq-bladder-cancer.json"),
                              value("chimera-clinical-data-of-bladder-cancer-recurrence",
                                    "chimera-clinical-data-of-bladder-cancer-recurrence-patients.json")],
         "outputs": [value("likelihood-of-bladder-cancer-recurrence",
                           "likelihood-of-bladder-cancer-recurrence.json")]}],
}


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[int, list[Path]]:
    out = tmp_path_factory.mktemp("forge")
    cases: dict[int, list[Path]] = {}
    for task_id, interfaces in CONTEXTS.items():
        context = {"algorithm": {"title": f"t{task_id}", "slug": f"t{task_id}", "url": "https://example.org",
                                 "algorithm_interfaces": interfaces}}
        path = out / f"context{task_id}.json"
        path.write_text(json.dumps(context))
        subprocess.run([str(BIN / "grand-challenge-forge"), "algorithm", "-o", str(out / f"t{task_id}"),
                        str(path)], check=True, capture_output=True)
        cases[task_id] = sorted((out / f"t{task_id}").glob("*/test/input/interf*"))
    return cases


def run_inference(case: Path, output: Path, model: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "inference.py"), "--input", str(case), "--output",
                           str(output), "--model", str(model)], capture_output=True, text=True, timeout=300,
                          check=False)


def test_forge_generates_every_interface(templates):
    assert [len(templates[t]) for t in (1, 2, 3)] == [10, 1, 1]


@pytest.mark.parametrize("task_id,interface", [(1, 0), (1, 2), (1, 9), (2, 0), (3, 0)])
def test_template_cases_give_one_finite_number(templates, tmp_path, task_id, interface):
    case = templates[task_id][interface]
    result = run_inference(case, tmp_path / "out", tmp_path / "no-model")
    assert result.returncode == 0, result.stderr[-2000:]
    written = list((tmp_path / "out").iterdir())
    assert [p.name for p in written] == [TASKS[task_id].output_file]
    number = json.loads(written[0].read_text())
    assert isinstance(number, float) and math.isfinite(number)
    assert "DEGRADED" in result.stdout  # placeholder clinical values and no bundle are named
    assert "RESULT" in result.stdout


def test_unwritable_output_exits_non_zero_with_a_clear_message(templates, tmp_path):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("")
    result = run_inference(templates[3][0], blocker / "out", tmp_path / "no-model")
    assert result.returncode != 0
    assert "not writable" in result.stderr


def test_an_unreadable_input_tree_still_ends_with_numbers(tmp_path, monkeypatch):
    """An exception no reader anticipated (here: listing the input fails) costs the prediction, not the job."""
    import inference

    def unreadable(_input_dir):
        raise PermissionError("Permission denied: '/input/images'")

    monkeypatch.setattr("chimera_surv.predict.read_case", unreadable)
    assert inference.main(["--input", str(tmp_path), "--output", str(tmp_path / "out"), "--model", str(tmp_path)]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(t.output_file for t in TASKS.values())
    assert all(math.isfinite(json.loads((tmp_path / "out" / name).read_text())) for name in written)
