"""Attention heatmaps: where on each slide the ABMIL pooling looked, drawn over a thumbnail of the slide.

Why: a pathologist checks a slide-based prediction by looking at the tissue the model weighted. The attention of
every ensemble member over the case's patches (the network's `wsi_attention` output) is averaged, ranked within
each slide (0 = least, 1 = most attended; the title gives the max/min weight ratio) and painted over a low-resolution level of the slide at each
patch's level-0 footprint. Used at inference only on request (`inference.py --explain DIR`, never able to fail the
case) and by the training report for out-of-fold patients. Pixels only: no decision rests on this module.
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
        with torch.no_grad():
            out = member.network(bundle._batch(member, inputs, present))
        attention = out.get("wsi_attention")
        if attention is not None:
            maps.append(attention.reshape(-1).float().numpy()[: len(inputs.wsi.features)])
    return np.mean(maps, axis=0) if maps else None


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


def draw_heatmap(slide_path: Path, coords: np.ndarray, weights: np.ndarray, patch_um: float, path: Path,
                 title: str) -> Path:
    """One slide: `coords` (n, 2) level-0 x0, y0 of its patches, `weights` (n,) their attention, each patch
    `patch_um` µm wide (recipe patch_size × target_mpp); writes a 200 dpi PNG."""
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
    # Rank within the slide (CLAM-style percentiles): raw ABMIL weights are often nearly uniform, and a linear
    # scale would paint every patch the same colour. The title keeps the spread honest (max/min ratio).
    relative = (np.argsort(np.argsort(weights)) / max(len(weights) - 1, 1)) if len(weights) > 1 else \
        np.ones(len(weights))
    spread = float(weights.max() / weights.min()) if len(weights) and weights.min() > 0 else float("inf")
    title = f"{title}\n(most/least attended patch weight ratio {spread:.3g})"
    heat = np.full(thumb.shape[:2], np.nan)
    for (x0, y0), value in zip(np.asarray(coords), relative, strict=True):
        x, y = int(x0 * scale), int(y0 * scale)
        heat[y:y + max(1, int(np.ceil(side))), x:x + max(1, int(np.ceil(side)))] = value
    height, width = thumb.shape[:2]
    fig, ax = plt.subplots(figsize=(7, 7 * height / width + 0.6))
    ax.imshow(thumb)
    shown = ax.imshow(np.ma.masked_invalid(heat), cmap="inferno", alpha=0.55, vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    bar = fig.colorbar(shown, ax=ax, fraction=0.035, pad=0.02)
    bar.set_label("attention rank within this slide (0 = least, 1 = most attended)", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=200, bbox_inches="tight")
    plt.close(fig)
    return path


def case_heatmaps(slides: list[Any], coords: np.ndarray, attention: np.ndarray, patch_um: float, out_dir: Path,
                  case_id: str) -> list[Path]:
    """One heatmap per slide of a case; `coords` (N, 3) (slide index, x0, y0) as in `Bag.coords`."""
    written = []
    coords = np.asarray(coords)
    for slide in slides:
        sel = coords[:, 0] == slide.index
        if not sel.any() or slide.wsi is None:
            continue
        name = f"{case_id}_slide{slide.index}_attention.png"
        title = f"{case_id}, {slide.name or Path(slide.wsi).name}: attention over {int(sel.sum())} patches"
        written.append(draw_heatmap(Path(slide.wsi), coords[sel, 1:], attention[sel], patch_um, out_dir / name,
                                    title))
    return written


def explain_case(bundle: Any, inputs: Any, slides: list[Any], out_dir: Path, case_id: str,
                 prediction: dict[str, Any]) -> Path | None:
    """Heatmaps of one case plus `<case>_explained.html` (self-contained); None when there is nothing to draw.
    Callers wrap this: a failure here must never touch the prediction."""
    from chimera_surv.htmlpage import img, page, table

    attention = ensemble_attention(bundle, inputs)
    if attention is None:
        log.info("explain: no slide attention for case %s (no slide bag, or no attention pooling)", case_id)
        return None
    recipe = bundle.recipe
    figures = case_heatmaps(slides, inputs.wsi.coords, attention, recipe.patch_size * recipe.target_mpp, out_dir,
                            case_id)
    rows = [[k, v if not isinstance(v, list) else ", ".join(map(str, v))] for k, v in prediction.items()]
    body = ("<p class=\"note\">Where the slide model looked: the attention of the attention-based multiple-instance "
            "pooling, averaged over the ensemble members, ranked within each slide (1 = the most-attended "
            "patch; the title gives how much more weight that patch got than the least-attended one). "
            "High attention means the patch weighed in the slide's summary, not that it is tumour or that it "
            "raised the risk.</p>" + table(["", "value"], rows)
            + "".join(img(f, f"Attention heatmap: {f.stem}") for f in figures))
    path = out_dir / f"{case_id}_explained.html"
    path.write_text(page(f"Case {case_id}: prediction and attention", body))
    return path
