"""Slide heatmaps: which patches the model's slide evidence came from, drawn over a thumbnail of the slide.

Why: a pathologist checks a slide-based prediction by looking at the tissue it rests on. Two kinds of map:
- attention (networks): the ABMIL pooling's weight of every patch (the network's `wsi_attention`), averaged over
  the ensemble members, ranked within each slide (0 = least, 1 = most attended; the title gives the max/min
  weight ratio);
- occlusion (classical members, which pool the bag without attention): the change in the ensemble's risk when
  the patch is left out of the bag, risk(bag without the patch) - risk(bag), exact for every patch at once
  (`classical.design.LeaveOneOut` gives the N left-out pooled rows in closed form; the member's own blocks and
  predictor score them). Negative = the patch raised the risk. Drawn as a signed rank within the slide.
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
THUMB_MAX_PX = 1400


def ensemble_attention(bundle: Any, inputs: Any) -> np.ndarray | None:
    """(N,) attention over the case's bag, averaged over the bundle's members; None when the bundle has no
    attention-pooled slide encoder or the case has no bag."""
    import torch

    present = bundle._present(inputs)
    if "wsi" not in present:
        return None
    maps = []
    for member in bundle.members:
        if not hasattr(member, "network"):  # a classical member pools without attention: see ensemble_occlusion
            continue
        with torch.no_grad():
            out = member.network(bundle._batch(member, inputs, present))
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


def ensemble_occlusion(bundle: Any, inputs: Any) -> np.ndarray | None:
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
    for member in bundle.members:
        if hasattr(member, "network"):
            continue
        pools = tuple(member.model.pools)
        if len(bag) > 1 and pools and pools not in shared:  # the left-out pools are computed once per pooling
            shared[pools] = LeaveOneOut(bag, pools)
        delta = member_occlusion(member.model, bundle._vectors(member, inputs, present), bag, shared.get(pools))
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


def signed_rank(values: np.ndarray, tol: float = 1e-12) -> np.ndarray:
    """Ranks in [0, 1] that keep the sign: 0.5 = no change, (0.5, 1] the positive values by rank, [0, 0.5) the
    negative ones by rank of magnitude (0 = the most negative). Ties share their average rank."""
    from scipy.stats import rankdata

    values = np.asarray(values, dtype=float)
    out = np.full(len(values), 0.5)
    for sign in (1.0, -1.0):
        sel = sign * values > tol
        if sel.any():
            out[sel] = 0.5 + sign * 0.5 * rankdata(np.abs(values[sel])) / sel.sum()
    return out


KINDS = {
    "attention": {"suffix": "attention", "cmap": "inferno",
                  "legend": "attention rank within this slide (0 = least, 1 = most attended)"},
    "occlusion": {"suffix": "occlusion", "cmap": "RdBu",
                  "legend": "risk change when the patch is left out, ranked within this slide\n"
                            "red: leaving it out lowers the risk (the patch raised it); blue: raises it"},
}


def _colour_values(weights: np.ndarray, kind: str) -> tuple[np.ndarray, str]:
    """Colour values in [0, 1] and the title's note on the spread."""
    if kind == "occlusion":
        scale = max(float(np.abs(weights).max(initial=0.0)), 1.0)
        zero = np.abs(weights) <= 1e-12 * scale
        note = (f"risk without the patch - risk with it; negative: the patch raised the risk\n"
                f"{int(((weights < 0) & ~zero).sum())} patches raised it, {int(((weights > 0) & ~zero).sum())} "
                f"lowered it, {int(zero.sum())} no change; range {weights.min():.3g} to {weights.max():.3g} SD "
                f"of the risk")
        return signed_rank(weights, 1e-12 * scale), note
    # Rank within the slide (CLAM-style percentiles): raw ABMIL weights are often nearly uniform, and a linear
    # scale would paint every patch the same colour. The title keeps the spread honest (max/min ratio).
    relative = (np.argsort(np.argsort(weights)) / max(len(weights) - 1, 1)) if len(weights) > 1 else \
        np.ones(len(weights))
    spread = float(weights.max() / weights.min()) if len(weights) and weights.min() > 0 else float("inf")
    return relative, f"most/least attended patch weight ratio {spread:.3g}"


def draw_heatmap(slide_path: Path, coords: np.ndarray, weights: np.ndarray, patch_um: float, path: Path,
                 title: str, kind: str = "attention") -> Path:
    """One slide: `coords` (n, 2) level-0 x0, y0 of its patches, `weights` (n,) their attention or occlusion
    value (`kind`), each patch `patch_um` µm wide (recipe patch_size × target_mpp); writes a 200 dpi PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from chimera_surv.readers.slide import DEFAULT_ASSUMED_MPP, SlideError, open_slide

    try:
        wsi = open_slide(slide_path)
    except SlideError:
        wsi = open_slide(slide_path, assume_mpp=DEFAULT_ASSUMED_MPP)
    with wsi:
        thumb, scale = _thumbnail(wsi)
        side = patch_um / float(np.mean(wsi.mpp)) * scale  # patch side in thumbnail px
    weights = np.asarray(weights, dtype=float)
    relative, note = _colour_values(weights, kind)
    title = f"{title}\n({note})"
    heat = np.full(thumb.shape[:2], np.nan)
    for (x0, y0), value in zip(np.asarray(coords), relative, strict=True):
        x, y = int(x0 * scale), int(y0 * scale)
        heat[y:y + max(1, int(np.ceil(side))), x:x + max(1, int(np.ceil(side)))] = value
    height, width = thumb.shape[:2]
    fig, ax = plt.subplots(figsize=(7, 7 * height / width + 0.6))
    ax.imshow(thumb)
    shown = ax.imshow(np.ma.masked_invalid(heat), cmap=KINDS[kind]["cmap"], alpha=0.55, vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title(title, fontsize=10 if kind == "attention" else 8)
    bar = fig.colorbar(shown, ax=ax, fraction=0.035, pad=0.02)
    bar.set_label(KINDS[kind]["legend"], fontsize=8)
    if kind == "occlusion":
        bar.set_ticks([0, 0.5, 1], labels=["most\nnegative", "no\nchange", "most\npositive"], fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=200, bbox_inches="tight")
    plt.close(fig)
    return path


def case_heatmaps(slides: list[Any], coords: np.ndarray, attention: np.ndarray, patch_um: float, out_dir: Path,
                  case_id: str, kind: str = "attention") -> list[Path]:
    """One heatmap per slide of a case; `coords` (N, 3) (slide index, x0, y0) as in `Bag.coords`; `attention`
    (N,) the per-patch values of `kind` (attention weights or occlusion risk changes)."""
    written = []
    coords = np.asarray(coords)
    for slide in slides:
        sel = coords[:, 0] == slide.index
        if not sel.any() or slide.wsi is None:
            continue
        name = f"{case_id}_slide{slide.index}_{KINDS[kind]['suffix']}.png"
        what = ("attention over" if kind == "attention" else "risk change when each patch is left out,")
        title = f"{case_id}, {slide.name or Path(slide.wsi).name}: {what} {int(sel.sum())} patches"
        written.append(draw_heatmap(Path(slide.wsi), coords[sel, 1:], attention[sel], patch_um, out_dir / name,
                                    title, kind))
    return written


NOTES = {
    "attention": "Attention maps (networks): the attention of the attention-based multiple-instance pooling, "
                 "averaged over the ensemble members, ranked within each slide (1 = the most-attended patch; the "
                 "title gives how much more weight that patch got than the least-attended one). High attention "
                 "means the patch weighed in the slide's summary, not that it is tumour or that it raised the risk.",
    "occlusion": "Occlusion maps (classical models, which pool the slide without attention): for every patch, the "
                 "change in the ensemble's risk when that patch is left out of the bag (risk without the patch "
                 "minus risk with it, in standard deviations of the risk). Red: leaving the patch out lowers the "
                 "risk, so the patch raised it; blue: the patch lowered it; white: no change (tree models often "
                 "ignore single patches). Colours are ranks within the slide, separately for each sign; the title "
                 "gives the counts and the range.",
}


def explain_case(bundle: Any, inputs: Any, slides: list[Any], out_dir: Path, case_id: str,
                 prediction: dict[str, Any]) -> Path | None:
    """Heatmaps of one case (attention of network members, occlusion of classical members) plus
    `<case>_explained.html` (self-contained); None when there is nothing to draw.
    Callers wrap this: a failure here must never touch the prediction."""
    from chimera_surv.htmlpage import esc, img, page, table

    maps = {"attention": ensemble_attention(bundle, inputs), "occlusion": ensemble_occlusion(bundle, inputs)}
    maps = {kind: values for kind, values in maps.items() if values is not None}
    if not maps:
        log.info("explain: nothing to draw for case %s (no slide bag, or no member uses the slide)", case_id)
        return None
    recipe = bundle.recipe
    figures = {kind: case_heatmaps(slides, inputs.wsi.coords, values, recipe.patch_size * recipe.target_mpp,
                                   out_dir, case_id, kind) for kind, values in maps.items()}
    rows = [[k, v if not isinstance(v, list) else ", ".join(map(str, v))] for k, v in prediction.items()]
    body = table(["", "value"], rows)
    for kind, files in figures.items():
        label = "Attention heatmap" if kind == "attention" else "Risk change when the patch is left out"
        body += (f"<h2>{esc(label)}</h2><p class=\"note\">{esc(NOTES[kind])}</p>"
                 + "".join(img(f, f"{label}: {f.stem}") for f in files))
    what = " and ".join("attention" if kind == "attention" else "patch occlusion" for kind in figures)
    path = out_dir / f"{case_id}_explained.html"
    path.write_text(page(f"Case {case_id}: prediction and {what}", body))
    return path
