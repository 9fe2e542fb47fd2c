"""Surface reflectances for the simulator, drawn from measured spectra.

Land surfaces come from the earthlib spectral library (7,261 spectra: ICRAF-ISRIC soils, ASD
field and laboratory spectra of built surfaces, char, bark and litter, PROSAIL canopies),
convolved to Sentinel-2 bands by earthlib's own resampler. Water is not in that library; its
values follow published Sentinel-2 reflectances of turbid inland lakes (see docs/simulator.md).
Every surface is a filter over the library, so each patch of a scene gets a different measured
spectrum, not one fixed colour per class.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from detectors.bands import REFLECTANCE_BANDS

_S2_BANDS_IN_EARTHLIB = ("B2", "B3", "B4", "B8", "B11", "B12")

#: Turbid, shallow steppe-lake water (Hulun Lake is eutrophic and turbid): B02..B12.
WATER_REFLECTANCE = np.array([0.060, 0.085, 0.070, 0.030, 0.012, 0.008], dtype=np.float32)
#: Thick cloud top, nearly flat and bright.
CLOUD_REFLECTANCE = np.array([0.62, 0.60, 0.60, 0.62, 0.45, 0.32], dtype=np.float32)


@dataclass(frozen=True)
class Surface:
    """A named filter over the spectral library (level-3 class and a brightness window)."""

    classes: tuple[str, ...]
    min_brightness: float = 0.0
    max_brightness: float = 1.0
    min_ndvi: float = -1.0
    max_ndvi: float = 1.0
    scale: float = 1.0  # moisture darkening or similar, applied after selection


SURFACES: dict[str, Surface] = {
    "forest": Surface(("canopy",), min_ndvi=0.82),
    "crop": Surface(("canopy",), min_ndvi=0.70, max_ndvi=0.85),
    "grass_green": Surface(("canopy",), min_ndvi=0.55, max_ndvi=0.80),
    "dry_grass": Surface(("litter", "npv")),
    "steppe_soil": Surface(("soil",), min_brightness=0.15, max_brightness=0.30, max_ndvi=0.2),
    "black_soil": Surface(("soil",), max_brightness=0.10),
    "subsoil": Surface(("soil",), min_brightness=0.30, max_brightness=0.50, max_ndvi=0.2),
    "plough": Surface(("soil",), min_brightness=0.11, max_brightness=0.18, max_ndvi=0.15, scale=0.8),
    "gravel_yard": Surface(("gravel", "dirt", "road"), min_brightness=0.19, max_brightness=0.30, max_ndvi=0.2),
    "fill": Surface(("sidewalk", "soil", "sand"), min_brightness=0.26, max_brightness=0.45, max_ndvi=0.2),
    "sediment": Surface(("sand", "soil"), min_brightness=0.22, max_brightness=0.40, max_ndvi=0.2),
    "rock_pit": Surface(("sidewalk", "sand", "soil"), min_brightness=0.38, max_ndvi=0.2),
    "coal": Surface(("gravel", "asphalt"), max_brightness=0.06),
    "built": Surface(("comp_shingle", "concrete_tile", "metal", "road", "parking_lot")),
    "char": Surface(("char",), max_brightness=0.10),
    "mud": Surface(("soil",), min_brightness=0.12, max_brightness=0.25, scale=0.55),
}


@lru_cache(maxsize=1)
def _library() -> tuple[np.ndarray, np.ndarray]:
    """All library spectra at the six Sentinel-2 bands, and their level-3 class names."""
    import earthlib

    s2 = earthlib.full_library.to_sensor(earthlib.sensors.Sentinel2)
    names = list(earthlib.sensors.Sentinel2.band_names)
    cols = [names.index(b) for b in _S2_BANDS_IN_EARTHLIB]
    data = np.clip(np.nan_to_num(s2.data[:, cols]), 0.0, 1.0).astype(np.float32)
    classes = s2.metadata["LEVEL_3"].to_numpy().astype(str)
    return data, classes


@cache
def surface_spectra(name: str) -> np.ndarray:
    """Every library spectrum that fits a surface, shaped (n, bands)."""
    surface = SURFACES[name]
    data, classes = _library()
    bright = data.mean(axis=1)
    nir, red = data[:, REFLECTANCE_BANDS.index("B08")], data[:, REFLECTANCE_BANDS.index("B04")]
    ndvi = (nir - red) / np.maximum(nir + red, 1e-6)
    keep = (
        np.isin(classes, surface.classes)
        & (bright >= surface.min_brightness)
        & (bright <= surface.max_brightness)
        & (ndvi >= surface.min_ndvi)
        & (ndvi <= surface.max_ndvi)
    )
    if not keep.any():
        raise ValueError(f"no library spectrum fits surface {name!r}: {surface}")
    return data[keep] * surface.scale


def draw(name: str, rng: np.random.Generator) -> np.ndarray:
    """One measured spectrum of a surface, chosen at random."""
    if name == "water":
        return WATER_REFLECTANCE * rng.uniform(0.85, 1.2)
    spectra = surface_spectra(name)
    return spectra[rng.integers(len(spectra))].copy()
