"""The typed training config and the user errors of both command lines: a misspelt key or a wrong type names its
key path, every shipped config loads, the docs list every key, and a user error is one line and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import inference
from train.__main__ import main as train_main
from train.config import ConfigError, default_keys, load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("raw, message", [
    ({"train": {"epoch": 3}}, "train.epoch: unknown key (did you mean 'epochs'?)"),
    ({"protocl": {"folds": 3}}, "protocl: unknown key (did you mean 'protocol'?)"),
    ({"cohort": {"labels": {"csvv": "x.csv"}}}, "cohort.labels.csvv: unknown key (did you mean 'csv'?)"),
    ({"preprocess": {"rna": {"top_kk": 5}}}, "preprocess.rna.top_kk: unknown key (did you mean 'top_k'?)"),
    ({"recipe": {"patch_sise": 224}}, "recipe.patch_sise: unknown key (did you mean 'patch_size'?)"),
    ({"train": {"epochs": "many"}}, "train.epochs: Input should be a valid integer"),
    ({"recipe": {"target_mpp": "fine"}}, "recipe.target_mpp: Input should be a valid number"),
    ({"protocol": {"folds": 1}}, "protocol.folds: Input should be greater than or equal to 2"),
    ({"task": 4}, "task: Input should be 1, 2, 3, 'survival' or 'binary'"),
    ({"modalities": ["wsi", "dna"]}, "modalities.1: Input should be 'wsi', 'mri', 'clinical', 'rna' or 'slide_embedding'"),
])
def test_a_bad_key_or_type_names_its_path(raw, message):
    with pytest.raises(ConfigError) as error:
        load_config(raw)
    assert message in str(error.value)


def test_shipped_configs_load_and_free_form_sections_keep_their_order():
    for path in sorted((ROOT / "train" / "configs").glob("*.yaml")):
        config = load_config(path)
        assert config["_base"] == str(path.parent) and config["train"]["epochs"] >= 1
    config = load_config(ROOT / "train" / "configs" / "task3.yaml")
    assert config["genes"] == "from_cohort"  # nothing outside the repository
    assert config["model"] == "auto"
    assert list(config["compare"]) == ["deep", "clinical_only", "abmil_concat", "pg_bilinear", "pg_res",
                                       "modalsurv_xattn"]
    assert list(config["compare"]["deep"]["encoders"]) == ["wsi", "clinical", "rna"]


def test_docs_list_every_key():
    text = (ROOT / "docs" / "training.md").read_text()
    missing = [key for key in default_keys() if f"`{key}`" not in text]
    assert missing == []


def test_python_m_train_user_errors_are_one_line(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("task: 3\ntrain: {epochss: 4}\n")
    assert train_main([str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {config}: train.epochss: unknown key (did you mean 'epochs'?)"]
    assert train_main([str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"error: config file {tmp_path / 'missing.yaml'} does not exist"
    config.write_text(f"task: 3\ncohort: {{root: {tmp_path / 'nowhere'}}}\nwork_dir: {tmp_path / 'work'}\n")
    assert train_main([str(config)]) == 2
    assert capsys.readouterr().err.strip() == f"error: cohort root {tmp_path / 'nowhere'} does not exist"
    config.write_text("task: [3\n")
    assert train_main([str(config)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {config}: not valid YAML")


def test_the_command_line_prints_one_line_and_no_traceback(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("task: 3\ntrain: {epoch: 3}\n")
    result = subprocess.run([sys.executable, "-m", "train", str(config)], capture_output=True, text=True,
                            cwd=ROOT, timeout=120, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {config}: train.epoch: unknown key (did you mean 'epochs'?)"


def test_inference_with_a_missing_input_folder_exits_non_zero(tmp_path, capsys):
    assert inference.main(["--input", str(tmp_path / "typo"), "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --input: {tmp_path / 'typo'} does not exist or is "
                                               "not a folder")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
