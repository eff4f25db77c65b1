"""The container cannot be built here (no Docker engine): check statically what the image must hold."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import dockerfile
import pytest
from conftest import ROOT

BIN = Path(sys.executable).parent


def instructions() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(ROOT / "Dockerfile")))


def test_hadolint_is_clean():
    result = subprocess.run([str(BIN / "hadolint"), "Dockerfile"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_scripts_pass_shellcheck():
    scripts = ["do_build.sh", "do_test.sh", "do_save.sh", ".ci/run"]
    result = subprocess.run([str(BIN / "shellcheck"), *scripts], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def base_image() -> tuple[dockerfile.Command, str]:
    """The FROM instruction and its image, with the BASE_IMAGE build ARG's default filled in."""
    commands = instructions()
    first = next(c for c in commands if c.cmd == "FROM")
    args = dict(c.value[0].split("=", 1) for c in commands[:commands.index(first)] if c.cmd == "ARG")
    return first, re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], first.value[0])


def test_base_image_is_pinned_for_the_platform():
    first, image = base_image()
    assert "--platform=linux/amd64" in first.flags
    name, _, tag = image.partition(":")
    assert name == "pytorch/pytorch" and re.match(r"\d+\.\d+\.\d+-cuda[\d.]+-cudnn\d+-runtime$", tag), image
    torch_pin = re.search(r"^torch==([\d.]+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE).group(1)
    assert tag.startswith(torch_pin + "-"), "base image torch must match requirements.txt"


def test_image_runs_offline_as_non_root_with_the_entrypoint():
    commands = instructions()
    env = {}
    for c in commands:
        if c.cmd == "ENV":
            env.update(dict(zip(c.value[::2], c.value[1::2])))
    assert env.get("HF_HUB_OFFLINE") == "1"
    users = [c.value[0] for c in commands if c.cmd == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    entry = [c for c in commands if c.cmd == "ENTRYPOINT"][-1].value
    assert entry[:2] == ("python", "inference.py")
    assert "/opt/ml/model" in entry


def test_image_holds_the_package_the_resources_and_the_entrypoint():
    copied = {Path(c.value[0]).name for c in instructions() if c.cmd == "COPY"}
    assert {"chimera_surv", "resources", "inference.py", "requirements.txt"} <= copied
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert not ignored & {"chimera_surv", "resources", "inference.py", "requirements.txt"}


def runtime_imports() -> set[str]:
    """Top-level modules imported anywhere in the package and the entrypoint (what the image must provide)."""
    names: set[str] = set()
    for path in [ROOT / "inference.py", *(ROOT / "chimera_surv").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"chimera_surv", "__future__"}


def test_every_runtime_import_is_pinned_in_requirements_txt():
    pinned = {re.split(r"[=<>\[ ]", line)[0].lower().replace("_", "-")
              for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    dists = packages_distributions()
    missing = {}
    for module in sorted(runtime_imports()):
        candidates = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not candidates & pinned:
            missing[module] = sorted(candidates)
    assert not missing, f"imported at runtime but not in requirements.txt: {missing}"
    assert "openslide-bin" in pinned  # openslide 4 reports the mpp of generic TIFFs (ecosystem.md §1a)


@pytest.mark.parametrize("flag", ["--network none", "/input:ro", "/opt/ml/model:ro", ":/tmp", "--gpus all"])
def test_local_test_script_mirrors_the_platform(flag):
    assert flag in (ROOT / "do_test.sh").read_text()


# --- platform fit (issue 12) ---
def test_base_image_cuda_runs_on_pre_580_drivers_and_the_deadline_is_set():
    tag = base_image()[1].partition(":")[2]
    cuda = re.search(r"-cuda(\d+)\.", tag).group(1)
    assert cuda == "12", "a CUDA 13 build needs driver >= 580; the T4/A10G hosts' driver is unknown"
    env = {}
    for c in instructions():
        if c.cmd == "ENV":
            env.update(dict(zip(c.value[::2], c.value[1::2])))
    assert float(env["CHIMERA_DEADLINE_S"]) > float(env["CHIMERA_DEADLINE_RESERVE_S"]) > 0


def test_local_test_script_makes_inputs_readable_but_never_hides_an_unreadable_model():
    script = (ROOT / "do_test.sh").read_text()
    assert 'chmod -R o+rX "$INPUT_ROOT"' in script and 'chmod -R o+rX "$MODEL_DIR"' not in script
    assert "is not readable by other users" in script  # checked instead (test/test_scripts.py runs it)
