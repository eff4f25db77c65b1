"""`python -m train CONFIG.yaml [--steps extract fit cv export report audit anchors]`: reproduce a bundle from a cohort.

`python -m train STEP CONFIG.yaml` is short for `--steps STEP` (e.g. `python -m train audit CONFIG.yaml`).

Every step is resumable: features are cached per patient, each CV split and each ensemble member is a file in the
work folder keyed by the config hash, so a stopped run continues where it stopped and never re-extracts.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from chimera_surv.cli import Parser, UserError, run_cli
from train.config import ConfigError, config_hash, load_config, resolve_path
from train.extract import shard as _shard
from train.extract import wait_for_shards

STEPS = ("extract", "fit", "cv", "export", "report", "audit")
OPTIONAL_STEPS = ("anchors",)  # asked for by name only, never part of `all`
KNOWN_STEPS = STEPS + OPTIONAL_STEPS
MODALITY_ORDER = ("wsi", "mri", "clinical", "rna", "slide_embedding")
log = logging.getLogger("train")


def _setup_logging(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(work / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    if not any(isinstance(h, logging.FileHandler) and h.baseFilename == handler.baseFilename for h in root.handlers):
        root.addHandler(handler)
    root.setLevel(logging.INFO)


class Run:
    """One training run: the config, the cohort and lazily built arrays."""

    def __init__(self, config: dict[str, Any]) -> None:
        from chimera_surv.generic import task_from_config
        from chimera_surv.readers.clinical import load_schema
        from train.cohort import LabelSpec, load_cohort

        self.config = config
        base = Path(config["_base"])
        if config["cohort"].get("table"):  # the table route infers what the config leaves out (train/table.py)
            from train.table import prepare_config

            prepare_config(config, base, survival=str(config.get("task")) not in ("2", "binary"))
        self.task = task_from_config(config)  # CHIMERA task 1/2/3, or a generic survival/binary task
        self.survival = self.task.is_survival
        self.work = resolve_path(config["work_dir"], base)
        # the default bundle folder sits beside the config like every other relative path (it was the current folder)
        self.out = resolve_path(config.get("out") or f"model/{self.task.name}", base)
        self.encoder_root = resolve_path(config.get("encoder_root"), base)
        if str(config.get("device", "cpu")).startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"device: {config['device']} but no GPU is visible; set `device: cpu`")
        _setup_logging(self.work)
        schema_source = config.get("schema") or self.task.id
        if not config.get("schema") and self.task.id not in (1, 2, 3):
            raise ValueError("a generic task needs `schema`: a clinical schema JSON (docs/training.md)")
        if isinstance(schema_source, str) and schema_source.endswith(".json"):
            schema_source = resolve_path(schema_source, base)
        self.schema = load_schema(schema_source)
        wanted = config.get("modalities") or list(self.task.modalities)
        self.modalities = [m for m in MODALITY_ORDER if m in wanted]
        cohort_cfg = config["cohort"]
        root = resolve_path(cohort_cfg["root"], base)
        labels = LabelSpec.from_config(self.schema, cohort_cfg.get("labels"), base)
        if cohort_cfg.get("table"):
            from train.table import table_patients

            self.patients = table_patients(cohort_cfg, base, self.survival, labels.positive)
        else:
            self.patients = load_cohort(root, labels, survival=self.survival,
                                        cohort_regex=cohort_cfg["cohort_regex"],
                                        default_cohort=cohort_cfg["default_cohort"],
                                        slide_embeddings=resolve_path(cohort_cfg.get("slide_embeddings"), base))
        self.genes = self._genes(base) if "rna" in self.modalities else []
        from train.fingerprint import DataFingerprint

        # every cached result is keyed on the config AND the data (patients, labels, clinical, RNA, image files)
        self.fingerprint = DataFingerprint.of(self.patients, self.genes)
        self.hash = self.fingerprint.run_hash(config_hash(config))
        source = resolve_path(cohort_cfg["table"], base) if cohort_cfg.get("table") else root
        log.info("cohort %s: %d patients, modalities %s, config %s", source, len(self.patients), self.modalities,
                 self.hash)
        self._ctx = None
        self._cv: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None  # each step's results, computed
        self._members: list[dict[str, Any]] | None = None  # once per process (later steps reuse them)

    def _genes(self, base: Path) -> list[str]:
        from train.cohort import gene_list_from_cohort

        source = self.config.get("genes") or "from_cohort"
        if source == "from_cohort":
            return gene_list_from_cohort(self.patients)
        genes = json.loads(resolve_path(source, base).read_text())
        if not isinstance(genes, list) or len(set(genes)) != len(genes):
            raise ValueError(f"{source} is not a list of unique gene names")
        return [str(g) for g in genes]

    # ------------------------------------------------------------------------------------------------ steps
    def extract(self) -> None:
        from train.extract import extract_all

        counts = extract_all(self.patients, self.config, self.work, self.modalities, self.encoder_root)
        log.info("extract: %s", counts)
        print(f"extract: {counts}")

    def _bags(self) -> list[Any]:
        """Every patient's bag. A patient whose slides failed to encode (recorded by `extract`) trains without
        slides, said in one line; when every patient with slides failed, the run stops with the first cause."""
        from train.extract import load_bag, recorded_failures

        failures, no_patches = recorded_failures(self.work)
        causes = {**no_patches, **failures}
        bags = [load_bag(self.work, x.case_id, failures) for x in self.patients]
        with_slides = [(x.case_id, bag) for x, bag in zip(self.patients, bags) if x.slides or x.features_h5]
        lost = [case for case, bag in with_slides if bag is None]
        if lost:
            failed = sum(case in failures for case in lost)
            first = f"{lost[0]}: {causes.get(lost[0], 'no usable patch')}"
            if len(lost) == len(with_slides):
                raise ValueError(f"no slide gave a usable patch: all {len(lost)} patients with slides ({failed} "
                                 f"failed to encode; first, {first}; each in {self.work / 'train.log'}); fix the "
                                 "cause and run the `extract` step again, or drop 'wsi' from `modalities`")
            line = (f"wsi: {len(lost)} of {len(with_slides)} patients with slides have no usable patch ({failed} "
                    f"failed to encode; first, {first}); they train as patients without slides")
            log.warning(line)
            print(line)
        return bags

    def context(self) -> Any:
        if self._ctx is None:
            from train.protocol import RunContext

            self._ctx = RunContext(self.arrays(), self.schema, self.config, self.work, self.survival, self.hash)
        return self._ctx

    def arrays(self) -> Any:
        from chimera_surv.readers.clinical import parse_clinical
        from chimera_surv.readers.rna import parse_rna
        from train.data import CohortArrays
        from train.extract import load_mri

        p = self.patients
        data = CohortArrays(
            case_ids=[x.case_id for x in p], cohorts=[x.cohort for x in p],
            time=np.array([x.time if x.time is not None else np.nan for x in p], dtype=np.float64),
            event=np.array([x.event or 0 for x in p], dtype=np.int64),
            label=np.array([x.label if x.label is not None else -1 for x in p], dtype=np.int64),
            modalities=self.modalities, extra=[x.extra for x in p])
        data.bags = self._bags() if "wsi" in self.modalities else [None] * len(p)
        data.records = [parse_clinical(x.clinical, self.schema) if x.clinical is not None else None for x in p]
        if "clinical" in self.modalities:  # what was treated as missing, one line per feature (console, train.log)
            from train.clinical_missing import report as report_missing

            data.clinical_missing = report_missing(data.records, self.schema, log)
        if "rna" in self.modalities:
            data.rna = np.stack([parse_rna(x.rna, self.genes).values if x.rna is not None
                                 else np.full(len(self.genes), np.nan, np.float32) for x in p])
            from train.data import check_rna_scale

            check_rna_scale(data.rna, (self.config["preprocess"].get("rna") or {}).get("scale", "counts"))
        if "mri" in self.modalities:
            loaded = [load_mri(self.work, x.case_id) for x in p]
            width = max((len(v) for v, _ in loaded if v is not None), default=0)
            if width == 0:
                raise ValueError("no patient has MRI features; drop 'mri' from `modalities`")
            data.mri_names = next(n for v, n in loaded if v is not None)
            data.mri = np.stack([v if v is not None else np.full(width, np.nan, np.float32) for v, _ in loaded])
        if "slide_embedding" in self.modalities:  # one slide-encoder vector per slide, averaged (train/table.py)
            from train.table import embedding_matrix

            data.slide_embedding, data.slide_embedding_names = embedding_matrix(p)
        return data

    def fit(self) -> list[dict[str, Any]]:
        from train.protocol import fit_members

        if self._members is None:
            self._members = fit_members(self.context())
        return self._members

    def cv(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        from train.protocol import run_cv, run_holdout
        from train.report.numbers import cv_lines

        if self._cv is None:
            ctx = self.context()
            self._cv = (run_cv(ctx), run_holdout(ctx))
            wanted = bool(self.config["protocol"].get("cohort_holdout", True))
            for line in cv_lines(*self._cv, ctx.survival, holdout_wanted=wanted):
                log.info("%s", line)
                print(line)
        return self._cv

    def export(self) -> Path:
        from train.export import export
        from train.report import cv_summary

        ctx = self.context()
        summary = None
        if (self.work / "cv").is_dir():
            summary = cv_summary(ctx, *self.cv())
        recipe = self.config["recipe"] if "wsi" in self.modalities else None
        path = export(ctx, self.fit(), self.out, recipe, self.genes, summary)
        print(f"export: bundle written to {path.resolve()}")
        return path

    def report(self) -> Path:
        from train.report import write_report

        cv, holdout = self.cv()
        slides = {p.case_id: p.slides for p in self.patients}
        path = write_report(self.context(), cv, holdout, self.fit(), self.work / "report", slides=slides)
        print(f"report: {path}")
        return path

    def anchors(self) -> Path:
        """scikit-survival's CoxPH, CoxNet, RSF, gradient boosting and their average on this run's own splits."""
        from train.anchors import lines, run_anchors
        from train.report import attach_anchors

        if not self.survival:
            print("anchors: not applicable: the anchors are survival models and this is a binary task")
            return self.work
        cv, holdout = self.cv()
        ctx = self.context()
        doc = run_anchors(ctx.data, self.schema, self.genes, {"cv": cv, "cohort-held-out": holdout},
                          self.work / "anchors", config_hash=ctx.config_hash)
        for line in lines(doc):
            log.info("%s", line)
            print(line)
        path = self.work / "anchors" / "anchors.json"
        where = " and in the report" if attach_anchors(self.work / "report", doc) else ""
        print(f"anchors: per split in {path}{where}")
        return path

    def audit(self) -> Path:
        from train.audit import run_member_audits
        from train.report import attach_audit

        path = run_member_audits(self.context(), self.fit(), self.work / "report")
        doc = json.loads(path.read_text())
        if "skipped" in doc:  # a step that does not apply says so and is not an error
            print(f"audit: not applicable: {doc['skipped']}")
            return path
        attach_audit(self.work / "report", doc)
        print(f"audit: {path}")
        return path


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m train", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--steps", nargs="+", choices=KNOWN_STEPS + ("all",), default=["all"])
    parser.add_argument("--out", type=Path, default=None, help="bundle folder (overrides the config's `out`)")
    parser.add_argument("--work", type=Path, default=None, help="work folder (overrides `work_dir`)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a user error")
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) >= 2 and argv[0] in KNOWN_STEPS and "--steps" not in argv:  # `python -m train audit CONFIG`
        argv = argv[1:] + ["--steps", argv[0]]
    args = parser.parse_args(argv)
    # one clear line and exit 2 (chimera_surv/cli.py); the traceback goes to train.log
    return run_cli(lambda: _run(args), user_errors=USER_ERRORS, debug=args.debug, log=log)


# What a user fixes in the config or the cohort: a bad key, a missing path, a modality without data.
USER_ERRORS = (UserError, ConfigError, FileNotFoundError, NotADirectoryError, PermissionError, ValueError)


def _run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.out:
        overrides["out"] = str(args.out.resolve())
    if args.work:
        overrides["work_dir"] = str(args.work.resolve())
    config = load_config(args.config, overrides)
    steps = list(STEPS) if "all" in args.steps else [s for s in KNOWN_STEPS if s in args.steps]
    run = Run(config)
    rank, world, _ = _shard()
    if world > 1 and rank != 0:  # torchrun: every rank extracts its share; the later steps run once, on rank 0
        steps = [s for s in steps if s == "extract"]
    _reconcile_data(run, steps, rank, world)
    gathered = not (world > 1 and "extract" in steps)
    if rank == 0 and "extract" not in steps:
        _save_fingerprint(run)
    for step in steps:
        if step != "extract" and not gathered:  # rank 0 waits for every shard's manifest (files, no collective)
            wait_for_shards(run.work, world)
            gathered = True
            _save_fingerprint(run)
        started = time.perf_counter()
        getattr(run, step)()
        if step == "extract" and world == 1:
            _save_fingerprint(run)
        log.info("step %s done in %.1f s", step, time.perf_counter() - started)
        print(f"[{step}] {time.perf_counter() - started:.1f} s")
    return 0


def _reconcile_data(run: Run, steps: list[str], rank: int, world: int) -> None:
    """Say in one line what changed since the last run in this work folder (the run hash already keeps old
    results from being reused) and drop this rank's extracted features of patients whose image files changed."""
    from train import fingerprint
    from train.extract import assign, bag_path, mri_path

    old = fingerprint.load(run.work)
    changes = run.fingerprint.changes(old) if old is not None else []
    if not changes:
        return
    message = (f"data changed since the last run in {run.work.name}/: {'; '.join(changes)}; "
               "results computed on the old data are recomputed")
    log.info(message)
    print(message)
    stale = run.fingerprint.changed_images(old)
    if stale and "extract" not in steps:
        raise ValueError(f"slide/MRI files of {len(stale)} patient(s) changed since their features were extracted "
                         f"({', '.join(stale[:3])}): run the `extract` step")
    mine = {p.case_id for p in (assign(run.patients, world)[rank] if world > 1 else run.patients)}
    for case_id in stale:
        if case_id in mine:
            bag_path(run.work, case_id).unlink(missing_ok=True)
            mri_path(run.work, case_id).unlink(missing_ok=True)


def _save_fingerprint(run: Run) -> None:
    """Record the data the cached features and results now match (after extraction, once every shard is done)."""
    from train import fingerprint

    fingerprint.save(run.work, run.fingerprint)


if __name__ == "__main__":
    sys.exit(main())
