import xml.etree.ElementTree as ET

import numpy as np
import rasterio
from affine import Affine
from shapely.geometry import box

from pipeline.detection.probabilities import PROBABILITY_NODATA, PROBABILITY_SCALE
from pipeline.detection.vectorize import COLUMNS as DETECTION_COLUMNS
from pipeline.inputs.grid import Cell
from pipeline.inputs.permits import PERMIT_FIELDS
from pipeline.leads.overlay import LEAD_SCHEMA
from pipeline.outputs.mosaic import style_sidecar, write_probability_mosaics
from pipeline.outputs.qgis_style import (
    CELL_STATUS_COLOURS,
    default_styles,
    field_aliases,
    probability_style_qml,
)

LAYER_COLUMNS = {
    "leads": [*LEAD_SCHEMA, "evidence"],
    "detections": [*DETECTION_COLUMNS, "area_m2", "status", "lead_id"],
    "permits": [*PERMIT_FIELDS, "source_file", "issues", "src_许可证号", "src_permit_id"],
    "aoi": ["source_file"],
    "cells": ["cell_id", "epsg", "status", "reason", "detections", "unobserved_pixels", "arithmetic"],
    "run": ["key", "value"],
}


def _root(qml: str) -> ET.Element:
    assert qml.startswith("<!DOCTYPE qgis")
    return ET.fromstring(qml.split("\n", 1)[1])


def _fills(root: ET.Element) -> list[dict[str, str]]:
    return [{o.get("name"): o.get("value") for o in layer.iter("Option") if o.get("name")}
            for layer in root.iter("layer") if layer.get("class") == "SimpleFill"]


def test_every_column_eoleads_writes_has_a_chinese_alias_unique_in_its_layer():
    for layer, columns in LAYER_COLUMNS.items():
        aliases = field_aliases(columns)
        assert set(aliases) == set(columns), f"{layer}: no alias for {set(columns) - set(aliases)}"
        assert len(set(aliases.values())) == len(aliases), f"{layer}: two columns share an alias"
    assert field_aliases(["lead_id", "category_zh", "reason_zh", "area_mu", "permit_notes_zh"]) == {
        "lead_id": "线索编号", "category_zh": "类别", "reason_zh": "原因", "area_mu": "面积（亩）",
        "permit_notes_zh": "许可说明"}
    assert field_aliases(["src_许可证号"]) == {"src_许可证号": "原表：许可证号"}


def test_each_layer_style_parses_and_names_every_field_in_chinese():
    styles = default_styles({k: v for k, v in LAYER_COLUMNS.items() if k != "run"})
    assert set(styles) == {"leads", "detections", "permits", "aoi", "cells"}
    for layer, qml in styles.items():
        root = _root(qml)
        aliases = {a.get("field"): a.get("name") for a in root.find("aliases")}
        assert aliases == field_aliases(LAYER_COLUMNS[layer])
        assert "Fields" in root.get("styleCategories")
    assert _root(styles["leads"]).find("renderer-v2").get("attr") == "category"


def test_aoi_and_cells_are_outlines_that_hide_nothing():
    styles = default_styles({"aoi": ["source_file"], "cells": ["status"], "leads": ["category"]})
    for layer in ("aoi", "cells"):
        fills = _fills(_root(styles[layer]))
        assert fills and all(f["style"] == "no" for f in fills), layer
    assert all(f["style"] == "solid" for f in _fills(_root(styles["leads"])))


def test_cells_are_coloured_by_status_and_other_statuses_still_drawn():
    root = _root(default_styles({"cells": ["status"]})["cells"])
    renderer = root.find("renderer-v2")
    assert renderer.get("type") == "categorizedSymbol" and renderer.get("attr") == "status"
    values = [c.get("value") for c in renderer.iter("category")]
    assert values == [*CELL_STATUS_COLOURS, ""]  # "" is QGIS's "all other values"
    colours = {f["outline_color"] for f in _fills(root)}
    assert len(colours) == len(values)


def test_probability_style_is_a_0_to_1_ramp_on_the_chosen_band_with_nodata_transparent():
    renderer = _root(probability_style_qml(band=3)).find("pipe/rasterrenderer")
    assert renderer.get("type") == "singlebandpseudocolor" and renderer.get("band") == "3"
    shader = renderer.find("rastershader/colorrampshader")
    assert shader.get("clip") == "1"  # 255 (no data) lies above the ramp and is not drawn
    items = list(shader)
    assert [float(i.get("value")) for i in (items[0], items[-1])] == [0, PROBABILITY_SCALE]
    assert [i.get("label") for i in (items[0], items[-1])] == ["0", "1"]
    assert PROBABILITY_NODATA > PROBABILITY_SCALE


def test_each_probability_vrt_has_a_qgis_style_beside_it(tmp_path):
    cell = Cell(epsg=32650, col=50, row=543, size_px=4, resolution=10.0, aoi_part=box(0, 0, 1, 1))
    folder = tmp_path / "cells" / cell.id
    folder.mkdir(parents=True)
    with rasterio.open(folder / "probabilities.tif", "w", driver="GTiff", width=4, height=4, count=2, dtype="uint8",
                       crs="EPSG:32650", transform=Affine(10, 0, 2000, 0, -10, 21760), nodata=255) as dst:
        dst.write(np.full((2, 4, 4), 125, "uint8"))
    [vrt] = write_probability_mosaics(tmp_path, [cell], ("mine", "road"))
    qml = style_sidecar(vrt)
    assert qml == tmp_path / "probabilities_32650.qml"
    assert _root(qml.read_text(encoding="utf-8")).find("pipe/rasterrenderer").get("type") == "singlebandpseudocolor"
    with rasterio.open(vrt) as src:  # the VRT itself is unchanged by its style
        assert src.count == 2 and src.read(1)[0, 0] == 125
