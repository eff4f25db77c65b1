"""Slide heatmaps of out-of-fold patients for the training report (drawn by chimera_surv/explain.py).

Why out-of-fold: a heatmap of a patient the model trained on shows what it memorised. Each patient is drawn by the
exported member whose held-out fold holds it: a network's ABMIL attention, or for a classical member (which pools
the bag without attention) the change in its standardised risk when each patch is left out (occlusion). Which
patients: the lowest- and highest-risk ones (alternating) among those with enough patches for a map, so the page
shows both ends of the scale;
`report.heatmaps` of them (default 6).
"""

from __future__ import annotations

from collections.abc import Callable
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
    """Heatmaps of up to `n` out-of-fold patients; returns [{case_id, member, risk_pct, kind, slide, stands_out,
    summary, file}] (kind: attention or occlusion; file relative to the report folder, None for a slide with too
    few patches to map, whose summary says so)."""
    from chimera_surv.explain import case_heatmaps
    from chimera_surv.features import FeatureRecipe
    from train.data import encode_fold
    from train.extract import bag_path
    from train.protocol import member_splits

    data = ctx.data
    recipe = FeatureRecipe.from_dict(ctx.config["recipe"])
    oof = oof_standardised(ctx, members)
    from chimera_surv.explain import MIN_PATCHES

    # patients with enough patches for a map first; others would only get the "too few patches" sentence
    has_bag = np.array([b is not None and len(b) >= MIN_PATCHES for b in data.bags])
    if not has_bag.any():
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
        patch_values = _classical_values(ctx, record, enc) if record.get("kind") == "classical" else \
            _attention_values(ctx, record, enc)
        kind = "occlusion" if record.get("kind") == "classical" else "attention"
        for i in mine:
            case_id = data.case_ids[i]
            coords = load_file(str(bag_path(ctx.work, case_id)))["coords"]
            values = patch_values(i)
            if values is None:
                continue
            for drawn in case_heatmaps(slides.get(case_id, []), coords, values[: len(coords)],
                                       recipe.patch_size * recipe.target_mpp, out, case_id, kind):
                done.append({"case_id": case_id, "member": record["name"], "risk_pct": float(percentile[i]),
                             "kind": kind, "slide": drawn["slide"], "stands_out": drawn["stands_out"],
                             "summary": drawn["summary"],
                             "file": None if drawn["file"] is None else str(drawn["file"].relative_to(out.parent))})
    return sorted(done, key=lambda h: h["risk_pct"])


def heatmaps_note(members: list[dict[str, Any]]) -> str:
    """Why a report has no slide heatmaps, in one sentence for the reader."""
    used = sorted({m for record in members for m in record.get("modalities", [])})
    if "wsi" not in used:
        return (f"none of the exported members uses the slides (only {', '.join(used) or 'nothing'}), so no patch "
                "can change the prediction")
    return "no out-of-fold patient's slide could be drawn (no attention pooling, or no slide files)"


def _attention_values(ctx: RunContext, record: dict[str, Any], enc: Any) -> Callable[[int], np.ndarray | None]:
    """Patient index → the network member's attention over its bag (None: the network has no attention)."""
    from chimera_surv.models import build_network
    from train.fit import collate

    net = build_network(record["network"])
    net.load_state_dict(member_state(ctx, record))
    net.eval()

    def values(i: int) -> np.ndarray | None:
        batch, _ = collate(enc, ctx.data, [i], record["modalities"], None, None)
        with torch.no_grad():
            attention = net(batch).get("wsi_attention")
        return None if attention is None else attention.reshape(-1).numpy()

    return values


def _classical_values(ctx: RunContext, record: dict[str, Any], enc: Any) -> Callable[[int], np.ndarray | None]:
    """Patient index → the classical member's standardised risk change when each patch is left out."""
    from safetensors.numpy import load_file as load_arrays

    from chimera_surv.classical import ClassicalModel, pool_bag
    from chimera_surv.explain import member_occlusion

    arrays = load_arrays(str(ctx.work / "members" / f"{record.get('file', record['split'])}.safetensors"))
    model = ClassicalModel.from_parts(record["network"], arrays)

    oof_risk = dict(zip(record["oof"], record["oof_risk"], strict=True))

    def values(i: int) -> np.ndarray | None:
        vectors = {m: enc.vectors[m][i] if enc.present[m][i] else None for m in model.modalities if m != "wsi"}
        bag = ctx.data.bags[i]
        # The map is only worth drawing if these inputs give the risk the member reported for this patient.
        rows = {m: None if v is None else np.asarray(v, dtype=np.float64)[None] for m, v in vectors.items()}
        risk = float(model.predict({**rows, "wsi": pool_bag(bag, model.pools)[None]})[0])
        if not np.isclose(risk, oof_risk[i], rtol=1e-6, atol=1e-6):
            raise ValueError(f"{record['name']}: patient {ctx.data.case_ids[i]} re-encoded gives risk {risk:.6g}, "
                             f"not its out-of-fold risk {oof_risk[i]:.6g}")
        delta = member_occlusion(model, vectors, bag)
        return None if delta is None else delta / float(record["risk_scale"])

    return values
