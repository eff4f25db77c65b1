"""run_audit (train/'s entry) and the CLI write their JSON and figures; numbers agree with the core."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import REFERENCE

from chimera_surv.audit.cli import main
from chimera_surv.audit.report import run_audit


def _batch(n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"rna": torch.randn(n, 5, generator=g), "rna_present": torch.ones(n, dtype=torch.bool),
            "clinical": torch.randn(n, 3, generator=g), "clinical_present": torch.ones(n, dtype=torch.bool)}


def test_run_audit_writes_json_and_figures(tmp_path) -> None:
    from chimera_surv.models import build_network

    torch.manual_seed(0)
    net = build_network({"modalities": {"rna": {"dim": 5}, "clinical": {"dim": 3}},
                         "fusion": {"name": "concat_mlp", "hidden": [8], "dropout": 0.0}, "head": {"name": "cox"}})
    doc = run_audit(net, _batch(12, 1), _batch(30, 2), tmp_path, name="m0",
                    patient_ids=[f"p{i}" for i in range(12)])
    saved = json.loads((tmp_path / "audit_m0.json").read_text())
    assert set(saved["maskers"]) == {"mean", "shuffle"}
    for label in ("mean", "shuffle"):
        assert (tmp_path / f"audit_m0_{label}.png").stat().st_size > 10_000
        m = saved["maskers"][label]
        matrix = np.array(m["per_patient"]["matrix"])
        values = np.array(m["per_patient"]["coalition_values"])
        np.testing.assert_allclose(matrix.sum((1, 2)), values[:, -1] - values[:, 0], atol=1e-12)
        assert len(m["estimators"]["e5_patient_mean"]["per_patient_pct"]) == 12
        assert m["timing"]["rows"] == 4 * 12 * (1 if label == "mean" else 30)
    assert saved["maskers"]["shuffle"]["masker"]["k"] == 30  # k=50 > 30 background patients: all used
    assert doc["headline"]["interaction_pct"] == pytest.approx(
        saved["maskers"]["mean"]["estimators"]["orig_mean_abs"]["interaction_pct"])
    assert saved["maskers"]["mean"]["per_patient"]["patient_ids"][0] == "p0"
    assert doc["headline"]["all_m_dividend_pct"] == pytest.approx(
        saved["maskers"]["mean"]["harsanyi"]["all_m"]["pct"])
    assert doc["headline"]["all_m_coalition"] == "rna*clinical"


@pytest.mark.reference
def test_cli_glioma_writes_rescored_table(tmp_path, capsys) -> None:
    assert main(["glioma", "--reference", str(REFERENCE / "intershap-glioma"), "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "audit_glioma_reference.json").read_text())
    assert round(doc["gated"]["estimators"]["e5_patient_mean"]["interaction_pct"], 2) == 4.45
    assert "orig_mean_abs" in capsys.readouterr().out
