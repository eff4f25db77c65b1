"""Cohort shift on synthetic Task 3 cohorts: how much C-index each site effect costs, and how much the
single-patient-safe mitigations win back.

Writes benchmarks/results/shift.json and shift.md. Run: ``.venv/bin/python benchmarks/shift.py`` (22 minutes on 2
busy cores for 5 seeds of 400 test patients; ``--quick`` for a smoke run; ``--real-only`` recomputes the real
multi-study section after `make bench-realdata`).

Design. Per seed, a clean training cohort (site A) and a test cohort drawn from other patients. The test cohort is
observed clean and through each site effect (`chimera_surv.synthetic.site`): the *same* patients, latent risks
and outcomes, only what the hospital records, sequences and scans changes, so the C-index lost is the shift's
doing. The model is a ridge Cox on [clinical one-hot, RNA genes, mean-pooled patch features of the seeded tiny
encoder]; its ridge strength is chosen by inner CV on the clean training cohort of each seed, never on a test
cohort. Mitigations (each alone and all together), all single-patient safe:

* ``rna_rank``    RNA within-sample quantile normalisation (`RNANormaliser(within_sample="quantile")`)
* ``rna_standardise`` RNA log expression centred and scaled over the patient's own genes
                  (`RNANormaliser(within_sample="standardise")`); the RNA mitigation of ``all``
* ``macenko``     per-slide Macenko normalisation, estimated from the slide's own tissue (`stain.MacenkoStain`)
* ``hed_jitter``  HED jitter of the training patches (`stain.hed_jitter`), extra jittered training copies
* ``quality_jitter`` blur + JPEG recompression of the training patches (`stain.quality_jitter`, recipe
                  `quality_jitter`), extra training copies (with ``hed_jitter``: both on the same copies)
* ``rna_winsor``  RNA gene z-scores clipped at ±3 (`preprocess.rna.clip: 3`; the default clip is 10), so a
                  platform's dropout zero or outlier moves a linear risk a bounded amount
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
from chimera_surv.stain import MacenkoStain, hed_jitter, jitter_draws, quality_draws, quality_jitter
from chimera_surv.survival.metrics import harrell_c
from train.augment import augment_bag, check_bag_augment

EFFECTS = ("none", "stain", "blur", "jpeg", "rna", "clinical", "all")
WSI_EFFECTS = ("none", "stain", "blur", "jpeg", "all")  # the others leave the slides as they are
MITIGATIONS = {
    "none": set(),
    "rna_rank": {"rna_rank"},
    "rna_standardise": {"rna_standardise"},
    "macenko": {"macenko"},
    "hed_jitter": {"hed_jitter"},
    "bag_augment": {"bag_augment"},
    "quality_jitter": {"quality_jitter"},
    "rna_winsor": {"rna_winsor"},
    "all": {"rna_standardise", "rna_winsor", "macenko", "hed_jitter", "quality_jitter", "bag_augment"},
}
HED_SIGMA = 0.05
DEV_NOTE = ("The mitigation set of `all` was chosen on development seeds 0-4 (the same design): without `rna_winsor` "
            "it recovered 0.38 of the loss there, with it 0.65; this table uses fresh seeds 5-9, never seen before "
            "the choice.")
RNA_WINSOR = 3.0  # `rna_winsor`: gene z-scores clipped at ±3 (preprocess.rna.clip), a dropout's zero stays bounded
QUALITY = 1.0  # quality-jitter strength: blur sigma U(0, 2) px, JPEG quality 25-95
BAG_AUGMENT = {"shift": 0.3, "scale": 0.1, "noise": 0.0, "drop": 0.2}
COPIES = 2  # augmented training copies per patient
ALPHAS = (30.0, 300.0, 3000.0, 30000.0)


@dataclass(frozen=True)
class Setup:
    n_train: int = 160
    n_test: int = 400
    panel: int = 200
    wsi_size: tuple[int, int] = (672, 448)  # level 0 at 0.5 µm/px: 6 x 4 patches of 112 px
    patch: int = 112
    seeds: tuple[int, ...] = (5, 6, 7, 8, 9)  # seeds 0-4 were the development seeds (DEV_NOTE)


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
            seed = patient.slides[0].seed
            for name, base in (("raw", patches), ("macenko", normalised)):
                hed = hed_jitter(base, *jitter_draws(HED_SIGMA, 7, seed, idx))
                draws = quality_draws(QUALITY, 7, seed, idx)
                out[f"{name}_jit{k}"] = encoder(hed)
                out[f"{name}_q{k}"] = encoder(quality_jitter(base, *draws))
                out[f"{name}_jitq{k}"] = encoder(quality_jitter(hed, *draws))
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


def _copy_suffix(mitigation: set[str]) -> str:
    """Which augmented patch copies a mitigation trains on ("" = the unaugmented bag)."""
    return {(True, False): "_jit", (False, True): "_q", (True, True): "_jitq"}.get(
        ("hed_jitter" in mitigation, "quality_jitter" in mitigation), "")


def _rna_within(mitigation: set[str]) -> str:
    return "quantile" if "rna_rank" in mitigation else "standardise" if "rna_standardise" in mitigation else "none"


def design(obs: Observed, mitigation: set[str], fitted: dict | None, rng: np.random.Generator | None
           ) -> tuple[np.ndarray, dict]:
    """Rows of [clinical, RNA, WSI]; training (fitted=None) also returns the fitted transforms and adds copies."""
    train = fitted is None
    if train:
        schema = load_schema(3)
        fitted = {"clinical": ClinicalEncoder().fit(obs.clinical, schema),
                  "rna": RNANormaliser(within_sample=_rna_within(mitigation),
                                       clip=RNA_WINSOR if "rna_winsor" in mitigation else 10.0).fit(obs.rna)}
    clin = fitted["clinical"].transform(obs.clinical)
    rna = fitted["rna"].transform(obs.rna)
    key = "macenko" if "macenko" in mitigation else "raw"
    wsi = [np.array([_pool(b[key]) for b in obs.bags])]
    blocks = [np.hstack([clin, rna, wsi[0]])]
    if train:
        strengths = check_bag_augment(BAG_AUGMENT) if "bag_augment" in mitigation else {}
        suffix = _copy_suffix(mitigation)
        for k in range(COPIES):
            pooled = []
            for b in obs.bags:
                bag = b[f"{key}{suffix}{k}"] if suffix else b[key]
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


REAL_ALPHAS = (10.0, 100.0, 1000.0, 10000.0)
REAL_WITHIN = ("none", "quantile", "standardise")


def real_loso(realdata_json: Path | None = None) -> dict:
    """dataOvarian1 (SurvSet; 4 studies): train on three studies, test on the fourth, with each RNA within-sample
    transform; ridge Cox on [RNA z-scores, debulking], its strength by inner leave-one-study-out on the training
    studies only; clinical-only (debulking) beside. What `model: auto` chose there is read from the real-data
    benchmark (realdata.json), which runs the same leave-one-study-out through `python -m train`."""
    from SurvSet.data import SurvLoader

    df = SurvLoader().load_dataset("dataOvarian1")["df"].reset_index(drop=True)
    genes = [c for c in df.columns if c.startswith("num_")]
    study = df["fac_group"].astype(str).to_numpy()
    debulk = (df["fac_debulk"].astype(str).to_numpy() == max(df["fac_debulk"].astype(str).unique()))
    rna = df[genes].to_numpy(np.float64)
    time_, event = df["time"].to_numpy(float), df["event"].to_numpy(bool)

    def fit_predict(train: np.ndarray, test: np.ndarray, variant: str | None, alpha: float) -> np.ndarray:
        blocks_tr, blocks_te = [debulk[train, None].astype(float)], [debulk[test, None].astype(float)]
        if variant is not None:  # None: clinical only; "<within>" or "<within>+winsor"
            within, _, winsor = variant.partition("+")
            norm = RNANormaliser(log1p=False, within_sample=within,  # SurvSet genes are log-scale
                                 clip=RNA_WINSOR if winsor else 10.0).fit(rna[train])
            blocks_tr.append(norm.transform(rna[train]))
            blocks_te.append(norm.transform(rna[test]))
        return fit_cox(np.hstack(blocks_tr), time_[train], event[train], alpha).predict(np.hstack(blocks_te))

    def inner_alpha(train: np.ndarray, variant: str | None) -> float:
        scores = {}
        for alpha in REAL_ALPHAS:
            cs = []
            for held in sorted(set(study[train])):
                tr, va = train[study[train] != held], train[study[train] == held]
                cs.append(harrell_c(event[va], time_[va], fit_predict(tr, va, variant, alpha)))
            scores[alpha] = float(np.mean(cs))
        return max(scores, key=lambda a: (scores[a], a))

    rows: dict[str, dict[str, float]] = {}
    for held in sorted(set(study)):
        train, test = np.flatnonzero(study != held), np.flatnonzero(study == held)
        for name, variant in [("clinical_only", None)] + [(f"rna_{w}", w) for w in REAL_WITHIN] + [
                ("rna_none_winsor", "none+winsor"), ("rna_standardise_winsor", "standardise+winsor")]:
            risk = fit_predict(train, test, variant, inner_alpha(train, variant))
            rows.setdefault(name, {})[f"study_{held}"] = round(harrell_c(event[test], time_[test], risk), 4)
    means = {name: round(float(np.mean(list(v.values()))), 4) for name, v in rows.items()}
    out = {"cohort": "dataOvarian1", "n": len(df), "studies": {h: int((study == h).sum()) for h in sorted(set(study))},
           "c_index": rows, "mean": means,
           "standardise_minus_none": round(means["rna_standardise"] - means["rna_none"], 4),
           "quantile_minus_none": round(means["rna_quantile"] - means["rna_none"], 4),
           "winsor_minus_none": round(means["rna_none_winsor"] - means["rna_none"], 4),
           # how the table's genes arrive: per-study gene means (~0 when the curators standardised each study)
           "max_abs_gene_mean_per_study": {h: round(float(np.abs(rna[study == h].mean(0)).max()), 3)
                                           for h in sorted(set(study))}}
    if realdata_json is not None and realdata_json.is_file():
        block = json.loads(realdata_json.read_text())["cohorts"].get("dataOvarian1", {}).get("holdout", {})
        models = block.get("models", {})
        if "model" in models and "auto_rna_within" in models:
            out["auto_loso"] = {"shipped": models["model"], "offered_standardise": models["auto_rna_within"],
                                "shipped_chose": sorted({v.get("auto_rna_within") or "none"
                                                         for v in block.get("splits", {}).values()})}
    return out


def real_markdown(real: dict) -> list[str]:
    names = list(real["c_index"])
    splits = list(real["c_index"][names[0]])
    lines = ["", (f"## Real multi-study cohort: {real['cohort']} (n = {real['n']}, studies {real['studies']}), "
                  "leave-one-study-out"), "",
             "| model | " + " | ".join(splits) + " | mean |", "|---|" + "---|" * (len(splits) + 1)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{real['c_index'][name][s]:.3f}" for s in splits)
                     + f" | {real['mean'][name]:.3f} |")
    verdict = ("is at least" if real["standardise_minus_none"] >= 0 else "is NOT at least")
    lines += ["", (f"- Within-sample standardisation minus none: {real['standardise_minus_none']:+.4f}; quantile "
                   f"minus none: {real['quantile_minus_none']:+.4f}. Leave-one-study-out C-index with the RNA "
                   f"within-sample mitigation {verdict} that without it on this cohort. Winsorised gene z-scores "
                   f"(±{RNA_WINSOR:g}) minus none: {real['winsor_minus_none']:+.4f}."),
              (f"- Why, as far as the data show: the table's genes arrive already standardised within each study "
               f"(largest |per-gene mean| per study: {real['max_abs_gene_mean_per_study']}), a cohort-level "
               "harmonisation by the data's curators that a one-patient container cannot repeat; what a within-sample "
               "transform removes on top of it is signal. The mitigation is therefore not a default, and `model: "
               "auto` offers it only when `auto.rna_within` asks.")]
    if real.get("auto_loso"):
        a = real["auto_loso"]
        lines.append(f"- `model: auto` through `python -m train` (realdata.json, leave-one-study-out): as shipped "
                     f"{a['shipped']:.3f} (RNA transform used: {', '.join(a['shipped_chose'])}); offered "
                     f"`standardise` by inner leave-one-study-out {a['offered_standardise']:.3f}.")
    return lines


def markdown(result: dict) -> str:
    s = result["summary"]
    lines = [
        "# Cohort shift on synthetic Task 3 cohorts", "",
        f"Written by `benchmarks/shift.py` ({result['setup']}); mean over seeds {result['setup']['seeds']}.",
        ("Rows: mitigation the model was trained/applied with. Columns: the site effect the *same* test patients "
        "are observed through. Harrell's C."), "", result.get("dev_note", ""), "",
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
    if result.get("real"):
        lines += real_markdown(result["real"])
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
    parser.add_argument("--real-only", action="store_true", help="recompute only the real multi-study section of "
                        "the shift.json in --out (after a real-data benchmark run)")
    args = parser.parse_args(argv)
    if args.from_json or args.real_only:
        result = json.loads((args.from_json or args.out / "shift.json").read_text())
        result["summary"] = summarise(result["runs"])
        if args.real_only:
            result["real"] = real_loso(args.out / "realdata.json")
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
                        "copies": COPIES, "hed_sigma": HED_SIGMA, "quality_jitter": QUALITY, "bag_augment": BAG_AUGMENT,
                        "alphas": list(ALPHAS), "rna_winsor": RNA_WINSOR},
              "dev_note": DEV_NOTE,
              "summary": summarise(runs), "runs": runs,
              "real": None if args.quick else real_loso(args.out / "realdata.json"),
              "seconds": round(time.perf_counter() - started, 1), "machine": platform.platform()}
    print(markdown(result))
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "shift.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.out / "shift.md").write_text(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
