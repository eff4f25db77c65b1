"""One error style across every command (issue 22, item 6): a user mistake is exit 2 and one `error:` line naming
the file, key or flag, with no traceback; an unexpected error keeps its traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from fault_builders import classical_bundle

from chimera_surv.cli import Parser, UserError, require_columns, run_cli


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)


def assert_one_error_line(result: subprocess.CompletedProcess, *named: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for text in named:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def test_inference_missing_input(tmp_path):
    assert_one_error_line(run("inference.py", "--input", str(tmp_path / "typo"), "--output", str(tmp_path / "o")),
                          "--input", str(tmp_path / "typo"))


def test_train_missing_config(tmp_path):
    assert_one_error_line(run("-m", "train", str(tmp_path / "typo.yaml")), str(tmp_path / "typo.yaml"))


def test_predict_cohort_missing_bundle_and_missing_input(tmp_path):
    assert_one_error_line(run("-m", "chimera_surv.predict_cohort", str(tmp_path / "typo"), "x", "--out", "y.csv"),
                          "BUNDLE", str(tmp_path / "typo"))
    bundle = classical_bundle(tmp_path / "bundle")
    assert_one_error_line(run("-m", "chimera_surv.predict_cohort", str(bundle), str(tmp_path / "none.csv")),
                          "INPUT", str(tmp_path / "none.csv"))
    table = tmp_path / "cohort.csv"
    table.write_text("patient;age\np1;60\n")
    assert_one_error_line(run("-m", "chimera_surv.predict_cohort", str(bundle), str(table)),
                          str(table), "'case_id'", "--id-column", "patient")


def test_h5features_missing_config_and_folder(tmp_path):
    assert_one_error_line(run("-m", "train.h5features", "import", str(tmp_path / "typo.yaml"), str(tmp_path)),
                          "CONFIG", str(tmp_path / "typo.yaml"))
    config = tmp_path / "c.yaml"
    config.write_text("task: 3\n")
    assert_one_error_line(run("-m", "train.h5features", "import", str(config), str(tmp_path / "nofeatures")),
                          "FEATURES_DIR", str(tmp_path / "nofeatures"))


def test_h5features_has_trains_work_flag():
    result = run("-m", "train.h5features", "--help")
    assert result.returncode == 0 and "--work" in result.stdout


def test_encoder_check_missing_folder_and_missing_weights(tmp_path):
    assert_one_error_line(run("-m", "chimera_surv.check_encoders", "uni", "--model", str(tmp_path / "typo")),
                          "--model", str(tmp_path / "typo"))
    assert_one_error_line(run("-m", "chimera_surv.check_encoders", "uni", "--model", str(tmp_path)),
                          "uni", str(tmp_path / "encoders" / "uni"))
    assert_one_error_line(run("-m", "chimera_surv.check_encoders", "unicorn", "--model", str(tmp_path)),
                          "unknown encoder 'unicorn'")


def test_model_dir_check_missing_folder(tmp_path):
    assert_one_error_line(run("-m", "chimera_surv.model_dir", str(tmp_path / "typo")), "MODEL_DIR")


def test_a_bad_flag_is_one_line(capsys):
    parser = Parser(prog="demo")
    parser.add_argument("--n", type=int)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--n", "three"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: demo: argument --n: invalid int value: 'three' (see --help)"]


def test_run_cli_separates_user_errors_from_bugs(capsys, tmp_path):
    def mistake() -> int:
        raise UserError(f"{tmp_path}/x.csv: no column 'age'\n(second line folded)")

    assert run_cli(mistake) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}/x.csv: no column 'age' (second line folded)\n"
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback (exit 1 from the interpreter)
        run_cli(lambda: 1 // 0)


def test_require_columns_reads_the_header_only(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("case_id\ttime\n" + "x\t1\n" * 3)
    require_columns(table, ["case_id", "time"], "--id-column")
    with pytest.raises(UserError, match="no column 'event'"):
        require_columns(table, ["event"], "--event")
    Path(tmp_path / "latin.csv").write_bytes(b"id,\xe9v\xe9nement\n")
    require_columns(tmp_path / "latin.csv", ["case_id"], "--id-column")  # undecodable: the full reader decides
