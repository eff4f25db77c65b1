"""Step `audit`: InterSHAP of every exported ensemble member on its held-out fold (chimera_surv/audit).

Why the members: they are the models that ship and their weights are saved. Each member is explained on the
patients of its own held-out fold, against its TRAINING patients as background (the mean masker's mean embedding,
the shuffle masker's K rows), never against the explained patients (the seed's leak, docs/audit.md). Inputs go
through `train.fit.collate`, the batches the member was trained and evaluated on, and are embedded in chunks so a
cohort of 2,048-patch bags never sits in one tensor. One `audit_<member>.json` per member (resumable: reused when
the config hash and the audit settings match) and a `summary.json` with mean ± SD over members.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from train.protocol import RunContext, _write_json, member_splits, member_state

DEFAULT_MASKERS: list[Any] = ["mean", {"name": "shuffle", "k": 50, "seed": 0}]
SUMMARY_ESTIMATORS = ("orig_mean_abs", "e5_patient_mean")  # the report's two columns (docs/audit.md)


def audit_settings(config: dict[str, Any]) -> dict[str, Any]:
    """What changes an audit result besides the model: maskers, the missing-modality rule, the eval patch cap."""
    cfg = config.get("audit") or {}
    return {"maskers": cfg.get("maskers") or DEFAULT_MASKERS, "missing": cfg.get("missing", "null"),
            "max_patches": config["train"].get("max_patches"), "batch_size": int(cfg.get("batch_size", 64))}


class Embedded(nn.Module):
    """A network whose audit batches are precomputed embeddings: `embed` passes them through, so the chunked
    embedding below is what the audit sees; fusion and head are the wrapped network's own."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.modalities = list(net.modalities)
        self.config = net.config

    def embed(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: batch[m] for m in self.modalities}

    def fuse_and_head(self, embeddings: dict[str, torch.Tensor],
                      present: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        return self.net.fuse_and_head(embeddings, present)


@torch.no_grad()
def embedded_batch(net: nn.Module, enc: Any, data: Any, idx: list[int], modalities: list[str],
                   max_patches: int | None, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """{m: (n, d_m) embedding, f"{m}_present": (n,)} for patients `idx`, from eval-mode `collate` batches."""
    from train.fit import collate

    net.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(idx), batch_size):
        batch, _ = collate(enc, data, list(idx[start:start + batch_size]), modalities, None, max_patches)
        present = net.present(batch)
        for m, emb in net.embed(batch).items():
            parts.setdefault(m, []).append(emb)
            parts.setdefault(f"{m}_present", []).append(present[m])
    return {k: torch.cat(v) for k, v in parts.items()}


def head_output(network_config: dict[str, Any]) -> str:
    """DeepHit members ranking by −E[T] are audited on E[T] (months); every other head (and a DeepHit head
    ranking by the event probability at a horizon) on its `risk` (Cox log-risk, logit)."""
    head = network_config.get("head") or {}
    expected = head.get("name") == "deephit" and head.get("risk", "expected_time") == "expected_time"
    return "expected_time" if expected else "risk"


def _same_json(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=float) == json.dumps(b, sort_keys=True, default=float)


def audit_member(ctx: RunContext, record: dict[str, Any], split: Any, out_dir: Path,
                 settings: dict[str, Any]) -> dict[str, Any]:
    """Audit one member (held-out fold explained, training fold as background); writes audit_<name>.json."""
    from chimera_surv.audit.report import run_audit
    from chimera_surv.models import build_network
    from train.data import encode_fold

    data = ctx.data
    enc = encode_fold(data, split.train, ctx.schema, ctx.config)
    modalities = record["modalities"]
    fitted = {m: s for m, s in enc.preprocessing.items() if m in modalities}
    if not _same_json(fitted, record["preprocessing"]):  # the member must see exactly its training encoding
        raise RuntimeError(f"{record['name']}: re-fitted preprocessing differs from the member's; re-run `fit`")
    net = build_network(record["network"])
    net.load_state_dict(member_state(ctx, record))
    net.eval()
    test, train = list(split.test), list(split.train)
    explain = embedded_batch(net, enc, data, test, modalities, settings["max_patches"], settings["batch_size"])
    background = embedded_batch(net, enc, data, train, modalities, settings["max_patches"], settings["batch_size"])
    maskers = [m if isinstance(m, str) else dict(m) for m in settings["maskers"]]
    doc = run_audit(Embedded(net), explain, background, out_dir, name=record["name"], maskers=maskers,
                    output=head_output(record["network"]), patient_ids=[data.case_ids[i] for i in test])
    doc.update({"config_hash": ctx.config_hash, "settings": settings, "split": record["split"],
                "explained": "held-out fold", "background": "training fold", "n_explained": len(test),
                "n_background": len(train), "modalities": modalities})
    _write_json(out_dir / f"audit_{record['name']}.json", doc)  # replaces run_audit's file, now with provenance
    return doc


def _cached(path: Path, ctx: RunContext, settings: dict[str, Any], split: str) -> dict[str, Any] | None:
    if path.is_file():
        doc = json.loads(path.read_text())
        if doc.get("config_hash") == ctx.config_hash and doc.get("split") == split and \
                _same_json(doc.get("settings"), settings):
            return doc
    return None


def _mean_sd(values: list[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "sd": float(arr.std()), "values": [float(v) for v in arr]}


def summarise(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per masker and estimator: InterSHAP % and modality shares as mean ± SD (population, ddof 0) over members."""
    out: dict[str, Any] = {"members": [d["name"] for d in docs], "modalities": docs[0]["modalities"],
                           "output": docs[0]["output"], "n_explained": [d["n_explained"] for d in docs],
                           "sd": "population SD over members (ddof 0)", "maskers": {}}
    for masker in docs[0]["maskers"]:
        per_estimator = {}
        for name in docs[0]["maskers"][masker]["estimators"]:
            ests = [d["maskers"][masker]["estimators"][name] for d in docs]
            per_estimator[name] = {
                "interaction_pct": _mean_sd([e["interaction_pct"] for e in ests]),
                "shares_pct": {k: _mean_sd([e["shares_pct"][k] for e in ests]) for k in ests[0]["shares_pct"]}}
        out["maskers"][masker] = per_estimator
        if all("harsanyi" in d["maskers"][masker] for d in docs):  # dividends by coalition order (2: pairwise, M: all)
            hs = [d["maskers"][masker]["harsanyi"] for d in docs]
            out.setdefault("harsanyi", {})[masker] = {
                "order": hs[0]["order"],
                "by_order_pct": {k: _mean_sd([h["by_order_pct"][k] for h in hs]) for k in hs[0]["by_order_pct"]}}
    return out


def markdown(summary: dict[str, Any]) -> str:
    """The report's "InterSHAP audit" section."""
    mods = summary["modalities"]
    lines = ["## InterSHAP audit", "",
             (f"Each exported member explained on its held-out fold ({sum(summary['n_explained'])} patients in all) "
             f"against its training fold as background; game on modality embeddings, output `{summary['output']}`. "
             f"Values are mean ± SD over the {len(summary['members'])} members. `orig_mean_abs` is the original "
             "InterSHAP global estimator (pure XOR = 100%), `e5_patient_mean` the seed's eq. 5 per-patient mean "
             "(pure XOR = 33.3%); see docs/audit.md."), "",
             "| masker | estimator | InterSHAP % | " + " | ".join(f"{m} %" for m in mods) + " |",
             "|---|---|---|" + "---|" * len(mods)]
    for masker, ests in summary["maskers"].items():
        for name in SUMMARY_ESTIMATORS:
            if name not in ests:
                continue
            e = ests[name]
            shares = " | ".join(f"{e['shares_pct'][m]['mean']:.1f} ± {e['shares_pct'][m]['sd']:.1f}"
                                if m in e["shares_pct"] else "–" for m in mods)
            lines.append(f"| {masker} | {name} | {e['interaction_pct']['mean']:.2f} ± "
                         f"{e['interaction_pct']['sd']:.2f} | {shares} |")
    for masker, h in (summary.get("harsanyi") or {}).items():
        orders = ", ".join(f"order {k}: {v['mean']:.1f} ± {v['sd']:.1f} %" for k, v in h["by_order_pct"].items())
        lines.append(f"\nHarsanyi dividends ({masker}; share of mean |dividend| by coalition size): {orders}.")
    lines += ["", ("Per member: `audit/audit_<member>.json` (every estimator, per-patient values) and "
                   "`audit/audit_<member>_<masker>.png`."), ""]
    return "\n".join(lines)


def run_member_audits(ctx: RunContext, members: list[dict[str, Any]], report_dir: Path) -> Path:
    """Audit every member (resumable) and write audit/summary.{json,md}; the caller attaches the section to the
    report (train.report.attach_audit: report imports audit, never the other way round)."""
    from tqdm import tqdm

    out_dir = report_dir / "audit"
    if any(r.get("kind", "network") != "network" for r in members):
        # Classical members (model: auto) have no modality embeddings to mask: the audit explains networks.
        model = ctx.config.get("model")
        named = model.get("family") or model.get("name") if isinstance(model, dict) else model
        note = {"skipped": f"the exported members are classical models (model: {named}); the InterSHAP audit "
                "explains networks: set `model:` to a network to audit one"}
        _write_json(out_dir / "summary.json", note)
        (out_dir / "summary.md").write_text(f"## InterSHAP audit\n\nSkipped: {note['skipped']}.\n")
        return out_dir / "summary.json"  # the caller says so in one line; nothing to attach to the report
    settings = audit_settings(ctx.config)
    splits = {s.name: s for s in member_splits(ctx)}
    docs = []
    for record in tqdm(members, desc="audit", unit="member"):
        path = out_dir / f"audit_{record['name']}.json"
        doc = _cached(path, ctx, settings, record["split"])
        if doc is None:
            doc = audit_member(ctx, record, splits[record["split"]], out_dir, settings)
        docs.append(doc)
    summary = {"config_hash": ctx.config_hash, **summarise(docs)}
    _write_json(out_dir / "summary.json", summary)
    (out_dir / "summary.md").write_text(markdown(summary))
    return out_dir / "summary.json"
