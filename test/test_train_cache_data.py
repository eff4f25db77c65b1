"""The results cache is keyed on the data as well as the config: one changed label recomputes the results and the
rerun says in one line what changed; an unchanged rerun reuses everything and says nothing."""

from __future__ import annotations

import json

from chimera_surv import synthetic
from chimera_surv.make_cases import write_training_cohort
from train.__main__ import main

STEPS = ["--steps", "cv", "export"]


def _results(tmp_path) -> tuple[str, list[float]]:
    """The bundle's run hash and the out-of-fold risks of every CV fold, in fold order."""
    bundle = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    folds = [json.loads(p.read_text()) for p in sorted((tmp_path / "work" / "cv" / "model").glob("r*.json"))]
    return bundle["meta"]["config_hash"], [r for fold in folds for r in fold["risk"]]


def test_a_changed_label_recomputes_the_results_and_says_what_changed(tmp_path, capsys):
    options = synthetic.CohortOptions(with_images=False, with_rna=False)
    write_training_cohort(synthetic.make_cohort(3, 60, 4, options), tmp_path / "cohort", workers=1)
    config = tmp_path / "config.yaml"
    config.write_text("task: 3\nmodalities: [clinical]\ncohort: {root: cohort}\nwork_dir: work\nout: bundle\n"
                      "protocol: {folds: 3, repeats: 1, inner_val: 0.25, bootstrap: 10, members: 2}\n"
                      "model: {family: ridge}\n")
    assert main([str(config), *STEPS]) == 0
    first_hash, first_values = _results(tmp_path)
    assert first_values

    assert main([str(config), *STEPS]) == 0  # same data: reused, nothing to say
    assert "data changed" not in capsys.readouterr().out
    assert _results(tmp_path) == (first_hash, first_values)

    # One patient's outcome changes: an early event instead of long event-free follow-up.
    path = min((tmp_path / "cohort" / "data").glob("*/*_CD.json"))
    clinical = json.loads(path.read_text())
    clinical["progression"], clinical["Time_to_prog_or_FUend"] = 1 - int(clinical["progression"]), 2
    path.write_text(json.dumps(clinical))
    assert main([str(config), *STEPS]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("data changed")]
    assert len(lines) == 1 and f"labels of 1 patient(s) ({path.parent.name})" in lines[0], lines
    second_hash, second_values = _results(tmp_path)
    assert second_hash != first_hash
    assert second_values != first_values  # the CV was recomputed on the new label, not reused


def test_a_changed_slide_file_marks_only_that_patients_features_stale(tmp_path):
    from chimera_surv.case import SlideInput
    from train.cohort import Patient
    from train.fingerprint import DataFingerprint

    slides = {}
    for case in ("A", "B"):
        slides[case] = tmp_path / f"{case}.tif"
        slides[case].write_bytes(b"x" * 100)
    patients = [Patient(case, "all", slides=[SlideInput(0, slides[case], None)], time=10.0, event=0)
                for case in ("A", "B")]
    before = DataFingerprint.of(patients, [])
    slides["B"].write_bytes(b"x" * 101)  # re-scanned slide
    after = DataFingerprint.of(patients, [])
    assert after.changed_images(before) == ["B"]
    assert after.changes(before) == ["images of 1 patient(s) (B)"]
    assert after.run_hash("c") != before.run_hash("c") and before.run_hash("c") == before.run_hash("c")
    assert DataFingerprint.from_dict(after.to_dict()) == after
