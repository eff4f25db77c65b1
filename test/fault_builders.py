"""Small, valid model files and tables to break on purpose (test/test_model_file_faults.py, test_fault_properties.py).

A classical bundle (Task 3, months): a linear part on clinical data and a one-split tree on the pooled slide bag,
so both predictor kinds, a PCA block and the calibration are exercised. `rewrite` edits a saved bundle's arrays or
JSON and re-records the checksum, as a careless (or hostile) tool would: the load-time validation must catch it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from chimera_surv.bundle import BUNDLE_JSON, WEIGHTS_FILE
from chimera_surv.bundle_save import MemberSpec, save_bundle
from chimera_surv.classical import ClassicalModel, DesignBlock, LinearPredictor, Part, TreeEnsemblePredictor
from chimera_surv.encoders import get_spec
from chimera_surv.features import FeatureRecipe
from chimera_surv.preprocess import ClinicalEncoder, RNANormaliser
from chimera_surv.readers.clinical import load_schema, parse_clinical
from chimera_surv.survival.calibration import CALIBRATIONS

WSI_DIM = get_spec("test-tiny").dim
POOLS = ["mean", "max"]
GENES = [f"G{i}" for i in range(12)]


def clinical_values(rng: np.random.Generator) -> dict[str, Any]:
    return {"age": float(rng.integers(50, 85)), "sex": str(rng.choice(["Male", "Female"])),
            "stage": str(rng.choice(["TaHG", "T1HG"])), "BRS": str(rng.choice(["BRS1", "BRS2", "BRS3"])),
            "no_instillations": float(rng.integers(0, 30))}


def tree_arrays() -> dict[str, np.ndarray]:
    """Two trees over 2 features: tree 0 splits twice (5 nodes), tree 1 is a single split (3 nodes)."""
    return {"left": np.array([1, 3, -1, -1, -1, 6, -1, -1]), "right": np.array([2, 4, -1, -1, -1, 7, -1, -1]),
            "feature": np.array([0, 1, -2, -2, -2, 1, -2, -2]),
            "threshold": np.array([0.0, 0.5, -2.0, -2.0, -2.0, -0.3, -2.0, -2.0]),
            "value": np.array([0.0, 0.0, 0.4, -0.7, 0.9, 0.0, 0.2, -0.2]), "roots": np.array([0, 5])}


def _fitted(rng: np.random.Generator) -> tuple[Any, Any, Any]:
    schema = load_schema(3)
    records = [parse_clinical(clinical_values(rng), schema) for _ in range(20)]
    rna = RNANormaliser(log1p=True, top_k=6).fit(np.abs(rng.normal(size=(20, len(GENES)))).astype(np.float32) * 10)
    return schema, ClinicalEncoder().fit(records, schema), rna


def _save(out: Path, specs: list[MemberSpec], schema: Any, modalities: list[str], rng: np.random.Generator,
          seed: int) -> Path:
    calibration = CALIBRATIONS.build({"name": "km_quantile"}).fit(rng.normal(size=20), rng.uniform(5, 100, 20),
                                                                  rng.integers(0, 2, 20))
    return save_bundle(out, task_id=3, modalities=modalities, members=specs, calibration=calibration.to_dict(),
                       output_kind="months", recipe=FeatureRecipe(encoder="test-tiny", weights="seeded").to_dict(),
                       genes=GENES if "rna" in modalities else None, clinical_schema=schema.to_dict(),
                       meta={"seed": seed})


def network_bundle(out: Path, seed: int = 0) -> Path:
    """A valid network bundle (one seeded ABMIL + MLP member on slides, clinical data and RNA) at `out`."""
    import torch

    from chimera_surv.models import build_network

    rng = np.random.default_rng(seed)
    schema, encoder, rna = _fitted(rng)
    dims = {"wsi": WSI_DIM, "clinical": encoder.dim, "rna": rna.dim}
    config = {"modalities": {"wsi": {"dim": WSI_DIM, "encoder": {"name": "abmil_gated", "hidden": 8,
                                                                 "attn_hidden": 4, "dropout": 0.0}},
                             "clinical": {"dim": encoder.dim, "encoder": {"name": "mlp", "hidden": [6]}},
                             "rna": {"dim": rna.dim, "encoder": {"name": "mlp", "hidden": [6]}}},
              "fusion": {"name": "concat_mlp", "hidden": [8], "dropout": 0.0}, "head": {"name": "cox"}}
    torch.manual_seed(seed)
    net = build_network(config).eval()
    spec = MemberSpec(name="n0", network_config=config, input_dims=dims, state_dict=net.state_dict(),
                      preprocessing={"clinical": encoder.to_dict(), "rna": rna.to_dict()})
    return _save(out, [spec], schema, ["wsi", "clinical", "rna"], rng, seed)


def classical_bundle(out: Path, seed: int = 0, rna: bool = False) -> Path:
    """A valid classical bundle folder (bundle.json + weights.safetensors) at `out`; `rna` adds an RNA part."""
    rng = np.random.default_rng(seed)
    schema, encoder, normaliser = _fitted(rng)
    d = encoder.dim
    clinical = DesignBlock("clinical", np.zeros(d), np.ones(d))
    wsi = DesignBlock("wsi", np.zeros(2), np.ones(2), list(POOLS), np.zeros(len(POOLS) * WSI_DIM),
                      rng.normal(size=(2, len(POOLS) * WSI_DIM)) / 4)
    t = tree_arrays()
    trees = TreeEnsemblePredictor(t["left"], t["right"], t["feature"], t["threshold"], t["value"], t["roots"], 2)
    parts = [Part("coxnet", [clinical], LinearPredictor(rng.normal(size=d) * 0.1)),
             Part("rsf", [wsi], trees, 0.5, 0.0, 1.0)]
    dims, preprocessing = {"wsi": WSI_DIM, "clinical": d}, {"clinical": encoder.to_dict()}
    if rna:
        block = DesignBlock("rna", np.zeros(normaliser.dim), np.ones(normaliser.dim))
        parts.append(Part("ridge", [block], LinearPredictor(rng.normal(size=normaliser.dim) * 0.1), 0.5))
        dims["rna"], preprocessing["rna"] = normaliser.dim, normaliser.to_dict()
    model = ClassicalModel("backbone", parts)
    spec = MemberSpec(name="c0", network_config=model.to_dict(), input_dims=dims, state_dict=model.arrays(),
                      preprocessing=preprocessing, kind="classical")
    return _save(out, [spec], schema, list(dims), rng, seed)


def rewrite(bundle: Path, arrays: Callable[[dict[str, np.ndarray]], None] | None = None,
            doc: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """Edit the bundle in place (arrays by key, e.g. `m0.p1.pred.left`; the JSON document) and re-record the
    checksum, so only the structural validation stands between the edit and a prediction."""
    from safetensors.numpy import load, save

    tensors = dict(load((bundle / WEIGHTS_FILE).read_bytes()))
    if arrays is not None:
        arrays(tensors)
    data = save({k: np.ascontiguousarray(tensors[k]) for k in sorted(tensors)}, metadata={"format": "pt"})
    (bundle / WEIGHTS_FILE).write_bytes(data)
    document = json.loads((bundle / BUNDLE_JSON).read_text())
    if doc is not None:
        doc(document)
    document["weights_sha256"] = hashlib.sha256(data).hexdigest()
    (bundle / BUNDLE_JSON).write_text(json.dumps(document, indent=1))
    return bundle
