"""CPU cost of every architecture and the agreement of the losses with their oracles.

Writes benchmarks/results/models_cpu.json. Run: ``.venv/bin/python benchmarks/models_cpu.py``.
Every network is timed on one patient (B=1, eval, no_grad, float32): a 10,000 × 1024 patch bag for
networks with a WSI bag encoder, the seed's embedding vectors otherwise. Best of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chimera_surv.models import FUSIONS, build_network, count_parameters, preset
from chimera_surv.models.network import PRESETS

# Task-3-shaped networks (UNI bag 1024 → ABMIL 512, RNA 19,359 → MLP 128, clinical 27) for every fusion.
FUSION_SIZES = {
    "concat_mlp": {"hidden": [256], "dropout": 0.25}, "late_sum": {"out": 1},
    "pg_bilinear": {"rank": 64, "pair_out": {"wsi*rna": 64, "wsi*clinical": 32, "rna*clinical": 32}},
    "pg_res": {"rank": 64, "pair_out": {"wsi*rna": 64, "wsi*clinical": 32, "rna*clinical": 32}},
    "bilinear_main": {"rank": 64, "hidden": 64}, "bilinear_product": {"rank": 64, "hidden": 64},
    "gated": {"hidden": 256, "mlp_hidden": 64},
    "gated_convex": {"hidden": 256, "mlp_hidden": 64}, "crossattn_concat": {"hidden": 256, "heads": 8},
    "crossattn_gated": {"dim": 128, "heads": 4}, "lmf": {"out": 64, "rank": 4},
    "ca_mlif": {"dim": 64, "n_tokens": 4, "mmhid": 64}, "ca_mlif_efficient": {"dim": 64, "n_tokens": 4, "mmhid": 64},
}


def task3_config(fusion: str) -> dict:
    cfg = preset("seed002_abmil_pg")
    cfg["fusion"] = {"name": fusion, **FUSION_SIZES[fusion]}
    return cfg


def make_input(cfg: dict, n_patches: int) -> dict:
    g = torch.Generator().manual_seed(0)
    batch = {}
    for m, spec in cfg["modalities"].items():
        is_bag = spec["encoder"]["name"] in ("abmil_gated", "mean_pool", "slide_projection")
        shape = (1, n_patches, spec["dim"]) if is_bag else (1, spec["dim"])
        batch[m] = torch.randn(*shape, generator=g)
        batch[f"{m}_present"] = torch.ones(1, dtype=torch.bool)
        if is_bag:
            batch[f"{m}_mask"] = torch.ones(1, n_patches, dtype=torch.bool)
    return batch


def time_forward(cfg: dict, n_patches: int, repeats: int) -> tuple[int, float, bool]:
    torch.manual_seed(0)
    net = build_network(cfg).eval()
    batch = make_input(cfg, n_patches)
    best = float("inf")
    with torch.no_grad():
        net(batch)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = net(batch)
            best = min(best, time.perf_counter() - t0)
    is_bag = any(k.endswith("_mask") for k in batch)
    return count_parameters(net), best * 1000.0, is_bag and bool(torch.isfinite(out["risk"]).all())


def oracle_agreement() -> dict:
    """Max absolute differences of our losses from lifelines, sksurv, torchsurv and pycox."""
    from lifelines import CoxPHFitter
    from lifelines.datasets import load_rossi
    from pycox.models.data import pair_rank_mat
    from pycox.models.loss import DeepHitSingleLoss
    from sksurv.datasets import load_whas500
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from torchsurv.loss.cox import neg_partial_log_likelihood

    from chimera_surv.survival.discretize import make_cuts, pycox_bin
    from chimera_surv.survival.losses import cox_ph_loss, deephit_loss

    out = {}
    df = load_rossi()
    cph = CoxPHFitter().fit(df, "week", "arrest")
    x = df.drop(columns=["week", "arrest"]).to_numpy(float)
    r = torch.as_tensor(x @ cph.params_.to_numpy())
    nll = cox_ph_loss(r, torch.as_tensor(df.week.to_numpy(float)), torch.as_tensor(df.arrest.to_numpy(float)),
                      ties="efron", reduction="sum").item()
    out["efron_vs_lifelines_loglik_rossi_absdiff"] = abs(nll + cph.log_likelihood_)

    xw, y = load_whas500()
    xw = xw.select_dtypes("number").astype(float).to_numpy()
    xw = (xw - xw.mean(0)) / xw.std(0)
    ref = CoxPHSurvivalAnalysis(ties="breslow").fit(xw, y).coef_
    beta = torch.zeros(xw.shape[1], dtype=torch.float64, requires_grad=True)
    xt = torch.as_tensor(xw)
    t = torch.as_tensor(np.ascontiguousarray(y["lenfol"], dtype=float))
    e = torch.as_tensor(np.ascontiguousarray(y["fstat"], dtype=float))
    opt = torch.optim.LBFGS([beta], max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = cox_ph_loss(xt @ beta, t, e, reduction="sum")
        loss.backward()
        return loss

    opt.step(closure)
    out["breslow_vs_sksurv_coef_whas500_maxabsdiff"] = float(np.abs(beta.detach().numpy() - ref).max())

    g = torch.Generator().manual_seed(0)
    risk = torch.randn(200, generator=g, dtype=torch.float64)
    times = torch.randint(1, 30, (200,), generator=g).double()
    ev = torch.rand(200, generator=g) < 0.5
    for ties in ("breslow", "efron"):
        ours = cox_ph_loss(risk, times, ev, ties=ties, reduction="sum").item()
        theirs = neg_partial_log_likelihood(risk, ev, times, ties_method=ties, reduction="sum").item()
        out[f"{ties}_vs_torchsurv_sum_reldiff"] = abs(ours - theirs) / abs(theirs)

    rng = np.random.default_rng(0)
    tt = rng.integers(1, 100, 256).astype(float)
    ee = (rng.random(256) < 0.4).astype(float)
    idx = pycox_bin(tt, ee, make_cuts(tt, 20))
    phi = torch.as_tensor(rng.normal(size=(256, 20)), dtype=torch.float32)
    ours = deephit_loss(phi, torch.as_tensor(idx), torch.as_tensor(ee, dtype=torch.float32)).item()
    theirs = DeepHitSingleLoss(0.2, 0.1)(phi, torch.as_tensor(idx), torch.as_tensor(ee, dtype=torch.float32),
                                         torch.as_tensor(pair_rank_mat(idx, ee), dtype=torch.float32)).item()
    out["deephit_vs_pycox_reldiff"] = abs(ours - theirs) / abs(theirs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patches", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "models_cpu.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in PRESETS:
        n, ms, bag = time_forward(preset(name), args.patches, args.repeats)
        rows.append({"arch": name, "params": n, "forward_ms": round(ms, 2), "input": "bag" if bag else "vectors"})
        print(rows[-1], flush=True)
    for fusion in FUSIONS.names():
        n, ms, bag = time_forward(task3_config(fusion), args.patches, args.repeats)
        rows.append({"arch": f"task3_{fusion}", "params": n, "forward_ms": round(ms, 2), "input": "bag"})
        print(rows[-1], flush=True)
    result = {"patches": args.patches, "patch_dim": 1024, "threads": args.threads, "repeats": args.repeats,
              "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "architectures": rows, "oracles": oracle_agreement()}
    print(json.dumps(result["oracles"], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
