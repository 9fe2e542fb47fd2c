"""One virtual raster (GDAL VRT) per UTM zone over the cells' probability GeoTIFFs.

QGIS opens the VRT as one layer per zone without copying a pixel, so the probabilities of a
whole region can be inspected at any zoom while memory stays bounded by the cell. A QGIS style
beside each VRT (same name, .qml) draws it as probabilities 0 to 1, unseen pixels transparent.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from pyproj import CRS

from pipeline.atomic import atomic_path, write_text_atomic
from pipeline.detection.probabilities import PROBABILITY_NODATA
from pipeline.inputs.grid import Cell
from pipeline.outputs.qgis_style import probability_style_qml


def write_probability_mosaics(root: Path, cells: list[Cell], categories: tuple[str, ...]) -> list[Path]:
    """Write probabilities_<epsg>.vrt, and its style probabilities_<epsg>.qml, in `root` for every
    zone with finished cells; returns the VRTs' paths."""
    by_zone: dict[int, list[Cell]] = {}
    for cell in cells:
        if (root / "cells" / cell.id / "probabilities.tif").exists():
            by_zone.setdefault(cell.epsg, []).append(cell)
    paths = []
    for epsg, group in sorted(by_zone.items()):
        size, res = group[0].size_px, group[0].resolution
        c0, c1 = min(c.col for c in group), max(c.col for c in group)
        r0, r1 = min(c.row for c in group), max(c.row for c in group)
        width, height = (c1 - c0 + 1) * size, (r1 - r0 + 1) * size
        x0, y0 = c0 * size * res, (r1 + 1) * size * res
        bands = []
        for b, cat in enumerate(categories, start=1):
            sources = "".join(
                f'<SimpleSource><SourceFilename relativeToVRT="1">cells/{c.id}/probabilities.tif</SourceFilename>'
                f"<SourceBand>{b}</SourceBand>"
                f'<SrcRect xOff="0" yOff="0" xSize="{size}" ySize="{size}"/>'
                f'<DstRect xOff="{(c.col - c0) * size}" yOff="{(r1 - c.row) * size}" xSize="{size}" ySize="{size}"/>'
                f"</SimpleSource>\n" for c in group)
            bands.append(f'<VRTRasterBand dataType="Byte" band="{b}"><Description>{cat}</Description>'
                         f"<NoDataValue>{PROBABILITY_NODATA}</NoDataValue>\n{sources}</VRTRasterBand>")
        xml = (f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">\n'
               f"<SRS>{escape(CRS.from_epsg(epsg).to_wkt())}</SRS>\n"
               f"<GeoTransform>{x0}, {res}, 0, {y0}, 0, {-res}</GeoTransform>\n"
               + "\n".join(bands) + "\n</VRTDataset>\n")
        path = root / f"probabilities_{epsg}.vrt"
        with atomic_path(path) as tmp:
            tmp.write_text(xml, encoding="utf-8")
        write_text_atomic(style_sidecar(path), probability_style_qml())
        paths.append(path)
    return paths


def style_sidecar(raster: Path) -> Path:
    """Where QGIS looks for a raster's default style: beside it, same name, .qml."""
    return raster.with_suffix(".qml")
