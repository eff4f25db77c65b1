"""Attention heatmaps of out-of-fold patients for the training report (drawn by chimera_surv/explain.py).

Why out-of-fold: a heatmap of a patient the model trained on shows what it memorised. Each patient is drawn by the
exported member whose held-out fold holds it. Which patients: the lowest- and highest-risk ones (alternating), so
the page shows both ends of the scale; `report.heatmaps` of them (default 6).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file

from train.protocol import RunContext, member_state, oof_standardised


def _pick(oof: np.ndarray, has_bag: np.ndarray, n: int) -> list[int]:
    order = [i for i in np.argsort(oof) if has_bag[i]]
    picked: list[int] = []
    while order and len(picked) < n:
        picked.append(int(order.pop(0)))
        if order and len(picked) < n:
            picked.append(int(order.pop()))
    return picked


def oof_heatmaps(ctx: RunContext, members: list[dict[str, Any]], slides: dict[str, list[Any]], out: Path,
                 n: int) -> list[dict[str, Any]]:
    """Heatmaps of up to `n` out-of-fold patients; returns [{case_id, member, risk_pct, file}] (files relative
    to the report folder)."""
    from chimera_surv.explain import case_heatmaps
    from chimera_surv.features import FeatureRecipe
    from chimera_surv.models import build_network
    from train.data import encode_fold
    from train.extract import bag_path
    from train.fit import collate
    from train.protocol import member_splits

    data = ctx.data
    recipe = FeatureRecipe.from_dict(ctx.config["recipe"])
    oof = oof_standardised(ctx, members)
    has_bag = np.array([b is not None and len(b) > 0 for b in data.bags])
    picked = _pick(oof, has_bag, n)
    percentile = (np.argsort(np.argsort(oof)) + 0.5) / len(oof) * 100
    owner = {i: record for record in members for i in record["oof"]}
    splits = {s.name: s for s in member_splits(ctx)}
    done: list[dict[str, Any]] = []
    for record in members:
        mine = [i for i in picked if owner.get(i) is record]
        if not mine or "wsi" not in record["modalities"]:
            continue
        enc = encode_fold(data, splits[record["split"]].train, ctx.schema, ctx.config)
        net = build_network(record["network"])
        net.load_state_dict(member_state(ctx, record))
        net.eval()
        for i in mine:
            case_id = data.case_ids[i]
            batch, _ = collate(enc, data, [i], record["modalities"], None, None)
            with torch.no_grad():
                attention = net(batch).get("wsi_attention")
            if attention is None:
                continue
            coords = load_file(str(bag_path(ctx.work, case_id)))["coords"]
            weights = attention.reshape(-1).numpy()[: len(coords)]
            for path in case_heatmaps(slides.get(case_id, []), coords, weights,
                                      recipe.patch_size * recipe.target_mpp, out, case_id):
                done.append({"case_id": case_id, "member": record["name"], "risk_pct": float(percentile[i]),
                             "file": str(path.relative_to(out.parent))})
    return sorted(done, key=lambda h: h["risk_pct"])
