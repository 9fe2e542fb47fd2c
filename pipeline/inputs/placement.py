"""Coordinates that land where they should, and the likely mistake when they do not.

A layer whose numbers do not mean what its CRS says (Gauss-Krüger eastings without their zone
prefix, x and y swapped, metres labelled as degrees) reprojects to infinity or to another part
of the world without any error from GDAL or PROJ, and everything downstream quietly finds
nothing there. So geometries are checked after reprojection, and the diagnosis undoes the usual
mistakes one by one to name the one that puts the layer back where it belongs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry.base import BaseGeometry

from pipeline.errors import InputError
from pipeline.inputs.grid import utm_epsg

#: How far from the AOI a feature may lie and still belong to its region (a county or prefecture).
NEAR_KM = 150.0

#: CGCS2000 Gauss-Krüger CRSs by EPSG arithmetic: 3-degree zones 25-45 (with zone prefix) are
#: EPSG:4513-4533, their central meridians 75-135°E (no prefix) EPSG:4534-4554; 6-degree zones
#: 13-23 are EPSG:4491-4501, their central meridians EPSG:4502-4512.
_GK3_ZONES, _GK3_CM, _GK6_ZONES, _GK6_CM = 4513, 4534, 4491, 4502

#: What to check when none of the usual mistakes explains where a layer lands.
CHECK_CRS = ("check that the CRS the file declares (its .prj) is the one its coordinates are in and that x is the "
             "easting or longitude")


@dataclass(frozen=True)
class Cause:
    """What is likely wrong with a layer's coordinates, and what to do about it."""

    problem: str
    fix: str


def off_earth(geoms: gpd.GeoSeries) -> np.ndarray:
    """Which non-empty WGS84 geometries have coordinates that are not finite longitudes/latitudes."""
    b = geoms.bounds.to_numpy()
    with np.errstate(invalid="ignore"):
        on_earth = (np.isfinite(b).all(axis=1) & (b[:, 0] >= -180) & (b[:, 2] <= 180)
                    & (b[:, 1] >= -90) & (b[:, 3] <= 90))
    return ~on_earth


def distance_km(geoms: gpd.GeoSeries, near: BaseGeometry) -> np.ndarray:
    """Distance of each WGS84 geometry from `near` (WGS84) in km; infinite when off Earth."""
    out = np.full(len(geoms), np.inf)
    ok = ~off_earth(geoms)
    centre = near.centroid
    local = CRS.from_proj4(f"+proj=aeqd +lat_0={centre.y} +lon_0={centre.x} +datum=WGS84 +units=m")
    target = gpd.GeoSeries([near], crs="EPSG:4326").to_crs(local).iloc[0]
    if ok.any():
        out[ok] = geoms[ok].to_crs(local).distance(target).to_numpy() / 1000
    return out


def likely_cause(raw: gpd.GeoSeries, near: BaseGeometry | None = None) -> Cause | None:
    """The usual mistake that, undone, puts most of `raw` (non-empty, in its own CRS) on Earth.

    With `near` (WGS84) the geometries must also land within NEAR_KM of it, which tells apart
    mistakes that all land somewhere on Earth. None when no such mistake explains the numbers.
    """
    xy = shapely.get_coordinates(raw.representative_point().values)
    x, y = xy[:, 0], xy[:, 1]
    for cause, crs, cx, cy in _candidates(CRS(raw.crs), x, y, near):
        lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(cx, cy)
        points = gpd.GeoSeries.from_xy(lon, lat, crs="EPSG:4326")
        lands = ~off_earth(points) if near is None else distance_km(points, near) <= NEAR_KM
        if lands.mean() > 0.5:
            return cause
    crs = CRS(raw.crs)
    if crs.is_geographic and np.median(np.abs(x)) > 180:
        return Cause(f"the coordinates are not degrees (x is about {np.median(x):.0f}) but the layer says "
                     f"{_label(crs)}", "label the layer with the projected CRS it was made in (its .prj)")
    return None


def misplaced(path: Path, problem: str, raw: gpd.GeoSeries, near: BaseGeometry | None = None,
              fix: str = CHECK_CRS) -> InputError:
    """The error for a layer whose features (`raw`, in the layer's CRS) land where they should not,
    naming the likely mistake and its fix when one explains it, else `fix`."""
    cause = likely_cause(raw, near)
    if cause is None:
        return InputError(path, "geometry", problem, fix)
    return InputError(path, "geometry", f"{problem}: likely {cause.problem}", cause.fix)


def _candidates(crs: CRS, x: np.ndarray, y: np.ndarray, near: BaseGeometry | None
                ) -> Iterator[tuple[Cause, CRS, np.ndarray, np.ndarray]]:
    """The usual mistakes that fit these numbers, each with the coordinates as they were meant."""
    mx, my = float(np.median(np.abs(x))), float(np.median(np.abs(y)))
    easting = _false_easting(crs)
    if easting is not None and easting >= 1e6 and mx < 1e6:
        zone = int(easting // 1e6)
        yield (Cause(f"the eastings lack the zone prefix {zone}: {_label(crs)} expects eastings like "
                     f"{zone}500000, the file has about {mx:.0f}",
                     f"add {zone}000000 to the eastings, or label the layer "
                     f"{_label(_with_false_easting(crs, 500000))}"), crs, x + zone * 1e6, y)
    if easting is not None and easting < 1e6 and mx > 1e7:
        zone = int(mx // 1e6)
        yield (Cause(f"the eastings carry a zone prefix ({zone}) that {_label(crs)} does not expect",
                     f"label the layer {_label(_with_false_easting(crs, zone * 1e6 + easting))}, or remove "
                     "the prefix from the eastings"), crs, x - zone * 1e6, y)
    if crs.is_projected and mx <= 180 and my <= 90:
        yield (Cause(f"the coordinates are degrees of longitude and latitude but the layer says {_label(crs)}",
                     "label the layer EPSG:4490 (CGCS2000) or EPSG:4326 (WGS84), whichever it was made in"),
               CRS("EPSG:4490"), x, y)
    if crs.is_geographic and mx > 180:
        for guess in _projected_guesses(mx, near):
            yield (Cause(f"the coordinates are metres in a projected CRS, likely {_label(guess)}, but the layer "
                         f"says {_label(crs)}", f"label the layer with the CRS it was made in, likely {_label(guess)}"),
                   guess, x, y)
    first = "longitude" if crs.is_geographic else "easting"
    yield (Cause(f"x and y are swapped: the first coordinate must be the {first}",
                 f"swap the coordinates (QGIS: Processing > Swap X and Y coordinates) and keep {_label(crs)}"),
           crs, y, x)


def _projected_guesses(mx: float, near: BaseGeometry | None) -> list[CRS]:
    """Projected CRSs that metres in a layer near `near` were likely made in."""
    codes = []
    zone = int(mx // 1e6)
    if 25 <= zone <= 45:
        codes.append(_GK3_ZONES + zone - 25)
    elif 13 <= zone <= 23:
        codes.append(_GK6_ZONES + zone - 13)
    elif near is not None:
        lon, lat = near.centroid.x, near.centroid.y
        cm3, cm6 = 3 * round(lon / 3), 6 * round((lon + 3) / 6) - 3
        if 75 <= cm3 <= 135:
            codes.append(_GK3_CM + (cm3 - 75) // 3)
        if 75 <= cm6 <= 135:
            codes.append(_GK6_CM + (cm6 - 75) // 6)
        codes.append(utm_epsg(lon, lat))
    return [CRS.from_epsg(c) for c in codes]


def _false_easting(crs: CRS) -> float | None:
    """The false easting of a Transverse Mercator CRS (Gauss-Krüger, UTM), else None."""
    op = crs.coordinate_operation if crs.is_projected else None
    if op is None or op.method_name != "Transverse Mercator":
        return None
    return next((p.value for p in op.params if p.name == "False easting"), None)


def _with_false_easting(crs: CRS, easting: float) -> CRS:
    data = crs.to_json_dict()
    for param in data["conversion"]["parameters"]:
        if param["name"] == "False easting":
            param["value"] = easting
    made = CRS.from_json_dict(data)
    code = made.to_epsg()
    return CRS.from_epsg(code) if code else made


def _label(crs: CRS) -> str:
    code = crs.to_epsg()
    return f"EPSG:{code} ({crs.name})" if code else crs.name
