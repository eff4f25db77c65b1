"""Every step of `python -m train CONFIG` under the default model (`model: auto`) on a tiny cohort, audit included:
exit 0, a bundle, a report, and the InterSHAP audit of classical members says in one line that it does not apply."""

from __future__ import annotations

import json

from chimera_surv import synthetic
from chimera_surv.bundle import load_bundle
from chimera_surv.make_cases import write_training_cohort
from train.__main__ import main


def test_all_steps_with_the_default_model_exit_0(tmp_path, capsys):
    options = synthetic.CohortOptions(with_images=False, genes=tuple(synthetic.gene_panel(30)))
    write_training_cohort(synthetic.make_cohort(3, 40, 1, options), tmp_path / "cohort", workers=1)
    (tmp_path / "config.yaml").write_text(  # no `model:` key: the default
        "task: 3\nmodalities: [clinical, rna]\ncohort: {root: cohort}\nwork_dir: work\nout: bundle\n"
        "protocol: {folds: 3, repeats: 1, inner_val: 0.25, bootstrap: 10, members: 2}\n")
    assert main([str(tmp_path / "config.yaml")]) == 0
    out = capsys.readouterr().out
    assert all(f"[{step}]" in out for step in ("extract", "fit", "cv", "export", "report", "audit"))
    audit_lines = [line for line in out.splitlines() if line.startswith("audit: not applicable:")]
    assert len(audit_lines) == 1 and "classical" in audit_lines[0]
    assert load_bundle(tmp_path / "bundle") is not None
    report = json.loads((tmp_path / "work" / "report" / "report.json").read_text())
    assert "intershap_audit" not in report  # nothing half-attached
    assert "skipped" in json.loads((tmp_path / "work" / "report" / "audit" / "summary.json").read_text())
    # A rerun of the audit alone reuses the fitted members and exits 0 again.
    assert main(["audit", str(tmp_path / "config.yaml")]) == 0
