"""The submission scripts without Docker: bundles readable by any user, do_save.sh's tarball and refusals,
do_test.sh's output check, do_build.sh without docker (issue 22, item 5)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import ROOT
from fault_builders import classical_bundle

# What the scripts call; `docker` is deliberately absent from the PATH the tests give them.
TOOLS = ("bash", "env", "tar", "gzip", "sed", "date", "mkdir", "mv", "dirname", "grep", "head", "tail", "cat",
         "find", "basename", "chmod", "rm", "python3", "printf")


@pytest.fixture
def no_docker_path(tmp_path: Path) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:  # python3: the real interpreter (a pyenv shim would need pyenv on the PATH)
        found = str(Path(sys.executable).resolve()) if tool == "python3" else shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    assert not (bin_dir / "docker").exists()
    return str(bin_dir)


def run_script(script: str, path: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {"PATH": path, "PYTHON": sys.executable, "HOME": os.environ.get("HOME", "/tmp"), **env}
    return subprocess.run([str(ROOT / script), *args], env=full_env, capture_output=True, text=True, timeout=300,
                          check=False)


def umask_bundle(out: Path, mask: int = 0o077) -> Path:
    old = os.umask(mask)
    try:
        return classical_bundle(out)
    finally:
        os.umask(old)


def set_encoder(bundle: Path, name: str) -> None:
    doc = json.loads((bundle / "bundle.json").read_text())
    doc["recipe"]["encoder"] = name
    (bundle / "bundle.json").write_text(json.dumps(doc))


def test_save_bundle_is_readable_by_any_user_whatever_the_umask(tmp_path):
    bundle = umask_bundle(tmp_path / "model" / "bladder-brs")
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o755
    for name in ("bundle.json", "weights.safetensors"):
        assert stat.S_IMODE((bundle / name).stat().st_mode) == 0o644, name
    assert not [p.name for p in bundle.iterdir() if p.name.startswith(".")]  # no temp file left behind


def real_model(tmp_path: Path) -> Path:
    """A model folder as training leaves it under umask 077: one bundle whose encoder (uni) has its weights."""
    model = tmp_path / "model"
    set_encoder(umask_bundle(model / "bladder-brs"), "uni")
    weights = model / "encoders" / "uni"
    weights.mkdir(parents=True, mode=0o700)
    (weights / "model.safetensors").write_bytes(b"stand-in: only presence is checked when packing")
    (weights / "model.safetensors").chmod(0o600)
    (model / "bladder-brs" / ".bundle.json.tmp123").write_text("an interrupted write")
    return model


def test_do_save_writes_a_normalised_model_tarball_without_docker(tmp_path, no_docker_path):
    model = real_model(tmp_path)
    out = tmp_path / "out"
    first = run_script("do_save.sh", no_docker_path, MODEL_DIR=str(model), OUT_DIR=str(out), STAMP="a")
    assert first.returncode == 0, first.stderr
    assert "image: not saved: docker is not installed" in first.stdout
    tarball = out / "model_a.tar.gz"
    with tarfile.open(tarball) as archive:
        members = archive.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert {"./bladder-brs/bundle.json", "./bladder-brs/weights.safetensors",
            "./encoders/uni/model.safetensors"} <= set(names)
    assert not [n for n in names if Path(n).name.startswith(".") and n != "."]
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0), m.name
        assert m.mode == (0o755 if m.isdir() else 0o644), (m.name, oct(m.mode))
    again = run_script("do_save.sh", no_docker_path, MODEL_DIR=str(model), OUT_DIR=str(out), STAMP="b")
    assert again.returncode == 0, again.stderr
    assert tarball.read_bytes() == (out / "model_b.tar.gz").read_bytes()  # deterministic


def test_do_save_refuses_a_demo_bundle_unless_forced(tmp_path, no_docker_path):
    model = tmp_path / "model"
    bundle = umask_bundle(model / "nmibc-recurrence")  # the fault builder's bundle uses the seeded test-tiny encoder
    out = tmp_path / "out"
    refused = run_script("do_save.sh", no_docker_path, MODEL_DIR=str(model), OUT_DIR=str(out), STAMP="x")
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(bundle / "bundle.json") in lines[0] and "demo bundle" in lines[0] and "test-tiny" in lines[0]
    assert not out.exists() or not list(out.glob("*.tar.gz"))
    forced = run_script("do_save.sh", no_docker_path, "--force", MODEL_DIR=str(model), OUT_DIR=str(out), STAMP="x")
    assert forced.returncode == 0, forced.stderr
    assert "warning: " in forced.stderr and (out / "model_x.tar.gz").is_file()


def test_do_save_refuses_missing_encoder_weights(tmp_path, no_docker_path):
    model = real_model(tmp_path)
    shutil.rmtree(model / "encoders")
    refused = run_script("do_save.sh", no_docker_path, MODEL_DIR=str(model), OUT_DIR=str(tmp_path / "out"))
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "bladder-brs" in lines[0] and "'uni'" in lines[0] and "weights are missing" in lines[0]
    assert str(model / "encoders" / "uni" / "model.safetensors") in lines[0]


def test_do_save_refuses_a_model_folder_without_bundles(tmp_path, no_docker_path):
    (tmp_path / "model").mkdir()
    result = run_script("do_save.sh", no_docker_path, MODEL_DIR=str(tmp_path / "model"), OUT_DIR=str(tmp_path))
    assert result.returncode == 2 and "no bundle" in result.stderr
    missing = run_script("do_save.sh", no_docker_path, MODEL_DIR=str(tmp_path / "typo"), OUT_DIR=str(tmp_path))
    assert missing.returncode == 2 and missing.stderr.startswith("error: MODEL_DIR:")


def test_do_test_fails_a_case_that_wrote_no_output(tmp_path, no_docker_path):
    inputs, outputs = tmp_path / "input", tmp_path / "output"
    for name in ("case-a", "case-b", "case-c"):
        (inputs / name).mkdir(parents=True)
        (outputs / name).mkdir(parents=True)
    (outputs / "case-a" / "brs-probability.json").write_text("0.25")
    (outputs / "case-c" / "brs-probability.json").write_text("NaN")
    env = {"INPUT_ROOT": str(inputs), "OUTPUT_ROOT": str(outputs)}
    result = run_script("do_test.sh", no_docker_path, "--check-outputs", **env)
    assert result.returncode == 1
    assert "ok: case-a/brs-probability.json = 0.25" in result.stdout
    assert "FAILED: case-b wrote no output JSON" in result.stdout
    assert "FAILED: case-c/brs-probability.json is not one finite number" in result.stdout
    (outputs / "case-b" / "brs-probability.json").write_text("0.5")
    (outputs / "case-c" / "brs-probability.json").write_text("0.75")
    assert run_script("do_test.sh", no_docker_path, "--check-outputs", **env).returncode == 0


def test_do_test_does_not_chmod_around_an_unreadable_model(tmp_path, no_docker_path):
    model = tmp_path / "model"
    (tmp_path / "input" / "case-a").mkdir(parents=True)
    (model / "b").mkdir(parents=True)
    (model / "b" / "bundle.json").write_text("{}")
    (model / "b" / "bundle.json").chmod(0o600)
    result = run_script("do_test.sh", no_docker_path, INPUT_ROOT=str(tmp_path / "input"), MODEL_DIR=str(model))
    assert result.returncode == 2
    assert "bundle.json is not readable by other users" in result.stderr
    assert stat.S_IMODE((model / "b" / "bundle.json").stat().st_mode) == 0o600  # left as it was


def test_do_build_says_in_one_line_that_docker_is_missing(no_docker_path):
    result = run_script("do_build.sh", no_docker_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        ("error: do_build.sh: docker is not installed here; the image cannot be built "
         "(./do_save.sh still writes the model tarball)")]


def fake_docker(bin_dir: Path) -> None:
    """A `docker` whose daemon answers but whose registry does not know the base image."""
    script = bin_dir / "docker"
    script.write_text("#!/usr/bin/env bash\ncase \"$1\" in\n  info) exit 0 ;;\n  image) exit 1 ;;\n"
                      "  pull) echo 'Pulling from pytorch/pytorch'; "
                      "echo 'Error response from daemon: manifest unknown' >&2; exit 1 ;;\n"
                      "  *) echo \"unexpected docker $*\" >&2; exit 3 ;;\nesac\n")
    script.chmod(0o755)


def test_do_build_says_in_one_line_that_the_base_cannot_be_pulled(tmp_path, no_docker_path):
    fake_docker(Path(no_docker_path))
    result = run_script("do_build.sh", no_docker_path, BASE_IMAGE="example/base:0.0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        ("error: do_build.sh: the base image example/base:0.0 cannot be pulled (Error response from daemon: manifest "
         "unknown); set BASE_IMAGE to another (docs/submission.md, step 4)")]
    default = run_script("do_build.sh", no_docker_path)  # the Dockerfile's ARG default is the one tried
    assert "the base image pytorch/pytorch:2.14.1-cuda12.6-cudnn9-runtime cannot be pulled" in default.stderr


def test_do_save_writes_the_model_tarball_before_the_image_build_fails(tmp_path, no_docker_path):
    fake_docker(Path(no_docker_path))
    out = tmp_path / "out"
    result = run_script("do_save.sh", no_docker_path, MODEL_DIR=str(real_model(tmp_path)), OUT_DIR=str(out),
                        STAMP="s")
    assert result.returncode == 2 and "cannot be pulled" in result.stderr
    assert (out / "model_s.tar.gz").is_file() and not list(out.glob("chimera-surv_*"))
