"""Slide heatmaps: which patches the model's slide evidence came from, drawn over a thumbnail of the slide.

Why: a pathologist checks a slide-based prediction by looking at the tissue it rests on. Two kinds of map:
- attention (networks): the ABMIL pooling's weight of every patch (the network's `wsi_attention`), averaged over
  the ensemble members, drawn as a multiple of an even share (N · a: 1 = every patch weighted equally);
- occlusion (classical members, which pool the bag without attention): how much each patch raises the ensemble's
  risk, risk(bag) - risk(bag without the patch), in risk SD, exact for every patch at once
  (`classical.design.LeaveOneOut` gives the N left-out pooled rows in closed form; the member's own blocks and
  predictor score them; `member_occlusion` returns the opposite sign, the change when the patch is left out).
Both use one absolute colour scale for every slide and a stated noise floor: a slide where no patch passes it says
"no region stands out" and has no colours, and a slide with too few patches gets a sentence, not a map.
Both are painted over a low-resolution level of the slide at each patch's level-0 footprint. Used at inference
only on request (`inference.py --explain DIR`, never able to fail the case) and by the training report for
out-of-fold patients. Pixels only: no decision rests on this module.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("chimera_surv.explain")


class OutOfTime(Exception):
    """A step of --explain whose estimated cost does not fit before the end of the case (`deadline.CaseClock`)."""


class StepTimer:
    """Bounds a repeated step by the case clock: each one starts only if the worst measured cost so far (the prior
    before the first) fits before the end of the case, less the time kept for the process to exit."""

    def __init__(self, clock: Any, what: str, prior_s: float) -> None:
        self.clock, self.what, self.worst = clock, what, prior_s
        self._started: float | None = None
        self._measured = False
        self.exhausted = False  # a step did not fit: the later ones are not tried

    def start(self) -> None:
        import time

        from chimera_surv.deadline import SAFETY

        if self.clock is not None and not self.clock.fits(SAFETY * self.worst, self.clock.exit_keep()):
            raise OutOfTime(self.clock.shortfall(self.what, SAFETY * self.worst, self.clock.exit_keep()))
        self._started = time.monotonic()

    def stop(self) -> None:
        import time

        if self._started is not None:
            seconds = time.monotonic() - self._started
            self.worst = max(self.worst, seconds) if self._measured else seconds
            self._measured = True


def _member_timer(clock: Any, inputs: Any, what: str) -> StepTimer:
    from chimera_surv.deadline import EXPLAIN_MEMBER_PRIOR_S, EXPLAIN_PER_PATCH_S

    patches = len(inputs.wsi.features) if getattr(inputs, "wsi", None) is not None else 0
    return StepTimer(clock, what, EXPLAIN_MEMBER_PRIOR_S + EXPLAIN_PER_PATCH_S * patches)
THUMB_MAX_PX = 1400


def ensemble_attention(bundle: Any, inputs: Any, clock: Any = None) -> np.ndarray | None:
    """(N,) attention over the case's bag, averaged over the bundle's members; None when the bundle has no
    attention-pooled slide encoder or the case has no bag."""
    import torch

    present = bundle._present(inputs)
    if "wsi" not in present:
        return None
    maps = []
    timer = _member_timer(clock, inputs, "one member's attention map")
    for member in bundle.members:
        if not hasattr(member, "network"):  # a classical member pools without attention: see ensemble_occlusion
            continue
        timer.start()  # raises OutOfTime: a map over some of the members would be a different map
        with torch.no_grad():
            out = member.network(bundle._batch(member, inputs, present))
        timer.stop()
        attention = out.get("wsi_attention")
        if attention is not None:
            maps.append(attention.reshape(-1).float().numpy()[: len(inputs.wsi.features)])
    return np.mean(maps, axis=0) if maps else None


OCCLUSION_CHUNK = 1024  # left-out rows scored at once (N x pools x D float64 per chunk)


def member_occlusion(model: Any, vectors: dict[str, np.ndarray | None], bag: np.ndarray,
                     loo: Any = None) -> np.ndarray | None:
    """(N,) change in a ClassicalModel's raw risk when each patch is left out of `bag` (N, D): risk(bag without
    patch i) - risk(bag). `vectors` are the patient's other modalities as the member encodes them (None =
    missing); `loo` a `LeaveOneOut` of this bag with the model's pools, when the caller shares one between
    members. None when the model does not use the slide. A one-patch bag left out is a missing slide."""
    from chimera_surv.classical import pool_bag
    from chimera_surv.classical.design import LeaveOneOut

    if "wsi" not in model.modalities:
        return None
    bag = np.asarray(bag, dtype=np.float64)
    rows = {m: None if vectors.get(m) is None else np.asarray(vectors[m], dtype=np.float64).reshape(1, -1)
            for m in model.modalities if m != "wsi"}
    full = float(model.predict({**rows, "wsi": pool_bag(bag, model.pools)[None]})[0])
    if len(bag) == 1:
        return np.array([float(model.predict({**rows, "wsi": None})[0]) - full])
    if loo is None or tuple(loo.pools) != tuple(model.pools):
        loo = LeaveOneOut(bag, tuple(model.pools))
    out = np.empty(len(bag))
    for start in range(0, len(bag), OCCLUSION_CHUNK):
        stop = min(len(bag), start + OCCLUSION_CHUNK)
        chunk = {m: None if v is None else np.repeat(v, stop - start, axis=0) for m, v in rows.items()}
        out[start:stop] = model.predict({**chunk, "wsi": loo.rows(start, stop)}) - full
    return out


def ensemble_occlusion(bundle: Any, inputs: Any, clock: Any = None) -> np.ndarray | None:
    """(N,) change in the ensemble risk (the mean of the members' standardised risks, what the calibration
    reads) when each patch of the case's bag is left out; members without the slide add zero. Network members
    are not occluded (they have attention maps), so this is exact for a bundle of classical members. None when no
    classical member uses the slide or the case has no bag."""
    present = bundle._present(inputs)
    if "wsi" not in present:
        return None
    from chimera_surv.classical.design import LeaveOneOut

    bag = np.asarray(inputs.wsi.features, dtype=np.float64)
    total, used, shared = np.zeros(len(bag)), 0, {}
    timer = _member_timer(clock, inputs, "one member's occlusion map")
    for member in bundle.members:
        if hasattr(member, "network"):
            continue
        timer.start()  # raises OutOfTime (all members or none)
        pools = tuple(member.model.pools)
        if len(bag) > 1 and pools and pools not in shared:  # the left-out pools are computed once per pooling
            shared[pools] = LeaveOneOut(bag, pools)
        delta = member_occlusion(member.model, bundle._vectors(member, inputs, present), bag, shared.get(pools))
        timer.stop()
        if delta is not None:
            total += delta / member.risk_scale
            used += 1
    return total / len(bundle.members) if used else None


def _thumbnail(wsi: Any) -> tuple[np.ndarray, float]:
    """RGB thumbnail of the smallest level at least THUMB_MAX_PX wide (else the largest level there is, i.e. the
    coarsest), and its scale from level-0 px."""
    from PIL import Image

    level = wsi.level_count - 1
    for candidate in range(wsi.level_count - 1, -1, -1):
        if max(wsi.level_dimensions[candidate]) >= THUMB_MAX_PX or candidate == 0:
            level = candidate
            break
    image = wsi.read_level(level)
    scale = image.shape[1] / wsi.dimensions[0]
    if max(image.shape[:2]) > THUMB_MAX_PX:
        factor = THUMB_MAX_PX / max(image.shape[:2])
        size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
        scale *= factor
    return image, scale


MIN_PATCHES = 4  # fewer patches in a slide: a sentence, not a map (no spatial pattern to read)
ATTENTION_FLOOR = 1.5  # attention × N: a patch stands out when it gets 1.5× an even share or more (or 1/1.5×)
ATTENTION_MAX = 8.0  # the colour bar spans 1/8× to 8× an even share, the same on every slide
OCCLUSION_FLOOR = 0.05  # risk SD: a patch whose removal moves the risk less than this is noise
OCCLUSION_MAX = 0.5  # the colour bar spans ±0.5 risk SD, the same on every slide

KINDS = {
    "attention": {"suffix": "attention", "cmap": "PuOr_r",
                  "legend": "attention relative to an even share (1× = every patch weighted equally)"},
    "occlusion": {"suffix": "occlusion", "cmap": "RdBu_r",
                  "legend": "how much the patch raises the risk, in SD of the risk (red raises, blue lowers)"},
}


def display_values(values: np.ndarray, kind: str, n_bag: int | None = None) -> np.ndarray:
    """What the map shows, on an absolute scale: attention × the bag's patch count (1 = an even share), or
    the patch's contribution risk(bag) - risk(bag without it) in risk SD (the occlusion value negated)."""
    values = np.asarray(values, dtype=float)
    if kind == "attention":
        return values * float(n_bag if n_bag is not None else len(values))
    return -values


def map_summary(shown: np.ndarray, kind: str) -> tuple[bool, str]:
    """(does any patch stand out above the noise floor, one plain sentence with the range and its unit)."""
    if kind == "attention":
        stands = bool((shown >= ATTENTION_FLOOR).any() or (shown <= 1 / ATTENTION_FLOOR).any())
        text = (f"attention from {shown.min():.2g}× to {shown.max():.2g}× an even share; "
                f"{int((shown >= ATTENTION_FLOOR).sum())} patches at {ATTENTION_FLOOR:g}× or more")
        floor = f"every patch within {ATTENTION_FLOOR:g}× of an even share"
    else:
        stands = bool((np.abs(shown) >= OCCLUSION_FLOOR).any())
        up = int((shown >= OCCLUSION_FLOOR).sum())
        text = (f"{up} {'patch raises' if up == 1 else 'patches raise'} the risk and "
                f"{int((shown <= -OCCLUSION_FLOOR).sum())} lower it by {OCCLUSION_FLOOR:g} SD or more; "
                f"range {shown.min():+.3f} to {shown.max():+.3f} SD of the risk")
        floor = f"every patch moves the risk by less than {OCCLUSION_FLOOR:g} SD"
    return stands, text if stands else f"no region stands out: {floor} ({text})"


def draw_heatmap(slide_path: Path, coords: np.ndarray, shown: np.ndarray, patch_um: float, path: Path,
                 title: str, kind: str = "attention") -> tuple[Path, bool, str]:
    """One slide: `coords` (n, 2) level-0 x0, y0 of its patches, `shown` (n,) their `display_values`, each patch
    `patch_um` µm wide; writes a 200 dpi PNG with a fixed colour scale. Below the noise floor the thumbnail is
    drawn without colours and the title says no region stands out. Returns (path, stands out, summary)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize

    from chimera_surv.readers.slide import DEFAULT_ASSUMED_MPP, SlideError, open_slide

    try:
        wsi = open_slide(slide_path)
    except SlideError:
        wsi = open_slide(slide_path, assume_mpp=DEFAULT_ASSUMED_MPP)
    with wsi:
        thumb, scale = _thumbnail(wsi)
        side = patch_um / float(np.mean(wsi.mpp)) * scale  # patch side in thumbnail px
    shown = np.asarray(shown, dtype=float)
    stands, summary = map_summary(shown, kind)
    height, width = thumb.shape[:2]
    fig, ax = plt.subplots(figsize=(7, 7 * height / width + 1.6 if stands else 7 * height / width + 0.8))
    ax.imshow(thumb)
    ax.set_axis_off()
    import textwrap

    ax.set_title(textwrap.fill(title, 80) + "\n" + textwrap.fill(summary, 90), fontsize=8)
    if stands:
        heat = np.full(thumb.shape[:2], np.nan)
        for (x0, y0), value in zip(np.asarray(coords), shown, strict=True):
            x, y = int(x0 * scale), int(y0 * scale)
            heat[y:y + max(1, int(np.ceil(side))), x:x + max(1, int(np.ceil(side)))] = value
        if kind == "attention":
            norm = LogNorm(vmin=1 / ATTENTION_MAX, vmax=ATTENTION_MAX)
            heat = np.clip(heat, 1 / ATTENTION_MAX, ATTENTION_MAX)
        else:
            norm = Normalize(vmin=-OCCLUSION_MAX, vmax=OCCLUSION_MAX)
        drawn = ax.imshow(np.ma.masked_invalid(heat), cmap=KINDS[kind]["cmap"], norm=norm, alpha=0.6)
        bar = fig.colorbar(drawn, ax=ax, orientation="horizontal", fraction=0.05, pad=0.03, extend="both")
        bar.set_label(KINDS[kind]["legend"], fontsize=8)
        if kind == "attention":
            ticks = [1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8]
            bar.set_ticks(ticks, labels=["⅛×", "¼×", "½×", "1×", "2×", "4×", "8×"])
        bar.ax.tick_params(labelsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=200, bbox_inches="tight")
    plt.close(fig)
    return path, stands, summary


def case_heatmaps(slides: list[Any], coords: np.ndarray, attention: np.ndarray, patch_um: float, out_dir: Path,
                  case_id: str, kind: str = "attention", timer: StepTimer | None = None) -> list[dict[str, Any]]:
    """One heatmap per slide of a case; `coords` (N, 3) (slide index, x0, y0) as in `Bag.coords`; `attention`
    (N,) the per-patch values of `kind` (attention weights or occlusion risk changes). `timer` (the case clock):
    a heatmap that does not fit before the end of the case is not drawn, nor any after it (one log line).
    Returns per slide {slide, file (None: too few patches to map), stands_out, summary (a sentence with units)}."""
    written: list[dict[str, Any]] = []
    coords = np.asarray(coords)
    shown_all = display_values(attention, kind, len(attention))
    for slide in slides:
        sel = coords[:, 0] == slide.index
        if not sel.any() or slide.wsi is None:
            continue
        label = slide.name or Path(slide.wsi).name
        if int(sel.sum()) < MIN_PATCHES:
            written.append({"slide": label, "file": None, "stands_out": False,
                            "summary": f"{label}: only {int(sel.sum())} tissue patch(es), too few for a map "
                                       f"(at least {MIN_PATCHES} needed)"})
            continue
        if timer is not None:
            if timer.exhausted:
                break
            try:
                timer.start()
            except OutOfTime as stop:
                timer.exhausted = True
                log.warning("EXPLAIN stopped before the %s heatmap of slide %d (the prediction is written): %s",
                            kind, slide.index, stop)
                break
        name = f"{case_id}_slide{slide.index}_{KINDS[kind]['suffix']}.png"
        what = ("attention over" if kind == "attention" else "how much each patch raises the risk,")
        title = f"{case_id}, {label}: {what} {int(sel.sum())} patches"
        path, stands, summary = draw_heatmap(Path(slide.wsi), coords[sel, 1:], shown_all[sel], patch_um,
                                             out_dir / name, title, kind)
        written.append({"slide": label, "file": path, "stands_out": stands, "summary": summary})
        if timer is not None:
            timer.stop()
    return written


NOTES = {
    "attention": ("Attention maps (networks): the weight the attention-based pooling gave each patch, averaged over "
                  "the ensemble members, as a multiple of an even share (1× = every patch weighted equally; 4× = "
                  f"four times its share). The colour scale is the same on every slide (⅛× to 8×). A slide where "
                  f"no patch gets {ATTENTION_FLOOR:g}× or more (or 1/{ATTENTION_FLOOR:g}× or less) says no region "
                  "stands out, with no colours. High attention means the patch weighed in the slide's summary, not "
                  "that it is tumour or that it raised the risk."),
    "occlusion": ("Occlusion maps (classical models, which pool the slide without attention): how much each patch "
                  "raises the ensemble's risk, i.e. the risk with the patch minus the risk when it is left out, in "
                  "standard deviations of the risk across training patients. Red: the patch raises the risk; blue: "
                  f"it lowers it. The colour scale is the same on every slide (±{OCCLUSION_MAX:g} SD); a slide "
                  f"where no patch moves the risk by {OCCLUSION_FLOOR:g} SD or more says no region stands out, "
                  "with no colours (tree models often ignore single patches)."),
}


def explain_case(bundle: Any, inputs: Any, slides: list[Any], out_dir: Path, case_id: str,
                 prediction: dict[str, Any], clock: Any = None) -> Path | None:
    """Heatmaps of one case (attention of network members, occlusion of classical members) plus
    `<case>_explained.html` (self-contained); None when there is nothing to draw or no time for the maps.
    `clock` (deadline.CaseClock, None = no limit): no step starts unless its estimated cost fits before the end
    of the case. Callers wrap this: a failure here must never touch the prediction."""
    from chimera_surv.deadline import HEATMAP_PRIOR_S
    from chimera_surv.htmlpage import esc, img, page

    try:
        maps = {"attention": ensemble_attention(bundle, inputs, clock),
                "occlusion": ensemble_occlusion(bundle, inputs, clock)}
    except OutOfTime as stop:
        log.warning("EXPLAIN skipped for case %s (the prediction is written): %s", case_id, stop)
        return None
    maps = {kind: values for kind, values in maps.items() if values is not None}
    if not maps:
        log.info("explain: nothing to draw for case %s (no slide bag, or no member uses the slide)", case_id)
        return None
    recipe = bundle.recipe
    timer = StepTimer(clock, "one slide heatmap", HEATMAP_PRIOR_S)
    figures = {kind: case_heatmaps(slides, inputs.wsi.coords, values, recipe.patch_size * recipe.target_mpp,
                                   out_dir, case_id, kind, timer) for kind, values in maps.items()}
    body = _prediction_table(bundle, inputs, prediction)
    for kind, drawn in figures.items():
        label = "Attention heatmap" if kind == "attention" else "How much each patch raises the risk"
        body += (f"<h2>{esc(label)}</h2><p class=\"note\">{esc(NOTES[kind])}</p>"
                 + "".join(img(d["file"], d["summary"]) if d["file"] is not None
                           else f"<p class=\"note\">{esc(d['summary'])}.</p>" for d in drawn))
    what = " and ".join("attention" if kind == "attention" else "patch occlusion" for kind in figures)
    path = out_dir / f"{case_id}_explained.html"
    path.parent.mkdir(parents=True, exist_ok=True)  # no heatmap may have been drawn (too few patches, no time)
    path.write_text(page(f"Case {case_id}: prediction and {what}", body))
    return path


def _prediction_table(bundle: Any, inputs: Any, prediction: dict[str, Any]) -> str:
    """The number with its unit and meaning, S(t) at the bundle's horizons, the median, and which model and
    modalities produced it (chimera_surv/meaning.py); the ensemble risk is recomputed from the same inputs."""
    from chimera_surv.htmlpage import table
    from chimera_surv.meaning import describe

    value, used = prediction.get("prediction"), prediction.get("modalities used") or []
    rows: list[list[Any]] = [["task", prediction.get("task", bundle.task_id)]]
    if value is None:
        return table(["", "value"], rows + [[k, v] for k, v in prediction.items() if k != "task"])
    try:
        risk = float(bundle.predict(inputs).risk) if getattr(bundle, "output_kind", "") == "months" else None
    except Exception as exc:  # noqa: BLE001 - the table loses its survival rows, not the page
        log.info("explain: no survival curve for the page: %s: %s", type(exc).__name__, exc)
        risk = None
    said = describe(bundle, float(value), risk, list(used))
    rows += [["prediction", f"{float(value):.4g} {said['unit']}"], ["what it is", said["meaning"]]]
    survival = said.get("survival")
    if isinstance(survival, dict):
        rows += [[f"probability event-free at {k[2:-1]}", f"{v:.3f}"] for k, v in survival.items()]
        median = said.get("median_months")
        rows.append(["median time to the event", "not reached within the training follow-up" if median is None
                     else f"{median:.1f} months"])
        if said.get("past_follow_up"):
            rows.append(["note", (f"{float(value):.1f} months lies past the longest training follow-up "
                                 f"({said['max_follow_up_months']:.1f} months): an extrapolation")])
    elif survival:
        rows.append(["probability event-free", survival])
    rows += [["model", said["model"]], ["modalities used", said["modalities"]]]
    return table(["", "value"], rows)
