"""``run_audit``: the one call train/ makes to audit a trained network and write JSON + a figure.

Why one function: the training report needs the same audit for every bundle member (same maskers, same
named estimators, same files), and a caller should not have to know the InterSHAP internals.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from chimera_surv.audit.estimators import PRIMARY_ESTIMATOR
from chimera_surv.audit.network import audit_network

DEFAULT_MASKERS: tuple[Any, ...] = ("mean", {"name": "shuffle", "k": 50, "seed": 0})


def _masker_label(masker: Any) -> str:
    return masker if isinstance(masker, str) else str(masker.get("name"))


def run_audit(net: nn.Module, batch: Mapping[str, torch.Tensor], background_batch: Mapping[str, torch.Tensor],
              out_dir: Path | str, name: str = "model", maskers: Sequence[Any] = DEFAULT_MASKERS,
              output: str = "risk", patient_ids: list[str] | None = None, plot: bool = True) -> dict[str, Any]:
    """Audit ``net`` on ``batch`` (patients to explain; use held-out ones) against ``background_batch``
    (training patients) with each masker; writes ``audit_<name>.json`` and ``audit_<name>_<masker>.png``.

    Returns the JSON document: per masker, every named estimator, the Harsanyi dividends (``harsanyi``: the
    all-M / three-way term under ``harsanyi.all_m``), mean matrices, timing and per-patient values; ``headline``
    repeats the primary estimator and ``all_m_dividend_pct``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"name": name, "primary_estimator": PRIMARY_ESTIMATOR, "output": output, "maskers": {}}
    for masker in maskers:
        res = audit_network(net, batch, masker=masker, background_batch=background_batch, output=output,
                            patient_ids=patient_ids)
        summary = res.summary(per_patient=True)
        for key, est in res.estimates().items():
            summary["estimators"][key] = est.to_dict(per_patient=True)
        label = _masker_label(masker)
        doc["maskers"][label] = summary
        if plot:
            from chimera_surv.audit.plots import plot_audit

            fig = plot_audit(summary, out_dir / f"audit_{name}_{label}.png", title=f"InterSHAP audit: {name}")
            summary["figure"] = fig.name
    primary = doc["maskers"][_masker_label(maskers[0])]["estimators"][PRIMARY_ESTIMATOR]
    harsanyi = doc["maskers"][_masker_label(maskers[0])]["harsanyi"]
    doc["headline"] = {"masker": _masker_label(maskers[0]), "estimator": PRIMARY_ESTIMATOR,
                       "interaction_pct": primary["interaction_pct"], "shares_pct": primary["shares_pct"],
                       "all_m_dividend_pct": harsanyi["all_m"]["pct"], "all_m_coalition": harsanyi["all_m"]["coalition"]}
    (out_dir / f"audit_{name}.json").write_text(json.dumps(doc, indent=1))
    return doc
