"""The QGIS project stored inside the GeoPackage: open it and the layers are there, in order, styled.

QGIS lists the projects of a GeoPackage's `qgis_projects` table (name, metadata, content) in its
browser and opens them like a .qgz file: `content` is the zipped project (.qgz bytes) written as
hexadecimal text, `metadata` a small JSON (see QGIS's QgsGeoPackageProjectStorage). Layer sources
are relative to the GeoPackage, so the folder can be moved or copied as a whole.
"""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import escape, quoteattr

from pyproj import CRS

#: The project's name in `qgis_projects`; QGIS shows it under the GeoPackage in its browser.
PROJECT_NAME = "eoleads"


@dataclass(frozen=True)
class ProjectLayer:
    """One layer of the project: where its data is (relative to the GeoPackage) and its style."""

    id: str
    title: str
    source: str  # "./leads.gpkg|layername=leads" or "./probabilities_32650.vrt"
    crs: str | None  # anything pyproj reads; None when the data states none
    style_qml: str
    raster: bool = False
    visible: bool = True


def _srs(crs: str | None) -> str:
    if crs is None:
        return "<spatialrefsys/>"
    parsed = CRS.from_user_input(crs)
    authority = parsed.to_authority()
    authid = f"{authority[0]}:{authority[1]}" if authority else ""
    return (f"<spatialrefsys nativeFormat=\"Wkt\"><wkt>{escape(parsed.to_wkt())}</wkt>"
            f"<authid>{escape(authid)}</authid><description>{escape(parsed.name)}</description></spatialrefsys>")


def _style_body(qml: str) -> str:
    """The elements of a QGIS style document: a project's map layer holds the same ones."""
    root = ET.fromstring(qml.split("\n", 1)[1] if qml.startswith("<!DOCTYPE") else qml)
    return "".join(ET.tostring(child, encoding="unicode") for child in root)


def _map_layer(layer: ProjectLayer) -> str:
    kind = ('type="raster"' if layer.raster
            else 'type="vector" geometry="Polygon" wkbType="MultiPolygon"')
    provider = "gdal" if layer.raster else "ogr"
    return (f"<maplayer {kind}><id>{escape(layer.id)}</id><datasource>{escape(layer.source)}</datasource>"
            f"<layername>{escape(layer.title)}</layername><srs>{_srs(layer.crs)}</srs>"
            f'<provider encoding="UTF-8">{provider}</provider>{_style_body(layer.style_qml)}</maplayer>')


def _tree_layer(layer: ProjectLayer) -> str:
    checked = "Qt::Checked" if layer.visible else "Qt::Unchecked"
    return (f"<layer-tree-layer id={quoteattr(layer.id)} name={quoteattr(layer.title)} "
            f"source={quoteattr(layer.source)} providerKey=\"{'gdal' if layer.raster else 'ogr'}\" "
            f'checked="{checked}" expanded="0"><customproperties/></layer-tree-layer>')


def project_xml(layers: list[ProjectLayer], crs: str | None, extent: tuple[float, float, float, float],
                title: str = "eoleads 线索") -> str:
    """A QGIS project (.qgs text) showing `layers` top to bottom, in `crs`, zoomed to `extent`."""
    xmin, ymin, xmax, ymax = extent
    units = "degrees" if crs is not None and CRS.from_user_input(crs).is_geographic else "meters"
    return ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
            f'<qgis projectname={quoteattr(title)} version="3.28.0-Firenze">'
            f'<homePath path=""/><title>{escape(title)}</title><projectCrs>{_srs(crs)}</projectCrs>'
            f'<layer-tree-group><customproperties/>{"".join(_tree_layer(la) for la in layers)}'
            '<custom-order enabled="0">' + "".join(f"<item>{escape(la.id)}</item>" for la in layers)
            + "</custom-order></layer-tree-group>"
            f'<mapcanvas name="theMapCanvas" annotationsVisible="1"><units>{units}</units>'
            f"<extent><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></extent>"
            f"<rotation>0</rotation><destinationsrs>{_srs(crs)}</destinationsrs></mapcanvas>"
            f'<projectlayers>{"".join(_map_layer(la) for la in layers)}</projectlayers>'
            '<layerorder>' + "".join(f"<layer id={quoteattr(la.id)}/>" for la in layers) + "</layerorder>"
            '<properties><Paths><Absolute type="bool">false</Absolute></Paths></properties></qgis>\n')


def project_qgz(xml: str, name: str = PROJECT_NAME) -> bytes:
    """The project zipped as QGIS writes a .qgz: one `<name>.qgs` inside."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}.qgs", xml.encode("utf-8"))
    return buffer.getvalue()


def project_row(qgz: bytes, name: str = PROJECT_NAME) -> tuple[str, str, str]:
    """The `qgis_projects` row QGIS reads: name, metadata JSON and the .qgz as hexadecimal text."""
    metadata = {"last_modified_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "last_modified_user": "eoleads"}
    return name, json.dumps(metadata), qgz.hex()
