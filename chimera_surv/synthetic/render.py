"""Pixel renderers: slide and MRI parameters → arrays (pure numpy + one pyvips resize; no file I/O)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# ------------------------------------------------------------------------------------------------------------
# Image parameters
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlideParams:
    """Everything the slide renderer needs; z-driven fields are the signal, the rest is nuisance."""

    seed: int
    width: int = 3072  # level-0 pixels
    height: int = 2048
    mpp: float = 0.25
    mask_mpp: float = 4.0
    kind: str = "biopsy"  # "biopsy" (several fragments) or "resection" (one large section)
    nuclear_density: float = 4.0  # nuclei per 1,000 µm² of tissue
    nuclear_radius_um: float = 3.0
    large_nuclei_fraction: float = 0.2
    hematoxylin: float = 1.0  # nuclear stain strength
    stroma_hematoxylin: float = 0.08  # basophilia of the stroma (purple tint)
    lumen_fraction: float = 0.15  # share of tissue that is gland lumen (well differentiated = more)
    stain_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)  # cohort/scanner OD offset per channel
    work_mpp: float = 1.0  # resolution the fields are drawn at before up-sampling
    # site effects (synthetic/site.py); the defaults render exactly what a clean cohort gets
    stain_h_od: tuple[float, float, float] | None = None  # another dye lot's H vector (None = Ruifrok)
    stain_e_od: tuple[float, float, float] | None = None
    stain_scale: tuple[float, float] = (1.0, 1.0)  # H, E concentration factors
    blur_um: float = 0.0  # Gaussian sigma at level 0, µm
    jpeg_quality: int | None = None  # JPEG round trip at this quality

    def validate(self) -> None:
        for name, target in (("work_mpp", self.work_mpp), ("mask_mpp", self.mask_mpp)):
            ratio = target / self.mpp
            if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
                raise ValueError(f"{name}={target} must be an integer multiple of mpp={self.mpp}")
            if self.width % round(ratio) or self.height % round(ratio):
                raise ValueError(
                    f"slide {self.width}x{self.height} not divisible by the {name} factor {ratio}"
                )


@dataclass(frozen=True)
class MRIParams:
    """Task 1 MRI phantom: an ellipsoidal prostate with one lesion; T2, ADC/HBV grids differ as in PI-CAI."""

    seed: int
    prostate_volume_ml: float = 40.0
    lesion_diameter_mm: float = 8.0
    lesion_adc: float = 1100.0  # 1e-6 mm²/s; normal peripheral zone ≈ 1600
    lesion_t2_factor: float = 0.6  # T2 hypo-intensity relative to the gland
    lesion_hbv_factor: float = 2.0  # high-b hyper-intensity relative to the gland
    t2_size: tuple[int, int, int] = (160, 160, 20)  # (x, y, z) voxels
    t2_spacing: tuple[float, float, float] = (0.5, 0.5, 3.0)
    dwi_size: tuple[int, int, int] = (42, 42, 20)
    dwi_spacing: tuple[float, float, float] = (2.0, 2.0, 3.0)



# ------------------------------------------------------------------------------------------------------------
# Slide renderer (pure numpy + one pyvips resize; no file I/O)
# ------------------------------------------------------------------------------------------------------------

HEMATOXYLIN_OD = np.array([0.65, 0.70, 0.29])  # Ruifrok & Johnston stain vectors (optical density per unit)
EOSIN_OD = np.array([0.07, 0.99, 0.11])
BACKGROUND_RGB = np.array([238.0, 238.0, 236.0])


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Unit-variance noise with features about `scale_px` wide: a coarse grid up-sampled (cubic kernel)."""
    import pyvips

    step = max(1.0, float(scale_px))
    coarse = rng.standard_normal((int(shape[0] / step) + 4, int(shape[1] / step) + 4)).astype(np.float32)
    image = pyvips.Image.new_from_array(coarse).resize(step, kernel="cubic")
    field = image.numpy()[: shape[0], : shape[1]].astype(np.float32)
    return (field - field.mean()) / (field.std() + 1e-9)


def _tissue_shape(
    rng: np.random.Generator, shape: tuple[int, int], kind: str, um_per_px: float
) -> np.ndarray:
    """Where the tissue is: one large section (resection) or 2-4 elongated biopsy fragments, ragged edges."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ragged = 0.22 * _smooth_noise(rng, shape, 60 / um_per_px)
    if kind == "resection":
        specs = [
            (
                w * rng.uniform(0.45, 0.55),
                h * rng.uniform(0.45, 0.55),
                w * 0.34,
                h * 0.32,
                rng.uniform(-0.25, 0.25),  # near-horizontal, so the section stays on the glass
            )
        ]
    else:
        specs = []
        for _ in range(int(rng.integers(2, 5))):
            length = w * rng.uniform(0.15, 0.3)
            specs.append(
                (
                    w * rng.uniform(0.25, 0.75),
                    h * rng.uniform(0.25, 0.75),
                    length,
                    min(h, w) * rng.uniform(0.06, 0.12),
                    rng.uniform(0, np.pi),
                )
            )
    distance = np.full(shape, np.inf, dtype=np.float32)
    for cx, cy, rx, ry, angle in specs:
        c, s = math.cos(angle), math.sin(angle)
        u = ((xx - cx) * c + (yy - cy) * s) / rx
        v = (-(xx - cx) * s + (yy - cy) * c) / ry
        distance = np.minimum(distance, np.sqrt(u * u + v * v))
    tissue = (distance + ragged) < 1.0
    margin = max(2, int(0.02 * min(h, w)))
    tissue[:margin], tissue[-margin:], tissue[:, :margin], tissue[:, -margin:] = False, False, False, False
    if tissue.mean() < 0.03:  # degenerate draw: fall back to a central ellipse
        tissue = (((xx - w / 2) / (0.3 * w)) ** 2 + ((yy - h / 2) / (0.3 * h)) ** 2) < 1
    return tissue


def _nuclei(rng: np.random.Generator, where: np.ndarray, p: SlideParams, um_per_px: float) -> np.ndarray:
    """Nuclear stain concentration: Poisson-many flat-topped blobs inside `where`, some enlarged."""
    from scipy.ndimage import gaussian_filter

    area_um2 = float(where.sum()) * um_per_px**2
    count = int(rng.poisson(p.nuclear_density * area_um2 / 1000.0))
    field = np.zeros(where.shape, dtype=np.float32)
    candidates = np.flatnonzero(where)
    if count == 0 or candidates.size == 0:
        return field
    sites = rng.choice(candidates, size=count)
    large = rng.random(count) < p.large_nuclei_fraction
    for radius_um, chosen in (
        (p.nuclear_radius_um, sites[~large]),
        (1.6 * p.nuclear_radius_um, sites[large]),
    ):
        points = np.zeros(where.size, dtype=np.float32)
        np.add.at(points, chosen, 1.0)
        sigma = radius_um / um_per_px / 1.26  # the 1/2.2 level of a Gaussian lies at 1.26 sigma
        blob = gaussian_filter(points.reshape(where.shape), sigma) * (2 * math.pi * sigma**2)
        field = np.maximum(field, np.clip(2.2 * blob, 0.0, 1.25))
    return field


def render_slide(p: SlideParams) -> tuple[np.ndarray, np.ndarray]:
    """(level-0 RGB uint8 of height x width, 0/1 uint8 tissue mask at `mask_mpp`).

    Fields are drawn at `work_mpp` (1 µm/px), coloured by Beer-Lambert mixing of haematoxylin and eosin,
    up-sampled to level 0 with linear interpolation, and given a per-pixel grain. The mask is the same tissue
    field block-averaged to the mask grid, so mask and slide agree to within one mask pixel.
    """
    import pyvips

    p.validate()
    rng = np.random.default_rng(p.seed)
    factor = round(p.work_mpp / p.mpp)
    shape = (p.height // factor, p.width // factor)
    um = p.work_mpp
    tissue = _tissue_shape(rng, shape, p.kind, um)
    lumen_field = _smooth_noise(rng, shape, 22 / um)
    lumen_level = (
        float(np.quantile(lumen_field[tissue], 1.0 - p.lumen_fraction)) if p.lumen_fraction > 0 else np.inf
    )
    lumen = tissue & (lumen_field > lumen_level)
    cellular = tissue & ~lumen
    fibres = _smooth_noise(rng, shape, 6 / um)
    nuclei = _nuclei(rng, cellular, p, um)
    chromatin = 0.85 + 0.15 * _smooth_noise(rng, shape, 1.5 / um)

    eosin = np.where(cellular, 0.55 + 0.12 * fibres, np.where(lumen, 0.06, 0.0)).astype(np.float32)
    haem = np.where(cellular, p.stroma_hematoxylin * (1 + 0.3 * fibres), 0.0).astype(np.float32)
    haem = haem + p.hematoxylin * 1.4 * nuclei * chromatin
    eosin = np.clip(eosin * (1 - 0.5 * np.clip(nuclei, 0, 1)), 0, None)
    h_od = HEMATOXYLIN_OD if p.stain_h_od is None else _unit(p.stain_h_od)
    e_od = EOSIN_OD if p.stain_e_od is None else _unit(p.stain_e_od)
    if p.stain_scale != (1.0, 1.0):
        haem, eosin = haem * p.stain_scale[0], eosin * p.stain_scale[1]
    od = (
        haem[..., None] * h_od
        + eosin[..., None] * e_od
        + np.asarray(p.stain_shift)[None, None, :] * tissue[..., None]
    )
    tissue_rgb = BACKGROUND_RGB * np.exp(-np.clip(od, 0, None))
    background = BACKGROUND_RGB + 2.0 * _smooth_noise(rng, shape, 40 / um)[..., None]
    rgb_work = np.where(tissue[..., None], tissue_rgb, background)
    rgb_work = np.clip(np.round(rgb_work), 0, 255).astype(np.uint8)

    image = pyvips.Image.new_from_array(np.ascontiguousarray(rgb_work)).copy(interpretation="srgb")
    level0 = image.resize(factor, kernel="linear").numpy()[: p.height, : p.width]
    grain = rng.integers(-4, 5, size=(p.height, p.width, 1), dtype=np.int16)
    rgb = np.clip(level0.astype(np.int16) + grain, 0, 255).astype(np.uint8)
    return _scanner(rgb, p), _mask_from_tissue(tissue, p)


def _unit(vector: tuple[float, float, float]) -> np.ndarray:
    """A stain OD vector with the Ruifrok vectors' norm convention (unit length)."""
    v = np.asarray(vector, dtype=np.float64)
    return v / np.linalg.norm(v)


def _scanner(rgb: np.ndarray, p: SlideParams) -> np.ndarray:
    """The scanner's part of a site effect: focus blur, then a JPEG round trip (no-ops by default)."""
    if p.blur_um > 0:
        from scipy.ndimage import gaussian_filter

        sigma = p.blur_um / p.mpp
        rgb = np.clip(np.round(gaussian_filter(rgb.astype(np.float32), (sigma, sigma, 0))), 0, 255).astype(np.uint8)
    if p.jpeg_quality is not None:
        import pyvips

        image = pyvips.Image.new_from_array(np.ascontiguousarray(rgb)).copy(interpretation="srgb")
        data = image.jpegsave_buffer(Q=int(p.jpeg_quality))
        rgb = pyvips.Image.jpegload_buffer(data).numpy()[..., :3]
    return rgb


def _mask_from_tissue(tissue: np.ndarray, p: SlideParams) -> np.ndarray:
    """Block-average (or repeat) the work-grid tissue onto the mask grid; 1 = tissue."""
    mask_h, mask_w = round(p.height * p.mpp / p.mask_mpp), round(p.width * p.mpp / p.mask_mpp)
    ratio = p.mask_mpp / p.work_mpp
    if ratio >= 1:
        k = round(ratio)
        blocks = tissue[: mask_h * k, : mask_w * k].reshape(mask_h, k, mask_w, k).mean(axis=(1, 3))
        return (blocks >= 0.5).astype(np.uint8)
    k = round(1 / ratio)
    return np.repeat(np.repeat(tissue, k, axis=0), k, axis=1)[:mask_h, :mask_w].astype(np.uint8)


# ------------------------------------------------------------------------------------------------------------
# MRI renderer
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Volume:
    """A volume as SimpleITK wants it: array (z, y, x), spacing and origin (x, y, z) in mm."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]


def _grid(
    size: tuple[int, int, int], spacing: tuple[float, float, float], offset: tuple[float, float, float]
) -> tuple[tuple[float, float, float], tuple[np.ndarray, ...]]:
    """Origin centring the grid on (0,0,0) + offset, and the physical (z, y, x) voxel-centre coordinates."""
    origin = tuple(-(n - 1) / 2 * s + o for n, s, o in zip(size, spacing, offset, strict=True))
    axes = [origin[i] + spacing[i] * np.arange(size[i]) for i in range(3)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return origin, (z, y, x)  # type: ignore[return-value]


def render_mri(p: MRIParams) -> dict[str, Volume]:
    """T2 (int16), ADC (int16, 1e-6 mm²/s), HBV (float32) and the prostate mask (uint8, T2 grid).

    One analytic phantom (body ellipse, ellipsoidal prostate, spherical lesion in the posterior peripheral
    zone) is sampled on two grids, as in PI-CAI: T2 at 0.5x0.5x3 mm and DWI at 2x2x3 mm with a shifted origin.
    """
    rng = np.random.default_rng(p.seed)
    ratios = np.array([1.25, 1.0, 1.05])  # left-right, antero-posterior, cranio-caudal
    k = (p.prostate_volume_ml * 1000.0 / (4.0 / 3.0 * math.pi * ratios.prod())) ** (1 / 3)
    semi = k * ratios  # mm, (x, y, z)
    centre = np.array([rng.normal(0, 2), rng.normal(0, 2), rng.normal(0, 3)])
    lesion_centre = centre + np.array(
        [rng.uniform(-0.4, 0.4) * semi[0], 0.5 * semi[1], rng.uniform(-0.3, 0.3) * semi[2]]
    )
    lesion_radius = p.lesion_diameter_mm / 2

    def phantom(zyx: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z, y, x = zyx
        body = (x / 38.0) ** 2 + (y / 30.0) ** 2 < 1
        gland = (
            ((x - centre[0]) / semi[0]) ** 2
            + ((y - centre[1]) / semi[1]) ** 2
            + ((z - centre[2]) / semi[2]) ** 2
        ) < 1
        lesion = gland & (
            ((x - lesion_centre[0]) ** 2 + (y - lesion_centre[1]) ** 2 + (z - lesion_centre[2]) ** 2)
            < lesion_radius**2
        )
        return body, gland, lesion

    t2_origin, t2_zyx = _grid(p.t2_size, p.t2_spacing, (0.0, 0.0, 0.0))
    body, gland, lesion = phantom(t2_zyx)
    t2 = np.where(body, 180.0, 5.0) + np.where(gland, 140.0, 0.0)
    t2 = np.where(lesion, 320.0 * p.lesion_t2_factor, t2) + 12.0 * rng.standard_normal(t2.shape)
    dwi_origin, dwi_zyx = _grid(p.dwi_size, p.dwi_spacing, (0.7, -0.9, 1.5))
    body_d, gland_d, lesion_d = phantom(dwi_zyx)
    adc = np.where(body_d, 1300.0, 0.0) + np.where(gland_d, 350.0, 0.0)
    adc = np.where(lesion_d, p.lesion_adc, adc) + np.where(body_d, 60.0, 5.0) * rng.standard_normal(adc.shape)
    hbv = np.where(body_d, 8.0, 0.5) + np.where(gland_d, 4.0, 0.0)
    hbv = np.where(lesion_d, 12.0 * p.lesion_hbv_factor, hbv) + 1.5 * rng.standard_normal(hbv.shape)
    return {
        "t2w": Volume(np.clip(np.round(t2), 0, 4000).astype(np.int16), p.t2_spacing, t2_origin),
        "adc": Volume(np.clip(np.round(adc), 0, 4000).astype(np.int16), p.dwi_spacing, dwi_origin),
        "hbv": Volume(np.clip(hbv, 0, None).astype(np.float32), p.dwi_spacing, dwi_origin),
        "mask": Volume(gland.astype(np.uint8), p.t2_spacing, t2_origin),
    }
