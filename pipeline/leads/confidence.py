"""How sure a lead is (置信度 低/中/高), from three signals that fail in different ways.

- The category probability (`p_mean`) is what drew the lead, but a single model can be sure
  and wrong (haze, a phenology shift, a field ploughed the year before).
- A change seen again and again is real: each cloud-free acquisition of the monitoring window
  is read on its own, and it *confirms* the lead when most of the lead's clear pixels look
  more like the after composite than like the before composite (Euclidean distance over the
  reflectance bands). An acquisition counts as clear when at least `CLEAR_SHARE` of the lead's
  pixels are neither cloud, shadow, snow nor no-data. This is how GFW's integrated alerts and
  DIST-ALERT grade alerts: one anomaly is a candidate, repeated ones a confirmed disturbance.
- The detector's class-agnostic any-change output (`other`) agrees when its mean over the lead
  reaches its own decision threshold: a category probability without any change underneath it
  is a label for nothing.

The score weighs the three (`WEIGHTS`), and the level is read off the score (`LEVELS`); the
rule, the thresholds and what each level asks of an investigator are in docs/confidence.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry
from tqdm import tqdm

from detectors.categories import OTHER_ID
from pipeline.config import Windows
from pipeline.detection.probabilities import PROBABILITY_NODATA, PROBABILITY_SCALE
from pipeline.leads.evidence import read_chip
from pipeline.sources import ImagerySource
from pipeline.sources.base import AcquisitionReader
from pipeline.sources.local import DamagedFileError
from pipeline.sources.scene import ReadGrid

#: An acquisition is clear over a lead when at least this share of the lead's pixels is seen.
CLEAR_SHARE = 0.5
#: A clear acquisition confirms the lead when at least this share of its clear lead pixels is
#: closer to the after composite than to the before composite.
CONFIRM_SHARE = 0.5
#: Confirmations beyond this many add nothing more to the score.
CONFIRMATIONS_FULL = 3
#: Parts of the score: probability, confirmations (of CONFIRMATIONS_FULL), any-change agreement.
WEIGHTS = {"probability": 0.4, "confirmations": 0.4, "anychange": 0.2}
#: Lower bounds of the levels on the score, highest first.
LEVELS: tuple[tuple[float, str], ...] = ((0.75, "高"), (0.5, "中"), (0.0, "低"))
#: `confirmations` and `clear_acquisitions` where the source cannot hand out single acquisitions.
NOT_COUNTED = -1


@dataclass(frozen=True)
class Confirmations:
    """Of a lead's monitoring acquisitions: how many saw it clearly, and how many of those show its change."""

    confirmations: int
    clear_acquisitions: int


def acquisition_confirms(reflectance: np.ndarray, before: np.ndarray, after: np.ndarray,
                         pixels: np.ndarray) -> bool | None:
    """Whether one acquisition (bands, rows, cols; NaN where unseen) shows the change that the after
    composite shows against the before composite on `pixels`; None when it does not see enough of them."""
    clear = pixels & np.isfinite(reflectance).all(axis=0)
    if not pixels.any() or clear.sum() < CLEAR_SHARE * pixels.sum():
        return None
    r, b, a = reflectance[:, clear], before[:, clear], after[:, clear]
    nearer_after = np.linalg.norm(r - a, axis=0) < np.linalg.norm(r - b, axis=0)
    return bool(nearer_after.mean() >= CONFIRM_SHARE)


def count_confirmations(reads: list[tuple[date, np.ndarray]], before: np.ndarray, after: np.ndarray,
                        pixels: np.ndarray) -> Confirmations:
    """Confirming and clear acquisitions among `reads`; files of one date (neighbouring tiles) are one acquisition."""
    by_date: dict[date, np.ndarray] = {}
    for when, refl in reads:
        seen = by_date.get(when)
        by_date[when] = refl if seen is None else np.where(np.isfinite(seen), seen, refl)
    verdicts = [acquisition_confirms(refl, before, after, pixels) for refl in by_date.values()]
    return Confirmations(sum(v is True for v in verdicts), sum(v is not None for v in verdicts))


def lead_confirmations(lead_wgs84: BaseGeometry, source: AcquisitionReader, windows: Windows,
                       resolution: float = 10.0) -> Confirmations:
    """The monitoring acquisitions that see and confirm one lead, on the grid of its evidence image."""
    chip = read_chip(lead_wgs84, source, windows, resolution)
    if chip is None:
        return Confirmations(0, 0)
    outline = gpd.GeoSeries([lead_wgs84], crs="EPSG:4326").to_crs(chip.crs).iloc[0]
    pixels = chip.grid.mask([outline]) & chip.before.valid & chip.after.valid
    try:
        reads = source.acquisition_reads(chip.grid, windows.monitoring)
    except DamagedFileError:  # its cells are reported as failed; an unreadable date confirms nothing
        return Confirmations(0, 0)
    return count_confirmations(reads, chip.before.reflectance, chip.after.reflectance, pixels)


def anychange_means(leads: gpd.GeoDataFrame, mosaics: list[Path]) -> np.ndarray:
    """Mean any-change probability over each lead's pixels in the run's probability mosaics (one per
    UTM zone; a lead across a zone boundary takes its pixels from both); NaN where none was seen."""
    total, count = np.zeros(len(leads)), np.zeros(len(leads))
    for path in mosaics:
        with rasterio.open(path) as src:
            band = list(src.descriptions).index(OTHER_ID) + 1
            t = src.transform
            for i, geom in enumerate(leads.geometry.to_crs(src.crs)):
                minx, miny, maxx, maxy = geom.bounds
                c0, r0 = max(math.floor((minx - t.c) / t.a), 0), max(math.floor((maxy - t.f) / t.e), 0)
                c1, r1 = min(math.ceil((maxx - t.c) / t.a), src.width), min(math.ceil((miny - t.f) / t.e), src.height)
                if c1 <= c0 or r1 <= r0:
                    continue
                window = Window(c0, r0, c1 - c0, r1 - r0)
                values = src.read(band, window=window)
                grid = ReadGrid(str(src.crs), src.window_transform(window), c1 - c0, r1 - r0)
                seen = grid.mask([geom]) & (values != PROBABILITY_NODATA)
                total[i] += values[seen].sum(dtype=float) / PROBABILITY_SCALE
                count[i] += seen.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def confidence_score(p_mean: np.ndarray, confirmations: np.ndarray, anychange_agrees: np.ndarray) -> np.ndarray:
    """0..1: the weighted probability, share of CONFIRMATIONS_FULL confirmations and any-change agreement."""
    confirmed = np.clip(np.asarray(confirmations, dtype=float), 0, CONFIRMATIONS_FULL) / CONFIRMATIONS_FULL
    return (WEIGHTS["probability"] * np.asarray(p_mean, dtype=float) + WEIGHTS["confirmations"] * confirmed
            + WEIGHTS["anychange"] * np.asarray(anychange_agrees, dtype=float))


def confidence_level(score: np.ndarray) -> np.ndarray:
    """低/中/高 for each score."""
    return np.array([next(level for floor, level in LEVELS if s >= floor) for s in np.asarray(score)], dtype=object)


def assess_confidence(leads: gpd.GeoDataFrame, source: ImagerySource, windows: Windows, mosaics: list[Path],
                      anychange_threshold: float | None, resolution: float = 10.0,
                      progress: bool = True) -> tuple[gpd.GeoDataFrame, list[str]]:
    """The leads with their confidence columns filled, and a note for each signal that could not be read.

    `mosaics` are the run's probability VRTs; `anychange_threshold` is the run's decision threshold
    for `other`, None where the run left `other` out (its band is then all zeros, and says nothing).
    """
    notes = []
    reader = source if isinstance(source, AcquisitionReader) else None
    if reader is None:
        named = getattr(source, "inner", source)  # the source itself, not the composites kept of it
        notes.append(f"WARNING: the {type(named).__name__} source hands out no single acquisitions: the "
                     f"acquisitions confirming each lead were not counted ({NOT_COUNTED}); confidence rests on "
                     "probability and any-change agreement, and reaches 中 at most")
    counts = [Confirmations(NOT_COUNTED, NOT_COUNTED)] * len(leads)
    if reader is not None and len(leads):
        wgs84 = leads.geometry.to_crs("EPSG:4326")
        counts = [lead_confirmations(g, reader, windows, resolution)
                  for g in tqdm(wgs84, desc="confidence", unit="lead", disable=not progress)]
    if anychange_threshold is None:
        notes.append(f"'{OTHER_ID}' is not among the run's categories: the any-change output was not read, and no "
                     "lead's confidence counts its agreement")
        means = np.full(len(leads), np.nan)
    else:
        means = anychange_means(leads, mosaics)
    agrees = means >= anychange_threshold if anychange_threshold is not None else np.zeros(len(leads), dtype=bool)
    confirmations = np.array([c.confirmations for c in counts], dtype="int64")
    score = confidence_score(leads.p_mean.to_numpy(dtype=float), confirmations, agrees)
    return leads.assign(confidence=confidence_level(score), confidence_score=score.round(3),
                        confirmations=confirmations,
                        clear_acquisitions=np.array([c.clear_acquisitions for c in counts], dtype="int64"),
                        anychange_mean=means.round(3), anychange_agrees=agrees), notes
