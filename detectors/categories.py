"""The one registry of change categories; every stage reads it instead of repeating a list."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Zone(StrEnum):
    """Context zones that decide where a category applies (see docs/categories.md)."""

    EVERYWHERE = "everywhere"
    FOREST = "forest"
    GRASSLAND = "grassland"
    BLACK_SOIL = "black_soil"
    RIVER = "river"
    LAKE = "lake"
    WETLAND = "wetland"
    MINING_DISTRICT = "mining_district"


class PermitType(StrEnum):
    """Normalised permit types; real layers are mapped onto these in the run configuration."""

    TEMPORARY_LAND = "temporary_land"
    MINING = "mining"
    FOREST_USE = "forest_use"
    GRASSLAND_USE = "grassland_use"
    SAND_MINING = "sand_mining"
    CONSTRUCTION = "construction"
    WETLAND_USE = "wetland_use"


#: Permit types as a Chinese register names them (the demo's register uses these values).
PERMIT_TYPES_ZH: dict[str, str] = {
    PermitType.TEMPORARY_LAND.value: "临时用地", PermitType.MINING.value: "采矿许可",
    PermitType.FOREST_USE.value: "林地使用", PermitType.GRASSLAND_USE.value: "草原征占用",
    PermitType.SAND_MINING.value: "河道采砂", PermitType.CONSTRUCTION.value: "建设用地",
    PermitType.WETLAND_USE.value: "湿地占用"}


def permit_name_zh(permit_type: str, permit_id: str) -> str:
    """"临时用地许可 LS-2021-001": the type in Chinese, ending in 许可 once."""
    kind = PERMIT_TYPES_ZH.get(permit_type, permit_type)
    return f"{kind if kind.endswith('许可') else kind + '许可'} {permit_id}"


class TimeRule(StrEnum):
    """When a permit must be valid to exempt a change.

    EVENT: a one-off change (clearing, ploughing, filling) is exempt if the permit was valid at
    any time between the two observation windows. ONGOING: a use that continues (a mine, a
    yard, a sand pit) must still be allowed in the later window; temporary land is allowed
    until its reclamation deadline, other uses until the permit's end.
    """

    EVENT = "event"
    ONGOING = "ongoing"


@dataclass(frozen=True)
class Category:
    """What one change category is, where it applies and what exempts it."""

    id: str
    code: str
    name_en: str
    name_zh: str
    zone: Zone
    min_area_m2: float
    exempting_permits: tuple[PermitType, ...]
    time_rule: TimeRule
    signature: str
    #: False where the earlier image itself shows the zone (forest before, wet vegetation before),
    #: so the category can run without a zone layer; True where only a map can say (a river
    #: corridor, black-soil cropland, steppe rather than cropland, the lake's protection zone).
    needs_zone_layer: bool = False
    #: RGB of the category on maps, in QGIS styles and in evidence images.
    colour: tuple[int, int, int] = (127, 127, 127)

    @property
    def label(self) -> str:
        return f"{self.name_en} ({self.name_zh})"

    def unit_px(self, pixel_m: float) -> int:
        """The mapping unit in pixels of `pixel_m` metres."""
        return math.ceil(self.min_area_m2 / (pixel_m * pixel_m))


#: The eight categories a detector tells apart (and the simulator plants), in model-output order.
CLASSIFIED: tuple[Category, ...] = (
    Category(
        "temporary_land", "TL", "Unreclaimed temporary land", "临时用地未复垦",
        Zone.EVERYWHERE, 2000.0, (PermitType.TEMPORARY_LAND,), TimeRule.ONGOING,
        "vegetation to bright bare soil or gravel that persists in the later window",
        colour=(31, 119, 180),
    ),
    Category(
        "forest", "FO", "Forest encroachment", "林地侵占",
        Zone.FOREST, 3000.0, (PermitType.FOREST_USE,), TimeRule.EVENT,
        "NDVI and NBR drop while SWIR rises; dark burn scars are not clearing",
        colour=(255, 127, 14),
    ),
    Category(
        "black_soil", "BS", "Black soil damage", "破坏黑土地",
        Zone.BLACK_SOIL, 2000.0, (PermitType.CONSTRUCTION,), TimeRule.EVENT,
        "dark Mollisol or crop becomes bright subsoil, fill or a water-filled pit", needs_zone_layer=True,
        colour=(44, 160, 44),
    ),
    Category(
        "river", "RV", "River channel disturbance", "河道",
        Zone.RIVER, 1500.0, (PermitType.SAND_MINING,), TimeRule.ONGOING,
        "water or vegetated bars become bright bare sediment or spoil", needs_zone_layer=True,
        colour=(214, 39, 40),
    ),
    Category(
        "grassland", "GR", "Grassland destruction", "草原破坏",
        Zone.GRASSLAND, 3000.0, (PermitType.GRASSLAND_USE,), TimeRule.EVENT,
        "steppe (NDVI 0.3-0.6) to ploughed or dug bare soil; uniform drought browning is not",
        needs_zone_layer=True,
        colour=(148, 103, 189),
    ),
    Category(
        "lake", "LK", "Hulun Lake protection zone", "呼伦湖保护",
        Zone.LAKE, 1500.0, (PermitType.CONSTRUCTION,), TimeRule.EVENT,
        "new bright fill or construction at the shore; natural level change is not", needs_zone_layer=True,
        colour=(140, 86, 75),
    ),
    Category(
        "wetland", "WL", "Wetland damage", "湿地",
        Zone.WETLAND, 2000.0, (PermitType.WETLAND_USE,), TimeRule.EVENT,
        "wet water-vegetation mix becomes dry bare soil or fill",
        colour=(227, 119, 194),
    ),
    Category(
        "mine", "MN", "Mining outside licence", "矿场",
        Zone.EVERYWHERE, 3000.0, (PermitType.MINING,), TimeRule.ONGOING,
        "very bright rock or very dark coal surfaces with NDVI near 0",
        colour=(127, 127, 127),
    ),
)

#: A real change the evidence fits to no category, or whose category's zone is unknown, is never
#: dropped: it is reported as `other`. Any valid approval covering it exempts it, since what it
#: is, and so which approval it needs, is for a person to say.
OTHER = Category(
    "other", "OT", "Other land-surface change", "其他地表变化", Zone.EVERYWHERE, 5000.0, tuple(PermitType),
    TimeRule.EVENT, "a land-surface change that fits no category here, or whose category's zone is unknown",
    colour=(188, 189, 34),
)
OTHER_ID = OTHER.id

#: Everything a run can report: the classified categories, then `other`.
CATEGORIES: tuple[Category, ...] = (*CLASSIFIED, OTHER)
CATEGORY_IDS: tuple[str, ...] = tuple(c.id for c in CATEGORIES)
CLASSIFIED_IDS: tuple[str, ...] = tuple(c.id for c in CLASSIFIED)
_BY_ID = {c.id: c for c in CATEGORIES}


def get_category(category_id: str) -> Category:
    """Look a category up by id, with an error that lists the valid ids."""
    try:
        return _BY_ID[category_id]
    except KeyError:
        raise KeyError(
            f"unknown category {category_id!r}; valid categories: {', '.join(CATEGORY_IDS)}"
        ) from None

