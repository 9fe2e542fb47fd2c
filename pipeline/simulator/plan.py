"""What the simulator plants: changes of every category, their permits, and distractors.

Each planted change knows whether it should become a lead and why, so the pipeline's leads can
be scored against it. The permit scenarios cover what an investigator meets in practice: fully
permitted, partly covered, spilling past a licence boundary, expired, reclamation overdue,
permits of the wrong type, and permits where nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
from scipy import ndimage
from shapely import affinity
from shapely.geometry import Point, Polygon, box
from shapely.geometry.base import BaseGeometry

from detectors.categories import Zone, get_category
from pipeline.simulator.fields import SHAPES, blob, rectangle
from pipeline.simulator.landscape import Cover, Landscape
from pipeline.simulator.settings import SHAPE_CHOICES, SURFACE_CHOICES, SceneSettings


@dataclass(frozen=True)
class Timeline:
    """Acquisition dates of the two epochs (three acquisitions each, composited later)."""

    before: tuple[date, ...] = (date(2024, 7, 8), date(2024, 7, 28), date(2024, 8, 17))
    after: tuple[date, ...] = (date(2025, 7, 13), date(2025, 8, 2), date(2025, 8, 22))


@dataclass
class PlantedChange:
    """A change the simulator paints into the later window, and the lead it should give."""

    change_id: str
    category: str
    surface: str
    scenario: str
    expected_lead: bool
    expected_reason: str | None
    geometry: Polygon


@dataclass
class Permit:
    """A permit as the simulator writes it to the register."""

    permit_id: str
    permit_type: str
    holder: str
    valid_from: date | None
    valid_to: date | None
    reclaim_by: date | None
    geometry: BaseGeometry
    note: str


@dataclass
class Distractor:
    """A change that must not become a lead (lake level, drought, burn, fallow)."""

    kind: str
    surface: str | None
    geometry: BaseGeometry


# scenario -> (expected lead, expected reason)
SCENARIOS: dict[str, tuple[bool, str | None]] = {
    "no_permit": (True, "no_permit"),
    "wrong_type": (True, "no_permit"),
    "permitted": (False, None),
    "partly_covered": (True, "partly_covered"),
    "outside_boundary": (True, "outside_boundary"),
    "expired": (True, "expired"),
    "reclamation_overdue": (True, "reclamation_overdue"),
}

# category -> (shape, [(scenario, surface, where it is placed), ...])
_NP = "no_permit"
_PLANS: dict[str, tuple[str, tuple[tuple[str, str, str], ...]]] = {
    "temporary_land": ("rect", tuple((s, "gravel_yard", "open_steppe")
                                     for s in (_NP, _NP, _NP, "permitted", "reclamation_overdue"))),
    "forest": ("blob", tuple((s, "clearing", "forest") for s in (_NP, _NP, _NP, "permitted"))),
    "black_soil": ("rect", tuple((s, "subsoil", "cropland") for s in (_NP, _NP, _NP, "permitted"))),
    "river": ("blob", tuple((s, "sediment", "river") for s in (_NP, _NP, "permitted", "partly_covered"))),
    "grassland": ("blob", tuple((s, "plough", "open_steppe")
                                for s in (_NP, _NP, _NP, "permitted", "partly_covered", "wrong_type"))),
    "lake": ("rect", tuple((s, "fill", "lake_shore") for s in (_NP, _NP, _NP, "permitted"))),
    "wetland": ("blob", tuple((s, "steppe_soil", "wetland") for s in (_NP, _NP, _NP, "permitted"))),
    # coal pits grow next to the existing pit; rock quarries open anywhere in the steppe
    "mine": ("blob", ((_NP, "coal", "by_pit"), (_NP, "coal", "by_pit"), ("permitted", "rock_pit", "open_steppe"),
                      ("outside_boundary", "coal", "by_pit"), ("expired", "rock_pit", "open_steppe"))),
}

# a change of a zoned category lies wholly inside its zone, as the category's definition asks
_ZONE_OF = {"open_steppe": Zone.GRASSLAND, "forest": Zone.FOREST, "cropland": Zone.BLACK_SOIL, "river": Zone.RIVER,
            "lake_shore": Zone.LAKE, "wetland": Zone.WETLAND, "by_pit": Zone.GRASSLAND}

_HOLDERS = ("Hailar Gravel Co.", "Barag Construction Ltd.", "Jalainur Mining Co.",
            "Steppe Agriculture Coop.", "Hulun Roads Bureau", "Xinbarag Sand Works")


def _where_masks(land: Landscape) -> dict[str, np.ndarray]:
    cover = land.cover
    mining = land.zone_mask(Zone.MINING_DISTRICT)
    lake_zone = land.zone_mask(Zone.LAKE)
    river = land.zone_mask(Zone.RIVER)
    wetland = cover == Cover.WETLAND
    steppe = cover == Cover.STEPPE
    open_steppe = steppe & ~mining & ~lake_zone & ~river & ~ndimage.binary_dilation(wetland, iterations=20)
    pit = (cover == Cover.COAL_MINE)
    by_pit = ndimage.binary_dilation(pit, iterations=25) & ~ndimage.binary_dilation(pit, iterations=3) & steppe
    water = (cover == Cover.LAKE)
    shore = (lake_zone & ~ndimage.binary_erosion(water, iterations=3) & ~river
             & ~ndimage.binary_dilation(river, iterations=10))
    masks = {
        "open_steppe": ndimage.binary_erosion(open_steppe, iterations=15),
        "forest": ndimage.binary_erosion(cover == Cover.FOREST, iterations=15),
        "cropland": ndimage.binary_erosion(cover == Cover.CROPLAND, iterations=15),
        "river": (cover == Cover.RIVER) & ~lake_zone,
        "lake_shore": shore,
        "wetland": ndimage.binary_erosion(wetland & ~lake_zone & ~river, iterations=6),
        "by_pit": by_pit,
    }
    return {name: mask & land.inside for name, mask in masks.items()}


def _permit_dates(scenario: str, category: str, timeline: Timeline) -> tuple[date, date, date | None]:
    ongoing = get_category(category).time_rule.value == "ongoing"
    if scenario == "expired":
        return date(2019, 3, 1), date(2024, 3, 31), None
    if scenario == "reclamation_overdue":
        return date(2021, 5, 1), date(2023, 4, 30), date(2024, 4, 30)
    if ongoing:
        return date(2024, 4, 1), date(2027, 3, 31), date(2028, 3, 31)
    # one-off works: valid over the change, already closed at the later date
    return timeline.before[-1].replace(month=9, day=1), timeline.after[0].replace(month=6, day=30), None


def plan_changes(land: Landscape, rng: np.random.Generator, timeline: Timeline = Timeline(),
                 settings: SceneSettings | None = None
                 ) -> tuple[list[PlantedChange], list[Permit], list[Distractor]]:
    """Place every planned change without overlap, with the permits that go with it."""
    settings = settings or SceneSettings()
    grid = land.grid
    masks = _where_masks(land)
    taken: list[BaseGeometry] = []
    changes: list[PlantedChange] = []
    permits: list[Permit] = []

    def place(where: str, make, area: float) -> Polygon:
        mask = masks[where]
        zone = land.zones.get(_ZONE_OF[where])
        rows, cols = np.nonzero(mask)
        if rows.size == 0:
            raise ValueError(f"no room in the simulated landscape for '{where}'")
        for _ in range(400):
            i = rng.integers(rows.size)
            geom = make(grid.xy(rows[i], cols[i]), area, rng)
            inside = zone is None or geom.within(zone.buffer(10))
            if inside and not any(geom.buffer(150).intersects(t) for t in taken):
                taken.append(geom)
                return geom
        raise ValueError(f"could not place a change in '{where}' without overlap; enlarge the AOI")

    for category, (shape, plan) in _PLANS.items():
        if not all(masks[where].any() for _, _, where in plan):
            continue  # the landscape has no such place (no lake shore far from the lake)
        make = SHAPES[shape]
        for k, (scenario, surface, where) in enumerate(plan):
            area = float(rng.uniform(*settings.change_size) * max(get_category(category).min_area_m2, 5000))
            if scenario in ("partly_covered", "outside_boundary"):
                area *= 3.0  # what the permit leaves uncovered must still exceed the mapping unit
            if settings.varied_surfaces:
                surface = str(rng.choice(SURFACE_CHOICES[category]))
                make = SHAPES[str(rng.choice(SHAPE_CHOICES[category]))]
            geom = place(where, make, area)
            lead, reason = SCENARIOS[scenario]
            cid = f"{get_category(category).code}{k + 1:02d}"
            changes.append(PlantedChange(cid, category, surface, scenario, lead, reason, geom))
            permit = _permit_for(cid, category, scenario, geom, rng, timeline)
            if permit is not None:
                permits.append(permit)

    for k, ptype in enumerate(("construction", "grassland_use", "sand_mining")):
        geom = place("open_steppe", rectangle, float(rng.uniform(2e4, 5e4)))
        # the second idle permit comes without its end date, as registers have: it can exempt nothing
        vt = None if k == 1 else date(2027, 3, 31)
        permits.append(Permit(f"P-IDLE{k + 1}", ptype, _HOLDERS[k], date(2024, 4, 1), vt, None, geom,
                              "approved, nothing built yet"))
    return changes, permits, _distractors(land, masks, taken, rng)


def _permit_for(cid: str, category: str, scenario: str, geom: Polygon, rng: np.random.Generator,
                timeline: Timeline) -> Permit | None:
    if scenario == "no_permit":
        return None
    ptype = get_category(category).exempting_permits[0].value
    if scenario == "wrong_type":
        ptype = "construction" if category != "black_soil" else "grassland_use"
    vf, vt, rb = _permit_dates(scenario, category, timeline)
    footprint = geom.buffer(30)
    if scenario in ("partly_covered", "outside_boundary"):
        share = 0.35 if scenario == "partly_covered" else 0.65
        minx, miny, maxx, maxy = footprint.bounds
        cut = box(minx, miny, minx + share * (maxx - minx), maxy)
        footprint = footprint.intersection(cut)
    footprint = affinity.rotate(footprint, float(rng.uniform(-2, 2)), origin=geom.centroid)
    holder = _HOLDERS[int(rng.integers(len(_HOLDERS)))]
    return Permit(f"P-{cid}", ptype, holder, vf, vt, rb, footprint, scenario)


def _distractors(land: Landscape, masks: dict[str, np.ndarray], taken: list[BaseGeometry],
                 rng: np.random.Generator) -> list[Distractor]:
    """Changes that are not leads: lake level, drought, a burn scar, fallow parcels."""
    grid = land.grid
    out: list[Distractor] = []

    def free_point(mask: np.ndarray) -> tuple[float, float]:
        rows, cols = np.nonzero(mask)
        for _ in range(400):
            i = rng.integers(rows.size)
            xy = grid.xy(rows[i], cols[i])
            if not any(t.distance(Point(xy)) < 400 for t in taken):
                return xy
        return grid.xy(rows[0], cols[0])

    water = land.cover == Cover.LAKE
    ring = water & ~ndimage.binary_erosion(water, iterations=12, border_value=1) & land.inside
    if ring.any():
        shore_pt = free_point(ring & ~land.zone_mask(Zone.RIVER))
        near = grid.rasterize(affinity.translate(blob((0, 0), 2.5e6, rng), *shore_pt))
        out.append(Distractor("lake_level", "mud", grid.vectorize(ring & near)))
    burn = blob(free_point(masks["open_steppe"]), float(rng.uniform(8e4, 1.5e5)), rng)
    taken.append(burn)
    out.append(Distractor("burn_scar", "char", burn))
    drought = blob(free_point(masks["open_steppe"]), 4e6, rng)
    out.append(Distractor("drought", "dry_grass", drought))
    crop_rows, crop_cols = np.nonzero(land.cover == Cover.CROPLAND)
    parcel_ids = np.unique(land.patches[crop_rows, crop_cols])
    fallow = rng.choice(parcel_ids, size=min(4, parcel_ids.size), replace=False)
    fallow_geom = grid.vectorize(np.isin(land.patches, fallow) & (land.cover == Cover.CROPLAND))
    out.append(Distractor("fallow", "black_soil", fallow_geom))
    return out
