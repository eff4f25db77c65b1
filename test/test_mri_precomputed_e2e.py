"""A Task 1 case given a precomputed MRI vector (`/input/features/mri.json`) predicts, through inference.py, what the
same case predicts from its MRI volumes, and never reads the volumes (issue 21)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import inference
from chimera_surv.tasks import TASKS

TASK = TASKS[1]


@pytest.fixture(scope="module")
def bundle_and_case(tmp_path_factory) -> tuple[Path, Path]:
    from chimera_surv import synthetic
    from chimera_surv.make_cases import write_gc_cases
    from train import demo

    root = tmp_path_factory.mktemp("mri-e2e")
    model = root / "model"
    demo.train_task(1, root / "work", model, 36, seed=0, steps=("extract", "fit", "export"),
                    overrides={"model": {"family": "ridge"}, "modalities": ["mri", "clinical"]})
    case = Path(write_gc_cases(synthetic.make_cohort(1, 1, 11, demo._options(1, "test")), root / "case", seed=11)[0])
    return model, case


def _predict(case: Path, model: Path, out: Path, caplog) -> tuple[float, dict]:
    caplog.clear()
    with caplog.at_level("INFO"):
        assert inference.main(["--input", str(case), "--output", str(out), "--model", str(model)]) == 0
    result = json.loads(caplog.text.split("RESULT", 1)[1].splitlines()[0])
    return json.loads((out / TASK.output_file).read_text()), result


def test_precomputed_mri_vector_gives_the_volume_route_value(bundle_and_case, tmp_path, caplog, monkeypatch):
    import chimera_surv.mri_features
    from chimera_surv.gc import read_case

    model, case = bundle_and_case
    from_volumes, result = _predict(case, model, tmp_path / "volumes", caplog)
    assert "mri" in result["provenance"] and '"stage": "mri"' not in caplog.text
    vector, names = chimera_surv.mri_features.mri_features(read_case(case).mri, "measurements")
    (case / "features").mkdir(exist_ok=True)
    (case / "features" / "mri.json").write_text(json.dumps({"kind": "measurements", "names": names,
                                                            "values": [float(v) for v in vector]}))
    monkeypatch.setattr(chimera_surv.mri_features, "mri_features",
                        lambda *a, **k: pytest.fail("the MRI volumes were read although a vector was given"))
    from_vector, result = _predict(case, model, tmp_path / "vector", caplog)
    assert from_vector == pytest.approx(from_volumes, rel=1e-6) and "mri" in result["provenance"]
    assert '"stage": "mri"' not in caplog.text
    (case / "features" / "mri.json").write_text(json.dumps({"kind": "measurements", "names": names[::-1],
                                                            "values": [float(v) for v in vector]}))
    _, result = _predict(case, model, tmp_path / "mismatch", caplog)
    assert "mri" not in result["provenance"]
    assert any("mri.json: names:" in line for line in caplog.text.splitlines() if "DEGRADED" in line)
