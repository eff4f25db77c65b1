"""Training says what it treated as missing, per clinical feature (issue 22, item 7): the counts by cause on the
console, in train.log and in report.json."""

from __future__ import annotations

import json

from chimera_surv import synthetic
from chimera_surv.make_cases import write_training_cohort
from chimera_surv.readers.clinical import load_schema, parse_clinical
from train.__main__ import Run
from train.clinical_missing import line, summarise
from train.config import load_config


def test_counts_by_cause_and_the_treatment():
    schema = load_schema(3)
    raws = ([{"age": 60 + i, "sex": "male"} for i in range(5)]
            + [{"age": 150, "sex": "male"}] * 3  # a range too narrow for these values
            + [{"age": "NA", "sex": "female"}, {"age": "sixty", "sex": "female"}, {"sex": "female"}])
    records = [parse_clinical(r, schema) for r in raws] + [None]  # the last patient has no clinical file
    rows = {row["feature"]: row for row in summarise(records, schema)}
    age = rows["age"]
    assert (age["n"], age["usable"], age["out_of_range"], age["missing"], age["unparsable"], age["absent"]) == \
        (12, 5, 3, 1, 1, 2)
    assert line(age) == ("clinical 'age': 5/12 patients usable; 3 out of range [18.0, 110.0] years, 1 unparsable, "
                         "1 marked missing, 2 absent: imputed with the training median (whole cohort: 62 years) "
                         "plus a missing indicator")
    assert (rows["sex"]["usable"], rows["sex"]["absent"]) == (11, 1)
    assert line(rows["sex"]) == "clinical 'sex': 11/12 patients usable; 1 absent: encoded as the 'unknown/missing' category"


def test_training_prints_logs_and_reports_the_lines(tmp_path, capsys):
    options = synthetic.CohortOptions(with_images=False, genes=tuple(synthetic.gene_panel(10)))
    write_training_cohort(synthetic.make_cohort(3, 20, 1, options), tmp_path / "cohort", workers=1)
    changed = sorted((tmp_path / "cohort").rglob("*_CD.json"))[:7]
    for path in changed:  # 7 of 20 ages beyond the schema's range: they must not vanish silently
        doc = json.loads(path.read_text())
        doc["age"] = 150
        path.write_text(json.dumps(doc))
    (tmp_path / "config.yaml").write_text("task: 3\nmodalities: [clinical]\ncohort: {root: cohort}\n"
                                          "work_dir: work\nout: bundle\n")
    run = Run(load_config(tmp_path / "config.yaml"))
    rows = {row["feature"]: row for row in run.arrays().clinical_missing}
    assert (rows["age"]["n"], rows["age"]["out_of_range"]) == (20, 7)
    expected = line(rows["age"])
    assert expected.startswith("clinical 'age': 13/20 patients usable; 7 out of range [18.0, 110.0] years")
    assert expected in capsys.readouterr().out.splitlines()
    assert expected in (tmp_path / "work" / "train.log").read_text()
    # the report carries the same counts as a section of both pages (never a silent imputation)
    from train.report.render import _html_block, _markdown_block
    from train.report.sections import SECTIONS, clinical_missing

    summary = {"clinical_missing": run.arrays().clinical_missing}
    _title, blocks = clinical_missing(summary)
    table = blocks[-1]
    age_row = next(r for r in table.rows if r[0] == "age")
    assert age_row[1] == "13/20" and age_row[2] == "7" and age_row[-2] == "18–110 years"
    assert clinical_missing in SECTIONS  # so report.md and report.html both carry it
    assert "| age | 13/20 | 7 |" in "\n".join(_markdown_block(table))
    assert "<td>13/20</td>" in _html_block(table, tmp_path).replace(" ", "")
    assert clinical_missing({"clinical_missing": [dict(rows["sex"], absent=0, usable=20)]}) is None
