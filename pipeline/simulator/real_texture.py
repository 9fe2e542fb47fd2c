"""Real surfaces pasted into real images: the texture of a real construction site, bare field,
pond, road or dark ground, so a model learns change from real texture, not only from the
simulator's flat measured spectra.

Surfaces are cut from real images, chosen by index (bare soil, water, dark ground) or taken
whole from the changed objects of labelled training cities (construction), pasted with feathered
edges, and lightly harmonised to the ring around them so that no seam or source calibration
gives them away. Coal and bright rock take the real texture and the simulator's measured
top-of-atmosphere spectrum.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from affine import Affine
from scipy import ndimage
from shapely.geometry import LineString

from detectors.bands import indices
from detectors.categories import CLASSIFIED_IDS, get_category
from detectors.features import CONTEXT_ZONES, UNKNOWN_ZONE
from pipeline.simulator.fields import SHAPES
from pipeline.simulator.landscape import SimulationGrid
from pipeline.simulator.render import coverage, surface_spectrum, toa_reflectance
from pipeline.sources.labelled import LabelledPair
from pipeline.training.targets import CHANGED_ANY

SURFACES: tuple[str, ...] = ("bare_soil", "construction", "road", "water", "dark_soil", "coal", "bright_rock")
#: The category a pasted surface is labelled with when no zone is given; None = CHANGED_ANY (a change,
#: category unknown: a pond or dark ploughed soil is a lead only where a zone layer says what it destroyed).
SURFACE_CATEGORY: dict[str, str | None] = {"bare_soil": "temporary_land", "construction": "temporary_land",
                                           "road": "temporary_land", "water": None, "dark_soil": None,
                                           "coal": "mine", "bright_rock": "mine"}
#: Temporary land means vegetation stripped bare: a bare surface pasted over ground that was not
#: vegetated (a city block built over) is a change of unknown category, so the real textures do
#: not teach temporary land something the simulator's temporary land is not.
VEGETATED_NDVI = 0.3
#: With their zone supplied as context, ponds and dark soil become zoned categories.
SURFACE_ZONED: dict[str, tuple[str, ...]] = {"water": ("black_soil",), "dark_soil": ("black_soil", "grassland")}
#: Whose real texture a surface borrows when it is not selected by index itself.
TEXTURE_SOURCE = {"road": "bare_soil", "coal": "dark_soil", "bright_rock": "bare_soil", "construction": "bare_soil"}
_RES = 10.0


def surface_masks(img: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    """Pixels of one real image that show each index-selected surface (eroded, so patches are pure)."""
    ix = indices(np.nan_to_num(img))
    ndvi, mndwi, bsi, bright = ix["ndvi"], ix["mndwi"], ix["bsi"], ix["brightness"]
    land = valid & (mndwi < 0.0)
    low = np.percentile(bright[land], 20) if land.any() else 0.0
    masks = {
        "bare_soil": land & (bsi > 0.08) & (ndvi < 0.2),
        "water": valid & (mndwi > 0.2),
        "dark_soil": land & (bright <= low) & (ndvi < 0.3),
    }
    return {k: ndimage.binary_erosion(m, iterations=1) for k, m in masks.items()}


def _fill(window: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fill non-surface pixels of a window from surface neighbours (normalised convolution)."""
    m = mask.astype(np.float32)
    if m.all():
        return window
    num = ndimage.gaussian_filter(window * m[None], (0, 3, 3))
    den = ndimage.gaussian_filter(m, 3)[None]
    mean = (window * m[None]).sum(axis=(1, 2), keepdims=True) / max(m.sum(), 1)
    filled = np.where(den > 1e-3, num / np.maximum(den, 1e-3), mean)
    return np.where(mask[None], window, filled).astype(np.float32)


@dataclass
class TextureBank:
    """Surfaces cut from real training images: where each surface lies, and real changed objects."""

    images: list[np.ndarray]  # (bands, H, W) reflectance, NaN filled
    centres: dict[str, list[tuple[int, np.ndarray]]]  # surface -> [(image index, (K, 2) rows/cols)]
    masks: dict[str, dict[int, np.ndarray]]
    changed: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (patch (b,h,w), mask (h,w))

    @classmethod
    def build(cls, images: list[tuple[np.ndarray, np.ndarray]], cities: list[LabelledPair],
              rng: np.random.Generator, per_image: int = 4000) -> TextureBank:
        """A bank from (reflectance, valid) images and the changed objects of labelled training cities."""
        imgs, centres, masks = [], {s: [] for s in ("bare_soil", "water", "dark_soil")}, {}
        for img, valid in images:
            k = len(imgs)
            imgs.append(np.nan_to_num(img).astype(np.float32))
            for name, m in surface_masks(img, valid).items():
                rows, cols = np.nonzero(m)
                if rows.size < 200:
                    continue
                pick = rng.choice(rows.size, size=min(per_image, rows.size), replace=False)
                centres[name].append((k, np.column_stack([rows[pick], cols[pick]])))
                masks.setdefault(name, {})[k] = m
        changed = []
        for city in cities:
            after = city.after
            ndvi = indices(after)["ndvi"]
            comp, _ = ndimage.label(city.change & city.valid, structure=np.ones((3, 3), bool))
            for k, sl in enumerate(ndimage.find_objects(comp), start=1):
                obj = comp[sl] == k
                if not 30 <= obj.sum() <= 600 or ndvi[sl][obj].mean() > 0.35:  # built or bare, not re-greened
                    continue
                changed.append((after[(slice(None), *sl)].copy(), obj))
        return cls(imgs, centres, masks, changed)

    def has(self, surface: str) -> bool:
        """Whether the bank holds texture for `surface` (the images given may show no water, say)."""
        return bool(self.centres.get(TEXTURE_SOURCE.get(surface, surface))) or (
            surface == "construction" and bool(self.changed))

    def patch(self, surface: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """A window (bands, h, w) of real `surface` texture, non-surface pixels filled from the surface."""
        src = TEXTURE_SOURCE.get(surface, surface)
        k, cs = self.centres[src][rng.integers(len(self.centres[src]))]
        r, c = cs[rng.integers(len(cs))]
        img, m = self.images[k], self.masks[src][k]
        h, w = shape
        _, H, W = img.shape
        r0, c0 = int(np.clip(r - h // 2, 0, H - h)), int(np.clip(c - w // 2, 0, W - w))
        win = img[:, r0:r0 + h, c0:c0 + w]
        out = _fill(win, m[r0:r0 + h, c0:c0 + w])
        if surface in ("coal", "bright_rock"):  # real texture, the simulator's measured TOA spectrum
            name = "coal" if surface == "coal" else "rock_pit"
            spectrum = toa_reflectance(surface_spectrum(name, rng), rng.uniform(0.6, 1.5))[:, None, None]
            bright = out.mean(axis=0, keepdims=True)
            out = spectrum * np.clip(bright / max(float(bright.mean()), 1e-3), 0.8, 1.2)
        return out.astype(np.float32)


def _shape_alpha(surface: str, h: int, w: int, area_px: float, rng: np.random.Generator
                 ) -> np.ndarray:
    """Soft coverage (h, w) of one implant shape centred in a window: roads are thin polylines."""
    grid = SimulationGrid(crs="", transform=Affine(_RES, 0, 0, 0, -_RES, 0), height=h, width=w)
    centre = grid.xy(h // 2, w // 2)
    if surface == "road":
        width_m = rng.uniform(12, 30)
        length = area_px * _RES * _RES / width_m
        angle = rng.uniform(0, np.pi)
        bend = rng.uniform(-0.5, 0.5)
        half = np.array([np.cos(angle), np.sin(angle)]) * length / 2
        mid = np.array(centre) + np.array([-np.sin(angle), np.cos(angle)]) * bend * length / 4
        geom = LineString([tuple(np.array(centre) - half), tuple(mid), tuple(np.array(centre) + half)]
                          ).buffer(width_m / 2, cap_style="flat")
    else:
        kind = str(rng.choice(("rect", "compound") if surface == "construction" else ("blob", "rect")))
        geom = SHAPES[kind](centre, area_px * _RES * _RES, rng)
    return coverage(grid, geom)


def paste_surface(after: np.ndarray, labels: np.ndarray, zones: np.ndarray, surfaces: np.ndarray, surface: str,
                  bank: TextureBank, rng: np.random.Generator, area_px: float, forbidden: np.ndarray,
                  min_contrast: float = 0.04, tries: int = 6) -> bool:
    """Paste one real-texture surface into `after` in place, labelling it; False if no place showed contrast.

    The patch is feathered at its edges and lightly harmonised to the ring around it (its mean and
    spread move 0–25 % towards the ring's), so the model cannot rely on a seam or on the source
    scene's calibration; a place where the patch barely differs from what is there is refused.
    """
    _, H, W = after.shape
    for _ in range(tries):
        if surface == "construction" and bank.changed:
            patch, obj = bank.changed[rng.integers(len(bank.changed))]
            k = int(rng.integers(4))
            patch, obj = np.rot90(patch, k, axes=(1, 2)), np.rot90(obj, k)
            alpha = ndimage.gaussian_filter(obj.astype(np.float32), rng.uniform(0.4, 0.8))
            alpha = np.maximum(alpha, obj * 0.8)
        else:
            side = int(np.ceil(np.sqrt(area_px) * (6 if surface == "road" else 2.2))) + 6
            side = min(side, H, W)
            alpha = _shape_alpha(surface, side, side, area_px, rng)
            alpha = ndimage.gaussian_filter(alpha, rng.uniform(0.3, 0.7))
            patch = bank.patch(surface, alpha.shape, rng)
        h, w = alpha.shape
        if h > H or w > W:
            return False
        r0, c0 = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        sl = (slice(r0, r0 + h), slice(c0, c0 + w))
        core = alpha >= 0.5
        if core.sum() < 5 or (forbidden[sl] & (alpha > 0.05)).any():
            continue
        target = after[(slice(None), *sl)]
        ring = ndimage.binary_dilation(alpha > 0.05, iterations=3) & (alpha <= 0.05)
        a = float(rng.uniform(0.0, 0.25))
        m_p, s_p = patch[:, core].mean(axis=1), patch[:, core].std(axis=1) + 1e-4
        if ring.any():
            m_r, s_r = target[:, ring].mean(axis=1), target[:, ring].std(axis=1) + 1e-4
            scale = 1 + a * (s_r / s_p - 1)
            patch = (patch - m_p[:, None, None]) * scale[:, None, None] + (m_p + a * (m_r - m_p))[:, None, None]
        if np.linalg.norm(patch[:, core].mean(axis=1) - target[:, core].mean(axis=1)) < min_contrast:
            continue
        cat = SURFACE_CATEGORY[surface]
        if cat == "temporary_land" and float(indices(target[:, core])["ndvi"].mean()) < VEGETATED_NDVI:
            cat = None  # built or bare ground made over: a change, but not vegetation stripped bare
        after[(slice(None), *sl)] = (1 - alpha) * target + alpha * np.clip(patch, 0.0, 1.0)
        zoned = SURFACE_ZONED.get(surface, ())
        if zoned and rng.random() < 0.5:  # the zone is supplied: the change gets its zoned category
            cat = str(rng.choice(zoned))
            j = CONTEXT_ZONES.index(get_category(cat).zone)
            region = ndimage.binary_dilation(alpha > 0.05, iterations=int(rng.integers(5, 30)))
            zsl = zones[j][sl]
            zones[j][sl] = np.where(region, 1.0, np.where(zsl == UNKNOWN_ZONE, 0.0, zsl))
        labels[sl][core] = CHANGED_ANY if cat is None else CLASSIFIED_IDS.index(cat) + 1
        surfaces[sl][core] = SURFACES.index(surface) + 1
        forbidden[sl] |= ndimage.binary_dilation(alpha > 0.05, iterations=3)
        return True
    return False


def texture_implants(after: np.ndarray, bank: TextureBank, rng: np.random.Generator, count: int,
                     labels: np.ndarray | None = None, zones: np.ndarray | None = None,
                     forbidden: np.ndarray | None = None, surfaces: tuple[str, ...] = SURFACES,
                     area_ha: tuple[float, float] = (0.3, 3.0)
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`count` real-texture implants; returns after, labels, zones and the surface index map (0 = none)."""
    _, h, w = after.shape
    out = after.copy()
    labels = np.zeros((h, w), np.uint8) if labels is None else labels.copy()
    zones = np.full((len(CONTEXT_ZONES), h, w), UNKNOWN_ZONE, np.float32) if zones is None else zones.copy()
    forbidden = (labels > 0) if forbidden is None else forbidden.copy()
    surf = np.zeros((h, w), np.uint8)
    surfaces = tuple(s for s in surfaces if bank.has(s))
    for _ in range(count if surfaces else 0):
        s = str(rng.choice(surfaces))
        paste_surface(out, labels, zones, surf, s, bank, rng, rng.uniform(*area_ha) * 100, forbidden)
    return out, labels, zones, surf
