"""Detectors on real Sentinel-2 change, side by side with a change-vector-analysis floor.

Three measurements, each as `eoleads detect` runs with its defaults (no zone file, the
detector's own thresholds and mapping units), on pairs the model never trained on:

- labelled cities held out of training: pixel precision/recall/F1 and object recall for true
  changes of at least 0.5 ha (found when a quarter of it is flagged);
- implants of real surfaces (bare soil, construction, roads, ponds, dark soil, coal, bright rock,
  and the simulator's spectra) into same-image no-change pairs of unlabelled pairs: recall per
  surface at 0.5 ha, and false alarms outside the implants in ha per km² (every other pixel is
  unchanged ground, so this is a true false-alarm rate);
- the area flagged on the true pairs (real change and false alarms together: an upper bound).

The floor is classic change vector analysis: the norm of the band differences, thresholded per
pair by Otsu's method. A learned model that does not beat it by a wide margin has learned
nothing a one-liner does not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from scipy import ndimage
from tqdm import tqdm

from detectors import detector_label
from detectors.categories import CLASSIFIED
from detectors.features import CONTEXT_ZONES, UNKNOWN_ZONE
from pipeline.evaluation.objects import Counts, count
from pipeline.simulator.implants import implant
from pipeline.simulator.no_change import same_image_pair
from pipeline.simulator.real_texture import SURFACES, TextureBank, paste_surface
from pipeline.sources.labelled import LabelledPair
from pipeline.training.real_chips import Background

MIN_OBJECT_PX = 50  # 0.5 ha at 10 m
OBJECT_COVER = 0.25  # share of a true change that must be flagged for it to count as found
CVA = "change vector analysis"
#: What runs without zone layers, as `detect` runs by default: the simulator's implants keep to it.
ZONELESS = tuple(c.id for c in CLASSIFIED if not c.needs_zone_layer)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a sample: the cut that maximises the between-class variance."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if hi <= lo:
        return lo
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(np.float64)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    between = w0 * w1 * (m0 / np.maximum(w0, 1) - (m0[-1] - m0) / np.maximum(w1, 1)) ** 2
    return float(edges[int(np.argmax(between[:-1])) + 1])


def cva_flags(before: np.ndarray, after: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The floor: change-vector magnitude above the pair's own Otsu threshold."""
    magnitude = np.sqrt(np.sum((after - before) ** 2, axis=0))
    return (magnitude > otsu_threshold(magnitude[valid])) & valid


def _write_like(path: Path, reflectance: np.ndarray, template: Path) -> Path:
    """Reflectance as a uint16 GeoTIFF with the grid, band names and tags of `template`."""
    with rasterio.open(template) as src:
        profile = src.profile | {"dtype": "uint16", "nodata": 0, "count": reflectance.shape[0]}
        tags, descriptions = src.tags(), src.descriptions
    scale = float(tags.get("QUANTIFICATION_VALUE", 10000))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.clip(np.round(reflectance * scale), 1, 65535).astype("uint16"))
        dst.update_tags(**tags)
        for i, d in enumerate(descriptions, start=1):
            dst.set_band_description(i, d or "")
    return path


def detect_flags(detector: str, before: Path, after: Path, out: Path) -> np.ndarray:
    """Where `eoleads detect` with its defaults flags change (any category, `other` included)."""
    from pipeline.detect import detect

    result = detect(before, after, out, detector)
    return result.grid.mask(list(result.polygons.geometry))


def labelled_cities(detectors: list[str], folder: Path, pairs: dict[str, LabelledPair], out: Path,
                    progress: bool = True) -> pd.DataFrame:
    """Pixel and object scores per detector (and the CVA floor) on labelled cities read from
    `folder`, counts summed."""
    totals: dict[str, Counts] = {}
    for name, pair in tqdm(pairs.items(), desc="labelled cities", unit="city", disable=not progress):
        masks = {CVA: cva_flags(pair.before, pair.after, pair.valid)}
        for det in detectors:
            masks[det] = detect_flags(det, folder / name / "before.tif", folder / name / "after.tif",
                                      out / name / detector_label(det))
        for det, flagged in masks.items():
            c = count(flagged, pair.change, MIN_OBJECT_PX, OBJECT_COVER, pair.valid)
            totals[det] = totals.get(det, Counts()) + c
    return pd.DataFrame([{"detector": d, "cities": ", ".join(pairs), **c.summary()} for d, c in totals.items()])


@dataclass
class ImplantCase:
    """One held-out pair made into a same-image no-change pair with implants of every surface."""

    name: str
    before: np.ndarray
    after: np.ndarray
    valid: np.ndarray
    labels: np.ndarray
    surfaces: np.ndarray  # 0 none, 1 + index in SURFACES (texture implants), len(SURFACES)+1 simulator spectra


def implant_cases(pairs: dict[str, Background], bank: TextureBank, per_surface: int = 4, seed: int = 0
                  ) -> list[ImplantCase]:
    """Fixed implants (0.6–3 ha) of each surface, and simulator-spectra implants, into no-change pairs."""
    cases = []
    for k, (name, (before, _, valid)) in enumerate(pairs.items()):
        rng = np.random.default_rng([seed, k])
        b, a = same_image_pair(before, rng)
        labels = np.zeros(valid.shape, np.uint8)
        zones = np.full((len(CONTEXT_ZONES), *valid.shape), UNKNOWN_ZONE, np.float32)
        surf = np.zeros(valid.shape, np.uint8)
        forbidden = ~ndimage.binary_erosion(valid, iterations=8)
        for s in (s for s in SURFACES if bank.has(s)):
            for _ in range(per_surface):
                paste_surface(a, labels, zones, surf, s, bank, rng, rng.uniform(0.6, 3.0) * 100, forbidden)
        sim_after, sim_labels, _ = implant(b, a, rng, per_surface, ZONELESS)
        touched = (np.abs(sim_after - a).max(axis=0) > 0) & ~forbidden
        keep = touched & ~ndimage.binary_dilation(labels > 0, iterations=3)
        new = keep & (sim_labels > 0)
        a = np.where(keep[None], sim_after, a)
        labels = np.where(new, sim_labels, labels)
        surf = np.where(new, len(SURFACES) + 1, surf).astype(np.uint8)
        cases.append(ImplantCase(name, b, a.astype(np.float32), valid, labels, surf))
    return cases


def score_implants(cases: list[ImplantCase], flags: dict[str, np.ndarray], min_px: int = MIN_OBJECT_PX,
                   cover: float = OBJECT_COVER) -> dict:
    """Recall per surface of implants ≥ min_px (found: ≥ `cover` of it flagged) and false alarms
    outside implants (dilated by 2 px) in ha per km²."""
    found: dict[str, list[int]] = {s: [0, 0] for s in (*SURFACES, "sim_spectra")}
    fa_px, seen_px = 0, 0
    for case in cases:
        flagged = flags[case.name] & case.valid
        comp, _ = ndimage.label(case.surfaces > 0, structure=np.ones((3, 3), bool))
        for k, sl in enumerate(ndimage.find_objects(comp), start=1):
            obj = comp[sl] == k
            if obj.sum() < min_px:
                continue
            s_idx = int(np.bincount(case.surfaces[sl][obj]).argmax())
            name = "sim_spectra" if s_idx == len(SURFACES) + 1 else SURFACES[s_idx - 1]
            found[name][1] += 1
            found[name][0] += int(flagged[sl][obj].mean() >= cover)
        outside = flagged & ~ndimage.binary_dilation(case.surfaces > 0, iterations=2)
        fa_px += int(outside.sum())
        seen_px += int(case.valid.sum())
    km2 = seen_px * 1e-4
    recall = {s: {"found": f, "implanted": t, "recall": round(f / t, 3) if t else None} for s, (f, t) in found.items()}
    tot_f = sum(f for f, _ in found.values())
    tot_t = sum(t for _, t in found.values())
    return {"per_surface": recall, "all": round(tot_f / max(tot_t, 1), 3),
            "false_alarm_ha_per_km2": round(fa_px * 0.01 / km2, 3)}


def implanted_pairs(detectors: list[str], folder: Path, pairs: dict[str, Background], bank: TextureBank,
                    out: Path, progress: bool = True) -> pd.DataFrame:
    """Implant recall per surface and false alarms outside the implants, per detector and the CVA
    floor, on same-image pairs of `pairs` (read from `folder`) written as GeoTIFFs and run through
    `detect`."""
    cases = implant_cases(pairs, bank)
    flags: dict[str, dict[str, np.ndarray]] = {CVA: {}, **{d: {} for d in detectors}}
    for case in tqdm(cases, desc="implanted pairs", unit="pair", disable=not progress):
        work = out / case.name
        work.mkdir(parents=True, exist_ok=True)
        template = Path(folder) / case.name / "before.tif"
        before = _write_like(work / "before.tif", case.before, template)
        after = _write_like(work / "after.tif", case.after, template)
        flags[CVA][case.name] = cva_flags(case.before, case.after, case.valid)
        for det in detectors:
            flags[det][case.name] = detect_flags(det, before, after, work / detector_label(det))
    rows = []
    for det, by_case in flags.items():
        scores = score_implants(cases, by_case)
        rows.append({"detector": det, **{s: v["recall"] for s, v in scores["per_surface"].items()},
                     "all": scores["all"], "false_alarm_ha_per_km2": scores["false_alarm_ha_per_km2"]})
    return pd.DataFrame(rows)


def evaluation_bank(pairs: dict[str, Background], cities: list[LabelledPair]) -> TextureBank:
    """Real surfaces cut from images no model trained on: the held-out pairs and held-out cities."""
    images = [(a, v) for _, a, v in pairs.values()] + [(c.after, c.valid) for c in cities]
    return TextureBank.build(images, cities, np.random.default_rng(7))
