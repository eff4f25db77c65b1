"""Each requirements file covers what its part imports, pinned: requirements.txt the container (chimera_surv/ and
inference.py, what the image installs), requirements-train.txt adds train/, requirements-dev.txt tests and tools."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from conftest import ROOT


def pins(name: str) -> dict[str, str]:
    """{distribution: version} of a requirements file and the files it includes with `-r`."""
    out: dict[str, str] = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            out |= pins(line[3:].strip())
        elif line:
            match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([\w.]+)", line)
            assert match, f"{name}: not pinned with ==: {line}"
            out[match.group(1).lower().replace("_", "-")] = match.group(2)
    return out


def imports(*paths: Path) -> set[str]:
    names: set[str] = set()
    for path in paths:
        for source in [path] if path.is_file() else sorted(path.rglob("*.py")):
            for node in ast.walk(ast.parse(source.read_text())):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"chimera_surv", "train", "inference", "__future__"}


def unpinned(modules: set[str], pinned: dict[str, str]) -> dict[str, list[str]]:
    dists = packages_distributions()
    missing = {}
    for module in sorted(modules):
        candidates = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not candidates & set(pinned):
            missing[module] = sorted(candidates)
    return missing


def test_the_container_requirements_cover_chimera_surv_and_inference():
    missing = unpinned(imports(ROOT / "chimera_surv", ROOT / "inference.py"), pins("requirements.txt"))
    assert not missing, f"imported by the container's code but not in requirements.txt: {missing}"


def test_the_training_requirements_cover_train_and_only_add_to_the_container():
    train, container = pins("requirements-train.txt"), pins("requirements.txt")
    missing = unpinned(imports(ROOT / "train"), train)
    assert not missing, f"imported by train/ but not in requirements-train.txt: {missing}"
    assert {k: train[k] for k in container} == container  # the same pins, included with -r
    assert {"lifelines", "pydantic", "h5py", "pyarrow"} <= set(train)  # pyarrow: pandas' Parquet (train/table.py)
    assert not {"lifelines", "pydantic", "pyarrow"} & set(container)  # training-only: not in the image


def test_dev_requirements_include_training_and_pin_every_version_once():
    dev = pins("requirements-dev.txt")
    assert set(pins("requirements-train.txt")) <= set(dev)
    lines = [re.split(r"==", line.split("#")[0].strip())[0].lower()
             for name in ("requirements.txt", "requirements-train.txt", "requirements-dev.txt")
             for line in (ROOT / name).read_text().splitlines() if "==" in line]
    assert len(lines) == len(set(lines)), "a package is pinned in two files"
