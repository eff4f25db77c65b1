"""Cohort shift on synthetic Task 3 cohorts: how much C-index each site effect costs, and how much the
single-patient-safe mitigations win back.

Writes benchmarks/results/shift.json and shift.md. Run: ``.venv/bin/python benchmarks/shift.py`` (about 10-15
minutes on 2 busy cores; ``--quick`` for a smoke run).

Design. Per seed, a clean training cohort (site A) and a test cohort drawn from other patients. The test cohort is
observed clean and through each site effect (`chimera_surv.synthetic.site`): the *same* patients, latent risks
and outcomes, only what the hospital records, sequences and scans changes, so the C-index lost is the shift's
doing. The model is a ridge Cox on [clinical one-hot, RNA genes, mean-pooled patch features of the seeded tiny
encoder]; its ridge strength is chosen by inner CV on the clean training cohort of each seed, never on a test
cohort. Mitigations (each alone and all together), all single-patient safe:

* ``rna_rank``    RNA within-sample quantile normalisation (`RNANormaliser(within_sample="quantile")`)
* ``macenko``     per-slide Macenko normalisation, estimated from the slide's own tissue (`stain.MacenkoStain`)
* ``hed_jitter``  HED jitter of the training patches (`stain.hed_jitter`), extra jittered training copies
* ``bag_augment`` feature-space bag augmentation of the training bags (`train.augment.augment_bag`)

Every configuration trains on the same rows (the clean patients plus K copies; the copies are identical where no
augmentation applies), so the ridge penalty means the same thing in every row of the table.
`recovered_fraction` = (C[all effects, all mitigations] - C[all effects, none]) / (C[clean, none] - C[all effects,
none]) on the means over seeds (a seed that lost nothing has no fraction of its own; leaving it out would flatter
the result); `clean_change` = C[clean, all mitigations] - C[clean, none], mean over seeds.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chimera_surv import synthetic
from chimera_surv.encoders import load_encoder
from chimera_surv.preprocess import ClinicalEncoder, RNANormaliser
from chimera_surv.readers.clinical import load_schema, parse_clinical
from chimera_surv.stain import MacenkoStain, hed_jitter, jitter_draws
from chimera_surv.survival.metrics import harrell_c
from train.augment import augment_bag, check_bag_augment

EFFECTS = ("none", "stain", "blur", "jpeg", "rna", "clinical", "all")
WSI_EFFECTS = ("none", "stain", "blur", "jpeg", "all")  # the others leave the slides as they are
MITIGATIONS = {
    "none": set(),
    "rna_rank": {"rna_rank"},
    "macenko": {"macenko"},
    "hed_jitter": {"hed_jitter"},
    "bag_augment": {"bag_augment"},
    "all": {"rna_rank", "macenko", "hed_jitter", "bag_augment"},
}
HED_SIGMA = 0.05
BAG_AUGMENT = {"shift": 0.3, "scale": 0.1, "noise": 0.0, "drop": 0.2}
COPIES = 2  # augmented training copies per patient
ALPHAS = (30.0, 300.0, 3000.0, 30000.0)


@dataclass(frozen=True)
class Setup:
    n_train: int = 160
    n_test: int = 160
    panel: int = 200
    wsi_size: tuple[int, int] = (672, 448)  # level 0 at 0.5 µm/px: 6 x 4 patches of 112 px
    patch: int = 112
    seeds: tuple[int, ...] = (0, 1, 2)


def _options(setup: Setup, stream: str, site: str) -> synthetic.CohortOptions:
    return synthetic.CohortOptions(
        wsi_size=setup.wsi_size, mpp=0.5, mask_mpp=4.0, genes=tuple(synthetic.gene_panel(setup.panel)),
        cohort_b_fraction=0.0, stream=stream, first_id=1 if stream == "training" else 901,
        sites=None if site == "none" else {"A": synthetic.site_effects(site)})


def _patches(rgb: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Tissue patches (B, size, size, 3) of a rendered slide (>= 50% tissue), and the tissue pixels."""
    rows, cols = rgb.shape[0] // size, rgb.shape[1] // size
    up = np.kron(mask, np.ones((rgb.shape[0] // mask.shape[0], rgb.shape[1] // mask.shape[1]), np.uint8))
    up = up[: rgb.shape[0], : rgb.shape[1]].astype(bool)
    keep, tissue_frac = [], []
    for r in range(rows):
        for c in range(cols):
            frac = up[r * size:(r + 1) * size, c * size:(c + 1) * size].mean()
            tissue_frac.append(frac)
            if frac >= 0.5:
                keep.append(rgb[r * size:(r + 1) * size, c * size:(c + 1) * size])
    if not keep:  # the most tissue-rich patch
        best = int(np.argmax(tissue_frac))
        r, c = divmod(best, cols)
        keep.append(rgb[r * size:(r + 1) * size, c * size:(c + 1) * size])
    return np.stack(keep), rgb[up]


class Encoder:
    def __init__(self) -> None:
        torch.set_num_threads(1)
        self.net = load_encoder("test-tiny", None, "cpu", weights="seeded")

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.net.embed(torch.from_numpy(np.ascontiguousarray(patches)).permute(0, 3, 1, 2)).numpy()


def slide_bags(patient: synthetic.SyntheticPatient, encoder: Encoder, setup: Setup, train: bool
               ) -> dict[str, np.ndarray]:
    """Patch features of the patient's slide: raw and Macenko-normalised (+ HED-jittered copies for training)."""
    rgb, mask = synthetic.render_slide(patient.slides[0])
    patches, tissue = _patches(rgb, mask, setup.patch)
    out = {"raw": encoder(patches)}
    try:
        stain = MacenkoStain.fit(tissue[:: max(1, len(tissue) // 40_000)])  # an even subsample of the tissue
        normalised = stain.normalise(patches)
    except (ValueError, np.linalg.LinAlgError):
        normalised = patches
    out["macenko"] = encoder(normalised)
    if train:
        for k in range(COPIES):
            idx = np.arange(len(patches)) + 1000 * (k + 1)
            for name, base in (("raw", patches), ("macenko", normalised)):
                out[f"{name}_jit{k}"] = encoder(hed_jitter(base, *jitter_draws(HED_SIGMA, 7, patient.slides[0].seed, idx)))
    return out


@dataclass
class Observed:
    """What the models see of one cohort under one site effect."""

    clinical: list
    rna: np.ndarray
    bags: list[dict[str, np.ndarray]]
    time: np.ndarray
    event: np.ndarray


def observe(patients: list, encoder: Encoder | None, setup: Setup, train: bool, bags: list | None = None
            ) -> Observed:
    schema = load_schema(3)
    genes = synthetic.gene_panel(setup.panel)
    return Observed(
        clinical=[parse_clinical(p.clinical, schema) for p in patients],
        rna=np.array([[p.rna[g] for g in genes] for p in patients], dtype=np.float64),
        bags=bags if bags is not None else [slide_bags(p, encoder, setup, train) for p in patients],
        time=np.array([p.time for p in patients], dtype=float),
        event=np.array([p.event for p in patients], dtype=bool))


def _pool(bag: np.ndarray) -> np.ndarray:
    return bag.mean(0)


def design(obs: Observed, mitigation: set[str], fitted: dict | None, rng: np.random.Generator | None
           ) -> tuple[np.ndarray, dict]:
    """Rows of [clinical, RNA, WSI]; training (fitted=None) also returns the fitted transforms and adds copies."""
    train = fitted is None
    if train:
        schema = load_schema(3)
        fitted = {"clinical": ClinicalEncoder().fit(obs.clinical, schema),
                  "rna": RNANormaliser(within_sample="quantile" if "rna_rank" in mitigation else "none").fit(obs.rna)}
    clin = fitted["clinical"].transform(obs.clinical)
    rna = fitted["rna"].transform(obs.rna)
    key = "macenko" if "macenko" in mitigation else "raw"
    wsi = [np.array([_pool(b[key]) for b in obs.bags])]
    blocks = [np.hstack([clin, rna, wsi[0]])]
    if train:
        strengths = check_bag_augment(BAG_AUGMENT) if "bag_augment" in mitigation else {}
        for k in range(COPIES):
            pooled = []
            for b in obs.bags:
                bag = b[f"{key}_jit{k}"] if "hed_jitter" in mitigation else b[key]
                pooled.append(_pool(augment_bag(bag, rng, strengths) if strengths else bag))
            blocks.append(np.hstack([clin, rna, np.array(pooled)]))
        x = np.vstack(blocks)
        fitted["mean"], fitted["std"] = x.mean(0), x.std(0) + 1e-6
        return (x - fitted["mean"]) / fitted["std"], fitted
    return (blocks[0] - fitted["mean"]) / fitted["std"], fitted


def fit_cox(x: np.ndarray, time_: np.ndarray, event: np.ndarray, alpha: float):
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    y = np.array(list(zip(event, time_)), dtype=[("event", bool), ("time", float)])
    return CoxPHSurvivalAnalysis(alpha=alpha, ties="breslow", n_iter=200).fit(x, y)


def train_model(obs: Observed, mitigation: set[str], alpha: float, seed: int):
    rng = np.random.default_rng(seed)
    x, fitted = design(obs, mitigation, None, rng)
    reps = COPIES + 1
    model = fit_cox(x, np.tile(obs.time, reps), np.tile(obs.event, reps), alpha)
    return model, fitted


def c_index(model, fitted: dict, obs: Observed, mitigation: set[str]) -> float:
    x, _ = design(obs, mitigation, fitted, None)
    return harrell_c(obs.event, obs.time, model.predict(x))


def choose_alpha(obs: Observed, seed: int) -> float:
    """Ridge strength by 3-fold CV on the clean training cohort (no mitigation): never a test cohort."""
    folds = np.random.default_rng(seed).permutation(len(obs.time)) % 3
    scores = {}
    for alpha in ALPHAS:
        cs = []
        for f in range(3):
            tr, va = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
            model, fitted = train_model(_subset(obs, tr), set(), alpha, seed)
            cs.append(c_index(model, fitted, _subset(obs, va), set()))
        scores[alpha] = float(np.mean(cs))
    return max(scores, key=lambda a: (scores[a], -a))


def _subset(obs: Observed, idx: np.ndarray) -> Observed:
    return Observed([obs.clinical[i] for i in idx], obs.rna[idx], [obs.bags[i] for i in idx], obs.time[idx],
                    obs.event[idx])


def run_seed(seed: int, setup: Setup, encoder: Encoder, log) -> dict:
    started = time.perf_counter()
    train_patients = synthetic.make_cohort(3, setup.n_train, 100 + seed, _options(setup, "training", "none"))
    train = observe(train_patients, encoder, setup, train=True)
    log(f"seed {seed}: training cohort observed ({time.perf_counter() - started:.0f} s)")
    tests: dict[str, Observed] = {}
    wsi_bags: dict[str, list] = {}
    for effect in EFFECTS:
        patients = synthetic.make_cohort(3, setup.n_test, 200 + seed, _options(setup, "test", effect))
        shares_slides = effect not in WSI_EFFECTS
        tests[effect] = observe(patients, encoder, setup, train=False,
                                bags=wsi_bags["none"] if shares_slides else None)
        if not shares_slides:
            wsi_bags[effect] = tests[effect].bags
    log(f"seed {seed}: test cohorts observed ({time.perf_counter() - started:.0f} s)")
    alpha = choose_alpha(train, seed)
    table: dict[str, dict[str, float]] = {}
    for name, mitigation in MITIGATIONS.items():
        model, fitted = train_model(train, mitigation, alpha, seed)
        table[name] = {effect: round(c_index(model, fitted, tests[effect], mitigation), 4) for effect in EFFECTS}
    oracle = {e: round(synthetic.oracle_c_index(synthetic.make_cohort(
        3, setup.n_test, 200 + seed, replace(_options(setup, "test", e), with_images=False))), 4) for e in ("none",)}
    log(f"seed {seed}: done ({time.perf_counter() - started:.0f} s), alpha {alpha}")
    return {"seed": seed, "alpha": alpha, "c_index": table, "oracle_c_clean": oracle["none"],
            "seconds": round(time.perf_counter() - started, 1)}


def summarise(runs: list[dict]) -> dict:
    mean = {m: {e: round(float(np.mean([r["c_index"][m][e] for r in runs])), 4) for e in EFFECTS}
            for m in MITIGATIONS}
    per_seed = []
    for r in runs:
        c = r["c_index"]
        lost = c["none"]["none"] - c["none"]["all"]
        gained = c["all"]["all"] - c["none"]["all"]
        per_seed.append({"seed": r["seed"], "lost": round(lost, 4), "gained": round(gained, 4),
                         "recovered_fraction": round(gained / lost, 4) if lost > 0 else None,
                         "clean_change": round(c["all"]["none"] - c["none"]["none"], 4)})
    lost = mean["none"]["none"] - mean["none"]["all"]
    gained = mean["all"]["all"] - mean["none"]["all"]
    # per-seed fractions are undefined where a seed lost nothing; dropping those seeds would flatter the mean, so
    # the headline is the ratio of the seed means (every seed counts), the per-seed mean is reported beside it
    fractions = [p["recovered_fraction"] for p in per_seed if p["recovered_fraction"] is not None]
    per_effect = {}
    for effect in EFFECTS[1:]:
        lost_e = mean["none"]["none"] - mean["none"][effect]
        per_effect[effect] = {"lost": round(lost_e, 4), "best_single": max(
            (m for m in MITIGATIONS if m not in ("none", "all")), key=lambda m: mean[m][effect]),
            "gained_all": round(mean["all"][effect] - mean["none"][effect], 4)}
    return {
        "recovered_fraction": round(gained / lost, 4) if lost > 0 else None,
        "recovered_fraction_per_seed_mean": round(float(np.mean(fractions)), 4) if fractions else None,
        "seeds_with_a_loss": len(fractions),
        "clean_change": round(mean["all"]["none"] - mean["none"]["none"], 4),
        "lost_to_all_effects": round(lost, 4),
        "targets": {"recovered_fraction_min": 0.5, "clean_change_min": -0.01},
        "targets_met": bool(lost > 0 and gained / lost >= 0.5 and mean["all"]["none"] - mean["none"]["none"] >= -0.01),
        "mean_c_index": mean,
        "per_effect": per_effect,
        "per_seed": per_seed,
    }


def markdown(result: dict) -> str:
    s = result["summary"]
    lines = [
        "# Cohort shift on synthetic Task 3 cohorts", "",
        f"Written by `benchmarks/shift.py` ({result['setup']}); mean over seeds {result['setup']['seeds']}.",
        ("Rows: mitigation the model was trained/applied with. Columns: the site effect the *same* test patients "
        "are observed through. Harrell's C."), "",
        "| mitigation | " + " | ".join(EFFECTS) + " |", "|---|" + "---|" * len(EFFECTS)]
    for m, row in s["mean_c_index"].items():
        lines.append(f"| {m} | " + " | ".join(f"{row[e]:.3f}" for e in EFFECTS) + " |")
    lines += [
        "", f"- C-index lost to all effects together (no mitigation): {s['lost_to_all_effects']:.3f}",
        (f"- recovered fraction with all mitigations (mean gain / mean loss over the seeds): {s['recovered_fraction']};"
         f" target >= 0.5 (mean of the per-seed fractions: {s['recovered_fraction_per_seed_mean']}, over the "
         f"{s['seeds_with_a_loss']} seeds that lost C-index)"),
        f"- clean-cohort change with all mitigations: {s['clean_change']:+.3f}; target >= -0.01",
        f"- targets met: {s['targets_met']}", "", ("| effect | C lost (no mitigation) | C gained (all mitigations) "
        "| best single mitigation |"), "|---|---|---|---|"]
    for effect, row in s["per_effect"].items():
        lines.append(f"| {effect} | {row['lost']:+.3f} | {row['gained_all']:+.3f} | {row['best_single']} |")
    lines += ["", "| seed | lost | gained | recovered | clean change |",
        "|---|---|---|---|---|"]
    for p in s["per_seed"]:
        lines.append(f"| {p['seed']} | {p['lost']:.3f} | {p['gained']:.3f} | {p['recovered_fraction']} | "
                     f"{p['clean_change']:+.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny cohorts, one seed (smoke run, not written)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--from-json", type=Path, default=None, help="re-summarise the runs of a shift.json")
    args = parser.parse_args(argv)
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        result["summary"] = summarise(result["runs"])
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "shift.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.out / "shift.md").write_text(markdown(result))
        print(markdown(result))
        return 0
    setup = Setup(n_train=60, n_test=60, seeds=(0,)) if args.quick else Setup()
    if args.seeds:
        setup = replace(setup, seeds=tuple(args.seeds))
    encoder = Encoder()
    started = time.perf_counter()
    runs = [run_seed(seed, setup, encoder, lambda m: print(m, flush=True)) for seed in setup.seeds]
    result = {"setup": {"n_train": setup.n_train, "n_test": setup.n_test, "panel": setup.panel,
                        "wsi_size": list(setup.wsi_size), "patch": setup.patch, "seeds": list(setup.seeds),
                        "copies": COPIES, "hed_sigma": HED_SIGMA, "bag_augment": BAG_AUGMENT,
                        "alphas": list(ALPHAS)},
              "summary": summarise(runs), "runs": runs,
              "seconds": round(time.perf_counter() - started, 1), "machine": platform.platform()}
    print(markdown(result))
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "shift.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.out / "shift.md").write_text(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
