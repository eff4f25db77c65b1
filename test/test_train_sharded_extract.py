"""`torchrun -m train CONFIG --steps extract` with 2 CPU processes gives the same bags, bit for bit, as one process;
shards are balanced and deterministic, writes are atomic, done patients are skipped, failures land in a manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file

from chimera_surv import synthetic
from chimera_surv.make_cases import write_training_cohort
from train.extract import assign

ROOT = Path(__file__).resolve().parents[1]
RECIPE = {"encoder": "test-tiny", "weights": "seeded", "target_mpp": 2.0, "patch_size": 32, "min_tissue": 0.5,
          "max_patches": 64, "time_budget_s": None, "batch_size": 64}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shard-cohort")
    options = synthetic.CohortOptions(wsi_size=(1024, 768), genes=tuple(synthetic.gene_panel(20)))
    write_training_cohort(synthetic.make_cohort(2, 6, 0, options), root, workers=1)
    return root


def _config(cohort: Path, work: Path) -> Path:
    path = work.parent / f"{work.name}.yaml"
    path.write_text(yaml.safe_dump({"task": 2, "seed": 0, "threads": 1, "cohort": {"root": str(cohort)},
                                    "modalities": ["wsi", "clinical"], "recipe": RECIPE, "work_dir": str(work),
                                    "out": str(work / "bundle")}))
    return path


def _run(command: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _bags(work: Path) -> dict[str, dict[str, np.ndarray]]:
    return {p.stem: load_file(str(p)) for p in sorted((work / "bags").glob("*.safetensors"))}


def test_two_torchrun_ranks_give_the_single_process_bags_bit_for_bit(cohort: Path, tmp_path: Path) -> None:
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    _run([sys.executable, "-m", "train", str(_config(cohort, single)), "--steps", "extract"])
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "train",
          str(_config(cohort, sharded)), "--steps", "extract"])
    one, two = _bags(single), _bags(sharded)
    assert len(one) == 6 and sorted(one) == sorted(two)
    for case in one:
        assert one[case]["features"].tobytes() == two[case]["features"].tobytes()
        assert np.array_equal(one[case]["coords"], two[case]["coords"])
    manifests = [json.loads((sharded / "manifest" / f"extract-rank{r}.json").read_text()) for r in (0, 1)]
    assert sorted(manifests[0]["patients"] + manifests[1]["patients"]) == sorted(one)
    assert all(m["world"] == 2 and m["patients"] and m["failed"] == {} for m in manifests)
    assert not list(sharded.rglob("*.tmp"))  # atomic writes leave no temporary files


def test_assignment_is_balanced_by_slides_and_the_same_on_every_rank() -> None:
    from train.cohort import Patient

    patients = [Patient(case_id=f"c{k}", cohort="x", slides=[None] * (1 + k % 3)) for k in range(7)]
    shares = assign(patients, 3)
    assert shares == assign(list(reversed(patients)), 3)  # independent of the listing order
    loads = [sum(len(p.slides) for p in share) for share in shares]
    assert sorted(p.case_id for share in shares for p in share) == sorted(p.case_id for p in patients)
    assert max(loads) - min(loads) <= 1
