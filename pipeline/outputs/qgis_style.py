"""QGIS styles stored inside the GeoPackage, so the leads open coloured by category and labelled.

QGIS reads a table named `layer_styles` in a GeoPackage and applies the row marked
`useAsDefault` to the layer it names. The colours are those of the overview map.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

import pandas as pd

from detectors.categories import CATEGORIES


def _option(name: str, value: str) -> str:
    return f'<Option type="QString" name={quoteattr(name)} value={quoteattr(value)}/>'


def _fill_symbol(name: str, rgb: tuple[int, ...], fill_alpha: int, outline_mm: float) -> str:
    r, g, b = rgb
    options = "".join(_option(k, v) for k, v in (
        ("color", f"{r},{g},{b},{fill_alpha}"), ("outline_color", f"{r},{g},{b},255"),
        ("outline_style", "solid"), ("outline_width", str(outline_mm)), ("outline_width_unit", "MM"),
        ("style", "solid"), ("joinstyle", "miter")))
    return (f'<symbol type="fill" name={quoteattr(name)} alpha="1" clip_to_extent="1" force_rhr="0">'
            f'<layer class="SimpleFill" enabled="1" locked="0" pass="0"><Option type="Map">{options}</Option>'
            "</layer></symbol>")


def category_style_qml(field: str = "category", label_field: str | None = "lead_id", fill_alpha: int = 90) -> str:
    """A categorised fill style on `field` for the eight categories, labelled with `label_field`."""
    categories = "".join(f'<category symbol="{i}" value={quoteattr(c.id)} label={quoteattr(c.label)} render="true"/>'
                         for i, c in enumerate(CATEGORIES))
    symbols = "".join(_fill_symbol(str(i), c.colour, fill_alpha, 0.6) for i, c in enumerate(CATEGORIES))
    labeling = ""
    if label_field:
        labeling = ('<labeling type="simple"><settings calloutType="simple">'
                    f'<text-style fieldName={quoteattr(label_field)} isExpression="0" fontSize="8" '
                    'fontSizeUnit="Point" textColor="0,0,0,255" textOpacity="1"/>'
                    '<text-buffer bufferDraw="1" bufferSize="0.8" bufferSizeUnits="MM" bufferColor="255,255,255,255" '
                    'bufferOpacity="1"/><placement placement="1" dist="0" priority="5"/>'
                    "</settings></labeling>")
    return ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
            f'<qgis version="3.28.0" styleCategories="Symbology|Labeling" labelsEnabled="{int(bool(label_field))}">'
            f'<renderer-v2 type="categorizedSymbol" attr={quoteattr(field)} symbollevels="0" enableorderby="0" '
            f'forceraster="0"><categories>{categories}</categories><symbols>{symbols}</symbols></renderer-v2>'
            f"{labeling}</qgis>\n")


def layer_styles(styles: dict[str, str], geometry_column: str = "geom") -> pd.DataFrame:
    """The `layer_styles` table QGIS looks for: one default style per layer name."""
    rows = [{"f_table_catalog": "", "f_table_schema": "", "f_table_name": layer, "f_geometry_column": geometry_column,
             "styleName": f"eoleads {layer}", "styleQML": qml, "styleSLD": "", "useAsDefault": True,
             "description": "written by eoleads", "owner": "", "ui": "", "update_time": pd.Timestamp.now(tz="UTC")}
            for layer, qml in styles.items()]
    return pd.DataFrame(rows)
