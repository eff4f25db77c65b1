"""Config values are not coerced and keys are not given twice (issue 20, class 3): `epochs: yes` used to load as
1, and a second `train:` block silently replaced the first."""

from __future__ import annotations

from pathlib import Path

import pytest

from train.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "train" / "configs"


def _load(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config(path)


@pytest.mark.parametrize("text, key", [
    ("train:\n  epochs: yes\n", "train.epochs"),
    ("train:\n  epochs: '5'\n", "train.epochs"),
    ("train:\n  epochs: 5.0\n", "train.epochs"),
    ("train:\n  lr: fast\n", "train.lr"),
    ("train:\n  lr: '0.1'\n", "train.lr"),
    ("preprocess:\n  rna:\n    zscore: 1\n", "preprocess.rna.zscore"),
    ("protocol:\n  cohort_holdout: 'no'\n", "protocol.cohort_holdout"),
    ("seed: true\n", "seed"),
    ("threads: 2.5\n", "threads"),
    ("work_dir: 12\n", "work_dir"),
])
def test_a_value_of_the_wrong_type_is_refused_not_coerced(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key) as info:
        _load(tmp_path, text)
    assert "config.yaml" in str(info.value) and "\n" not in str(info.value)


def test_meaningful_numbers_still_load(tmp_path):
    config = _load(tmp_path, "train:\n  epochs: 7\n  lr: 1e-3\n  weight_decay: 0\n  grad_clip: 2\n"
                             "  modality_dropout: {wsi: 0.25, rna: 0}\nreport:\n  horizons: [12, 24.5]\n")
    train = config["train"]
    assert train["epochs"] == 7 and train["lr"] == pytest.approx(1e-3) and isinstance(train["lr"], float)
    assert train["weight_decay"] == 0.0 and train["grad_clip"] == 2.0 and train["modality_dropout"]["rna"] == 0.0
    assert config["report"]["horizons"] == [12.0, 24.5]


def test_the_same_dict_loads_from_python_and_reloads(tmp_path):
    config = load_config({"task": 3, "train": {"epochs": 3, "lr": 0.01}})
    again = load_config({k: v for k, v in config.items() if k != "_base"})
    assert again["train"] == config["train"]
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config({"train": {"epochs": True}})


@pytest.mark.parametrize("text, line, key, first", [
    ("task: 3\ntrain:\n  epochs: 80\nseed: 1\ntrain:\n  lr: 0.01\n", 5, "train", 2),
    ("train:\n  epochs: 80\n  batch_size: 8\n  epochs: 2\n", 4, "epochs", 2),
    ("cohort:\n  labels:\n    csv: a.csv\n    csv: b.csv\n", 4, "csv", 3),
])
def test_a_key_given_twice_is_refused_with_its_line(tmp_path, text, line, key, first):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    message = str(info.value)
    assert f"config.yaml:{line}:" in message and f"duplicate key '{key}'" in message
    assert f"first at line {first}" in message


def test_the_shipped_configs_load():
    for path in sorted(CONFIGS.glob("*.yaml")):
        assert load_config(path)["train"]["epochs"] >= 1, path


def test_yaml_merge_keys_still_work_and_may_be_overridden(tmp_path):
    config = _load(tmp_path, "train: &base\n  epochs: 3\n  lr: 0.1\ncompare:\n  small:\n    <<: *base\n"
                             "    epochs: 4\n")
    assert config["train"]["epochs"] == 3 and config["compare"]["small"] == {"epochs": 4, "lr": 0.1}


def test_an_unhashable_key_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="config.yaml"):
        _load(tmp_path, "? [1, 2]\n: 3\n")
