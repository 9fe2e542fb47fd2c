"""QGIS styles stored inside the GeoPackage, so every layer opens coloured, labelled and with
Chinese field names.

QGIS reads a table named `layer_styles` in a GeoPackage and applies the row marked
`useAsDefault` to the layer it names. The leads' colours are those of the overview map; the AOI
and the cells are drawn as outlines so they never hide what lies under them. Each style carries
the Chinese alias of every field of its layer (`FIELD_ALIASES_ZH`), the column names stay English.
"""

from __future__ import annotations

from collections.abc import Iterable
from xml.sax.saxutils import quoteattr

import pandas as pd

from detectors.categories import CATEGORIES
from pipeline.detection.probabilities import PROBABILITY_SCALE
from pipeline.inputs.permits import ORIGINAL_PREFIX

#: The Chinese name an analyst sees for each column; unique within every layer (GeoPackage's
#: `gpkg_data_columns` requires it). Columns of the register kept as read are shown as 原表：<name>.
FIELD_ALIASES_ZH: dict[str, str] = {
    # leads
    "lead_id": "线索编号", "category": "类别代码", "category_zh": "类别", "category_en": "类别（英文）",
    "reason": "原因代码", "reason_zh": "原因", "dlbm": "地类编码", "dlmc": "地类名称", "status": "状态",
    "area_m2": "面积（平方米）", "area_ha": "面积（公顷）", "area_mu": "面积（亩）",
    "change_area_m2": "变化面积（平方米）", "permitted_m2": "许可覆盖面积（平方米）",
    "p_mean": "平均概率", "p_max": "最大概率", "permits_touched": "涉及许可",
    "permit_notes": "许可说明（英文）", "permit_notes_zh": "许可说明", "baseline_window": "基准期",
    "monitoring_window": "监测期", "before_dates": "前期影像日期", "after_dates": "后期影像日期",
    "detector": "检测方法", "lon": "经度", "lat": "纬度", "register_id": "台账编号", "register_note": "台账备注",
    "confidence": "置信度", "confidence_score": "置信度得分", "confirmations": "确认次数",
    "clear_acquisitions": "无云影像数", "anychange_mean": "通用变化平均概率", "anychange_agrees": "通用变化一致",
    "priority": "优先级得分", "priority_rank": "优先级排序", "priority_reasons": "优先级依据", "evidence": "证据图",
    # detections
    "cell_id": "格网编号", "n_px": "像元数", "touches_edge": "跨格网边界",
    # permits
    "permit_id": "许可编号", "permit_type": "许可类型", "holder": "持证单位", "valid_from": "生效日期",
    "valid_to": "到期日期", "reclaim_by": "复垦期限", "source_file": "来源文件", "issues": "问题",
    # cells
    "epsg": "投影（EPSG）", "detections": "检测数", "unobserved_pixels": "未观测像元数",
    "arithmetic": "运算精度",
    # run
    "key": "项目", "value": "值",
}


def field_aliases(columns: Iterable[str]) -> dict[str, str]:
    """The Chinese alias of each of `columns` that has one (the register's own columns included)."""
    aliases = {}
    for column in columns:
        if column in FIELD_ALIASES_ZH:
            aliases[column] = FIELD_ALIASES_ZH[column]
        elif column.startswith(ORIGINAL_PREFIX):
            aliases[column] = f"原表：{column.removeprefix(ORIGINAL_PREFIX)}"
    return aliases


def _option(name: str, value: str) -> str:
    return f'<Option type="QString" name={quoteattr(name)} value={quoteattr(value)}/>'


def _fill_symbol(name: str, rgb: tuple[int, ...], fill_alpha: int, outline_mm: float, brush: str = "solid",
                 outline_style: str = "solid") -> str:
    """A simple fill; `brush="no"` draws the outline only."""
    r, g, b = rgb
    options = "".join(_option(k, v) for k, v in (
        ("color", f"{r},{g},{b},{fill_alpha}"), ("outline_color", f"{r},{g},{b},255"),
        ("outline_style", outline_style), ("outline_width", str(outline_mm)), ("outline_width_unit", "MM"),
        ("style", brush), ("joinstyle", "miter")))
    return (f'<symbol type="fill" name={quoteattr(name)} alpha="1" clip_to_extent="1" force_rhr="0">'
            f'<layer class="SimpleFill" enabled="1" locked="0" pass="0"><Option type="Map">{options}</Option>'
            "</layer></symbol>")


def _aliases(aliases: dict[str, str]) -> str:
    items = "".join(f'<alias field={quoteattr(f)} index="{i}" name={quoteattr(a)}/>'
                    for i, (f, a) in enumerate(aliases.items()))
    return f"<aliases>{items}</aliases>"


def _qml(categories: str, body: str, aliases: dict[str, str] | None, labels: bool = False) -> str:
    """A QGIS style document; with `aliases`, the Fields category holds them."""
    if aliases:
        categories += "|Fields"
        body += _aliases(aliases)
    return ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
            f'<qgis version="3.28.0" styleCategories="{categories}" labelsEnabled="{int(labels)}">{body}</qgis>\n')


def _categorized(field: str, values: list[tuple[str, str]], symbols: list[str]) -> str:
    categories = "".join(f'<category symbol="{i}" value={quoteattr(v)} label={quoteattr(label)} render="true"/>'
                         for i, (v, label) in enumerate(values))
    return (f'<renderer-v2 type="categorizedSymbol" attr={quoteattr(field)} symbollevels="0" enableorderby="0" '
            f'forceraster="0"><categories>{categories}</categories><symbols>{"".join(symbols)}</symbols>'
            "</renderer-v2>")


def category_style_qml(field: str = "category", label_field: str | None = "lead_id", fill_alpha: int = 90,
                       aliases: dict[str, str] | None = None) -> str:
    """A categorised fill style on `field` for the eight categories, labelled with `label_field`."""
    renderer = _categorized(field, [(c.id, c.label) for c in CATEGORIES],
                            [_fill_symbol(str(i), c.colour, fill_alpha, 0.6) for i, c in enumerate(CATEGORIES)])
    labeling = ""
    if label_field:
        labeling = ('<labeling type="simple"><settings calloutType="simple">'
                    f'<text-style fieldName={quoteattr(label_field)} isExpression="0" fontSize="8" '
                    'fontSizeUnit="Point" textColor="0,0,0,255" textOpacity="1"/>'
                    '<text-buffer bufferDraw="1" bufferSize="0.8" bufferSizeUnits="MM" bufferColor="255,255,255,255" '
                    'bufferOpacity="1"/><placement placement="1" dist="0" priority="5"/>'
                    "</settings></labeling>")
    return _qml("Symbology|Labeling", renderer + labeling, aliases, labels=bool(label_field))


def single_style_qml(rgb: tuple[int, int, int], fill_alpha: int, outline_mm: float, brush: str = "solid",
                     aliases: dict[str, str] | None = None) -> str:
    """One symbol for every feature; `brush="no"` for an outline that hides nothing below it."""
    renderer = ('<renderer-v2 type="singleSymbol" symbollevels="0" enableorderby="0" forceraster="0"><symbols>'
                f'{_fill_symbol("0", rgb, fill_alpha, outline_mm, brush)}</symbols></renderer-v2>')
    return _qml("Symbology", renderer, aliases)


#: Cell outlines by status: looked at, not seen on both dates, failed (run again to retry).
CELL_STATUS_COLOURS: dict[str, tuple[tuple[int, int, int], str, str]] = {
    "done": ((26, 150, 65), "solid", "done 已完成"),
    "unobserved": ((253, 174, 97), "dash", "unobserved 未观测"),
    "failed": ((215, 25, 28), "solid", "failed 失败"),
}


def cell_status_style_qml(field: str = "status", aliases: dict[str, str] | None = None) -> str:
    """Cell outlines coloured by status, no fill; any other status (older runs' "skipped") in grey."""
    values = [(status, label) for status, (_, _, label) in CELL_STATUS_COLOURS.items()] + [("", "other 其他")]
    symbols = [_fill_symbol(str(i), rgb, 0, 0.4, "no", line)
               for i, (rgb, line, _) in enumerate(CELL_STATUS_COLOURS.values())]
    symbols.append(_fill_symbol(str(len(symbols)), (150, 150, 150), 0, 0.3, "no", "dot"))
    return _qml("Symbology", _categorized(field, values, symbols), aliases)


def probability_style_qml(band: int = 1) -> str:
    """A raster style for the stored probabilities (0..PROBABILITY_SCALE): a pseudocolour ramp from
    0 to 1 on `band`; no-data pixels (not seen on both dates) stay transparent."""
    ramp = ((0.0, "#ffffcc", 0), (0.25, "#fed976", 255), (0.5, "#fd8d3c", 255), (0.75, "#e31a1c", 255),
            (1.0, "#800026", 255))
    items = "".join(f'<item alpha="{alpha}" value="{p * PROBABILITY_SCALE:g}" label="{p:g}" color="{colour}"/>'
                    for p, colour, alpha in ramp)
    shader = (f'<colorrampshader colorRampType="INTERPOLATED" classificationMode="2" clip="1" minimumValue="0" '
              f'maximumValue="{PROBABILITY_SCALE}" labelPrecision="2">{items}</colorrampshader>')
    renderer = (f'<rasterrenderer type="singlebandpseudocolor" band="{band}" opacity="1" alphaBand="-1" '
                f'classificationMin="0" classificationMax="{PROBABILITY_SCALE}" nodataColor="">'
                '<rasterTransparency/><minMaxOrigin><limits>None</limits><extent>WholeRaster</extent>'
                "<statAccuracy>Estimated</statAccuracy></minMaxOrigin>"
                f"<rastershader>{shader}</rastershader></rasterrenderer>")
    pipe = (f'<pipe><provider><resampling enabled="false" maxOversampling="2"/></provider>{renderer}'
            '<brightnesscontrast brightness="0" contrast="0" gamma="1"/><huesaturation saturation="0" '
            'grayscaleMode="0" colorizeOn="0"/><rasterresampler maxOversampling="2"/></pipe>')
    return _qml("Symbology", pipe + "<blendMode>0</blendMode>", None)


def default_styles(columns: dict[str, list[str]]) -> dict[str, str]:
    """The style of each eoleads layer among `columns` (layer: its columns), with its aliases."""
    makers = {
        "leads": lambda a: category_style_qml(aliases=a),
        "detections": lambda a: category_style_qml(label_field=None, fill_alpha=40, aliases=a),
        "permits": lambda a: single_style_qml((44, 123, 182), 50, 0.4, aliases=a),
        "aoi": lambda a: single_style_qml((0, 0, 0), 0, 0.8, brush="no", aliases=a),
        "cells": lambda a: cell_status_style_qml(aliases=a),
    }
    return {layer: makers[layer](field_aliases(cols)) for layer, cols in columns.items() if layer in makers}


def layer_styles(styles: dict[str, str], geometry_column: str = "geom") -> pd.DataFrame:
    """The `layer_styles` table QGIS looks for: one default style per layer name."""
    rows = [{"f_table_catalog": "", "f_table_schema": "", "f_table_name": layer, "f_geometry_column": geometry_column,
             "styleName": f"eoleads {layer}", "styleQML": qml, "styleSLD": "", "useAsDefault": True,
             "description": "written by eoleads", "owner": "", "ui": "", "update_time": pd.Timestamp.now(tz="UTC")}
            for layer, qml in styles.items()]
    return pd.DataFrame(rows)


#: How QGIS writes NULL in a value map: choosing it clears the field.
_QGIS_NULL = "{2839923C-8B7D-419E-B84B-CA2FE9B80EC7}"


def _edit_widget(name: str, widget: str, options: str) -> str:
    return (f'<field name={quoteattr(name)}><editWidget type="{widget}"><config><Option type="Map">{options}'
            "</Option></config></editWidget></field>")


def value_map_style_qml(field: str, colours: dict[str, tuple[int, int, int]], value_maps: dict[str, tuple[str, ...]],
                        date_fields: tuple[str, ...] = (), read_only: list[str] | None = None) -> str:
    """A style for a layer people edit: a fill coloured by the values of `field`, a drop-down list
    (with an empty choice) for each field of `value_maps`, a calendar for `date_fields` (stored as
    yyyy-MM-dd text) and the `read_only` fields greyed out in the attribute form."""
    categories = "".join(f'<category symbol="{i}" value={quoteattr(v)} label={quoteattr(v)} render="true"/>'
                         for i, v in enumerate(colours))
    symbols = "".join(_fill_symbol(str(i), rgb, 90, 0.6) for i, rgb in enumerate(colours.values()))
    lists = {name: "".join(f'<Option type="Map">{_option(v, v)}</Option>' for v in values)
             + f'<Option type="Map">{_option("", _QGIS_NULL)}</Option>' for name, values in value_maps.items()}
    widgets = "".join(_edit_widget(name, "ValueMap", f'<Option type="List" name="map">{items}</Option>')
                      for name, items in lists.items())
    calendar = (_option("display_format", "yyyy-MM-dd") + _option("field_format", "yyyy-MM-dd")
                + '<Option type="bool" name="calendar_popup" value="true"/>'
                + '<Option type="bool" name="allow_null" value="true"/>')
    widgets += "".join(_edit_widget(name, "DateTime", calendar) for name in date_fields)
    editable = "".join(f'<field name={quoteattr(name)} editable="0"/>' for name in read_only or [])
    return ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
            '<qgis version="3.28.0" styleCategories="Symbology|Fields|Forms">'
            f'<renderer-v2 type="categorizedSymbol" attr={quoteattr(field)} symbollevels="0" enableorderby="0" '
            f'forceraster="0"><categories>{categories}</categories><symbols>{symbols}</symbols></renderer-v2>'
            f"<fieldConfiguration>{widgets}</fieldConfiguration><editable>{editable}</editable></qgis>\n")
