"""The land survey's classes (三调 and its annual updates): names, the zones they give, and the
class of the parcel a lead lies in.

A GIS office holds its land survey as parcels (地类图斑) with a land-class code (`DLBM`) and
name (`DLMC`) from GB/T 21010-2017 and the survey's working classification (工作分类), which
adds the wetland class 00 and suffixed codes (0301K 可调整乔木林地, 1104A 养殖坑塘). Codes are read
by longest prefix, so one rule for `03` covers every forest code and `0303` can still differ.
"""

from __future__ import annotations

from collections.abc import Mapping

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from detectors.categories import Zone

#: Every class of GB/T 21010-2017 and the 三调 working classification, by code.
LAND_CLASSES: dict[str, str] = {
    "00": "湿地", "01": "耕地", "02": "种植园用地", "03": "林地", "04": "草地", "05": "商业服务业用地",
    "06": "工矿用地", "07": "住宅用地", "08": "公共管理与公共服务用地", "09": "特殊用地", "10": "交通运输用地",
    "11": "水域及水利设施用地", "12": "其他土地",
    "0101": "水田", "0102": "水浇地", "0103": "旱地",
    "0201": "果园", "0201K": "可调整果园", "0202": "茶园", "0202K": "可调整茶园", "0203": "橡胶园",
    "0203K": "可调整橡胶园", "0204": "其他园地", "0204K": "可调整其他园地",
    "0301": "乔木林地", "0301K": "可调整乔木林地", "0302": "竹林地", "0302K": "可调整竹林地", "0303": "红树林地",
    "0304": "森林沼泽", "0305": "灌木林地", "0306": "灌丛沼泽", "0307": "其他林地", "0307K": "可调整其他林地",
    "0401": "天然牧草地", "0402": "沼泽草地", "0403": "人工牧草地", "0403K": "可调整人工牧草地", "0404": "其他草地",
    "0501": "零售商业用地", "0502": "批发市场用地", "0503": "餐饮用地", "0504": "旅馆用地", "0505": "商务金融用地",
    "0506": "娱乐用地", "0507": "其他商服用地", "0508": "物流仓储用地", "05H1": "商业服务业设施用地",
    "0601": "工业用地", "0602": "采矿用地", "0603": "盐田", "0604": "仓储用地",
    "0701": "城镇住宅用地", "0702": "农村宅基地",
    "0801": "机关团体用地", "0802": "新闻出版用地", "0803": "教育用地", "0804": "科研用地", "0805": "医疗卫生用地",
    "0806": "社会福利用地", "0807": "文化设施用地", "0808": "体育用地", "0809": "公用设施用地",
    "0810": "公园与绿地", "0810A": "广场用地", "08H1": "机关团体新闻出版用地", "08H2": "科教文卫用地",
    "08H2A": "高教用地",
    "0901": "军事设施用地", "0902": "使领馆用地", "0903": "监教场所用地", "0904": "宗教用地", "0905": "殡葬用地",
    "0906": "风景名胜设施用地",
    "1001": "铁路用地", "1002": "轨道交通用地", "1003": "公路用地", "1004": "城镇村道路用地",
    "1005": "交通服务场站用地", "1006": "农村道路", "1007": "机场用地", "1008": "港口码头用地", "1009": "管道运输用地",
    "1101": "河流水面", "1102": "湖泊水面", "1103": "水库水面", "1104": "坑塘水面", "1104A": "养殖坑塘",
    "1104K": "可调整养殖坑塘", "1105": "沿海滩涂", "1106": "内陆滩涂", "1107": "沟渠", "1107A": "干渠",
    "1108": "沼泽地", "1109": "水工建筑用地", "1110": "冰川及永久积雪",
    "1201": "空闲地", "1202": "设施农用地", "1203": "田坎", "1204": "盐碱地", "1205": "沙地", "1206": "裸土地",
    "1207": "裸岩石砾地",
}

#: The zone each code (or code prefix) gives; every other class gives none. Cropland is read as
#: black-soil cropland, as it is in the black-soil region (Hulunbuir's east); the survey's wetland
#: class 00 gathers codes of other first-level classes, which is why they are listed one by one.
SURVEY_ZONES: dict[str, Zone] = {
    "01": Zone.BLACK_SOIL,
    "03": Zone.FOREST,
    "04": Zone.GRASSLAND,
    "00": Zone.WETLAND, "0303": Zone.WETLAND, "0304": Zone.WETLAND, "0306": Zone.WETLAND, "0402": Zone.WETLAND,
    "0603": Zone.WETLAND, "1105": Zone.WETLAND, "1106": Zone.WETLAND, "1108": Zone.WETLAND,
    "1101": Zone.RIVER,
    "1102": Zone.LAKE,
    "0602": Zone.MINING_DISTRICT,
}

#: First-level classes: a column none of whose values starts with one holds no land-class codes.
FIRST_LEVEL = tuple(code for code in LAND_CLASSES if len(code) == 2)


def normalise_codes(values: pd.Series) -> pd.Series:
    """Codes as text the way the survey writes them: a number column (Excel drops the leading zero
    of 0301) gets its four digits back; blanks become ''."""
    if pd.api.types.is_numeric_dtype(values):
        whole = pd.to_numeric(values, errors="coerce").round().astype("Int64")
        return whole.astype("string").str.zfill(4).fillna("").astype(object)
    return values.astype("string").str.strip().str.upper().fillna("").astype(object)


def zone_of(code: str, overrides: Mapping[str, Zone | None] | None = None) -> Zone | None:
    """The zone of a land-class code by longest matching prefix, the overrides before the built-ins."""
    table = {**SURVEY_ZONES, **(overrides or {})}
    return next((table[code[:n]] for n in range(len(code), 0, -1) if code[:n] in table), None)


def is_land_class(code: str) -> bool:
    """Whether a value reads as a land-class code: a known first-level class, then digits or letters."""
    return code[:2] in FIRST_LEVEL and code.isascii() and code.isalnum()


def land_class_of(geoms: gpd.GeoSeries, parcels: gpd.GeoDataFrame | None) -> pd.DataFrame:
    """The `dlbm` and `dlmc` of the parcel covering most of each geometry; None where none touches
    it, or without a land survey (`parcels` None).

    Shares are compared in the parcels' CRS: within one lead the scale hardly varies, so the
    largest overlap is the largest on the ground too.
    """
    out = pd.DataFrame({"dlbm": np.full(len(geoms), None, dtype=object),
                        "dlmc": np.full(len(geoms), None, dtype=object)})
    if parcels is None or not len(geoms) or not len(parcels):
        return out
    where = geoms.to_crs(parcels.crs).to_numpy()
    lead, parcel = parcels.sindex.query(where, predicate="intersects")
    if not len(lead):
        return out
    share = shapely.area(shapely.intersection(where[lead], parcels.geometry.to_numpy()[parcel]))
    best = pd.DataFrame({"lead": lead, "parcel": parcel, "share": share}).sort_values(
        ["lead", "share"], ascending=[True, False], kind="stable").drop_duplicates("lead")
    rows = best.lead.to_numpy()
    out.loc[rows, "dlbm"] = parcels.dlbm.to_numpy()[best.parcel.to_numpy()]
    out.loc[rows, "dlmc"] = parcels.dlmc.to_numpy()[best.parcel.to_numpy()]
    return out
