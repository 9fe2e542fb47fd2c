"""Change polygons against permits: what no valid, matching permit covers becomes a lead.

A permit exempts a change when its type is one the category accepts and it was valid at the
time the category's rule asks for (see `detectors.categories.TimeRule`). The lead keeps the
uncovered geometry, the permits it touched and why each did not exempt it. Leads are leads
(线索): places for a person to check, never findings of a violation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from detectors.categories import PermitType, TimeRule, get_category, permit_name_zh
from pipeline.config import Windows
from pipeline.detection.vectorize import EQUAL_AREA_CRS
from pipeline.inputs.land_survey import land_class_of

MU_M2 = 10000.0 / 15.0  # 1 亩 = 666.67 m²
REASONS_ZH = {"no_permit": "无许可", "expired": "许可已过期", "reclamation_overdue": "逾期未复垦",
              "outside_boundary": "超出许可范围", "partly_covered": "部分无许可"}
#: Temporary land must be reclaimed within a year of the approval's end when no deadline is given.
TEMPORARY_RECLAIM = timedelta(days=365)
#: Share of a change a valid permit must cover for the rest to read as spilling past its boundary.
OUTSIDE_BOUNDARY_SHARE = 0.5


@dataclass(frozen=True)
class PermitCheck:
    """One permit against one change: its status and the sentence an investigator reads, in English
    and in Chinese."""

    permit_id: str
    status: str  # valid, expired, reclamation_overdue, not_yet_valid, undated, wrong_type
    detail: str
    detail_zh: str


def check_permit(permit: pd.Series, category: str, windows: Windows) -> PermitCheck:
    """Whether one permit exempts a change of `category` observed in `windows`, and why not."""
    cat = get_category(category)
    pid, ptype = str(permit.permit_id), str(permit.permit_type)
    name = permit_name_zh(ptype, pid)
    if ptype not in {t.value for t in cat.exempting_permits}:
        return PermitCheck(pid, "wrong_type", f"{pid} ({ptype}): this type does not exempt {category}",
                           f"{name}：此类许可不能豁免{cat.name_zh}")
    start, end = permit.valid_from, permit.valid_to
    if start is None or end is None or pd.isna(start) or pd.isna(end):
        return PermitCheck(pid, "undated", f"{pid} ({ptype}): validity dates missing, cannot exempt",
                           f"{name}：登记中缺少有效日期，不能豁免任何变化")
    if start > windows.monitoring.end:
        return PermitCheck(pid, "not_yet_valid", f"{pid} ({ptype}): valid only from {start}, after the change",
                           f"{name}：自{start}起才生效，晚于监测期")
    if cat.time_rule is TimeRule.EVENT:
        if end < windows.baseline.start:
            return PermitCheck(pid, "expired", f"{pid} ({ptype}): expired {end}, before the change window",
                               f"{name}：有效期{start}至{end}，已于{end}到期，早于变化时段")
        return PermitCheck(pid, "valid", f"{pid} ({ptype}): valid {start} to {end}",
                           f"{name}：有效期{start}至{end}，其覆盖部分不计入线索")
    reclaim = permit.reclaim_by if permit.reclaim_by is not None and not pd.isna(permit.reclaim_by) else None
    allowed_until = end
    if ptype == PermitType.TEMPORARY_LAND.value:
        allowed_until = reclaim or (end if end == date.max else end + TEMPORARY_RECLAIM)
    if allowed_until >= windows.monitoring.start:
        return PermitCheck(pid, "valid", f"{pid} ({ptype}): valid {start} to {allowed_until}",
                           f"{name}：有效期{start}至{allowed_until}，其覆盖部分不计入线索")
    overdue = ptype == PermitType.TEMPORARY_LAND.value or (reclaim is not None and reclaim < windows.monitoring.start)
    if overdue:
        deadline = reclaim or allowed_until
        return PermitCheck(pid, "reclamation_overdue", f"{pid} ({ptype}): expired {end}, reclamation due {deadline}",
                           f"{name}：于{end}到期，复垦期限{deadline}已过")
    return PermitCheck(pid, "expired", f"{pid} ({ptype}): expired {end}, use continues after it",
                       f"{name}：有效期{start}至{end}，已于{end}到期，到期后仍在使用")


def lead_id(category: str, geom_wgs84: BaseGeometry, windows: Windows) -> str:
    """Same place, category and monitoring window give the same id in every run."""
    pt = geom_wgs84.representative_point()
    key = f"{category}|{pt.x:.4f}|{pt.y:.4f}|{windows.monitoring.start}|{windows.monitoring.end}"
    return f"{get_category(category).code}-{windows.monitoring.end.year}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def _fmt_window(start: date, end: date) -> str:
    return f"{start.isoformat()}/{end.isoformat()}"


#: The leads layer's columns and types, the same whether a run finds no lead or a thousand.
LEAD_SCHEMA: dict[str, str] = {
    "lead_id": "object", "category": "object", "category_zh": "object", "category_en": "object",
    "reason": "object", "reason_zh": "object", "dlbm": "object", "dlmc": "object", "status": "object",
    "area_m2": "float64", "area_ha": "float64", "area_mu": "float64", "change_area_m2": "float64",
    "permitted_m2": "float64", "p_mean": "float64", "p_max": "float64", "permits_touched": "object",
    "permit_notes": "object", "permit_notes_zh": "object", "baseline_window": "object",
    "monitoring_window": "object", "before_dates": "object", "after_dates": "object", "detector": "object",
    "lon": "float64", "lat": "float64", "register_id": "object", "register_note": "object",
    "confidence": "object", "confidence_score": "float64", "confirmations": "int64", "clear_acquisitions": "int64",
    "anychange_mean": "float64", "anychange_agrees": "bool", "priority": "float64", "priority_rank": "int64",
    "priority_reasons": "object",
}
LEAD_STATUS = "线索 lead: to be verified in the field"


def _permit_checks(changes: gpd.GeoDataFrame, perm: gpd.GeoDataFrame, windows: Windows) -> pd.DataFrame:
    """One row per (change, permit) that touch: the check's status and sentence, and the permit's geometry."""
    if not len(perm) or not len(changes):
        return pd.DataFrame({"change": pd.Series(dtype="int64"), "permit_id": pd.Series(dtype="object"),
                             "status": pd.Series(dtype="object"), "detail": pd.Series(dtype="object"),
                             "detail_zh": pd.Series(dtype="object"), "geometry": pd.Series(dtype="object")})
    change, permit = perm.sindex.query(changes.geometry.values, predicate="intersects")
    categories = changes.category.to_numpy()
    checks = [check_permit(perm.iloc[j], categories[i], windows) for i, j in zip(change, permit, strict=True)]
    return pd.DataFrame({"change": change, "permit_id": [c.permit_id for c in checks],
                         "status": [c.status for c in checks], "detail": [c.detail for c in checks],
                         "detail_zh": [c.detail_zh for c in checks],
                         "geometry": perm.geometry.to_numpy()[permit], "order": permit}
                        ).sort_values(["change", "order"], kind="stable")


def _reasons(uncovered: np.ndarray, covered_share: np.ndarray, checks: pd.DataFrame) -> np.ndarray:
    """Why each change is a lead: an expired or overdue permit under at least half of what is left
    uncovered names the reason; else a partial cover tells outside-boundary from partly-covered."""
    reason = np.where(covered_share <= 0, "no_permit",
                      np.where(covered_share >= OUTSIDE_BOUNDARY_SHARE, "outside_boundary", "partly_covered"))
    reason = reason.astype(object)
    decided = np.zeros(len(uncovered), dtype=bool)
    for status in ("reclamation_overdue", "expired"):
        rows = checks[checks.status == status]
        if not len(rows):
            continue
        left = uncovered[rows.change.to_numpy()]
        share = shapely.area(shapely.intersection(rows.geometry.to_numpy(), left))
        under = np.unique(rows.change.to_numpy()[share >= 0.5 * shapely.area(left)])
        under = under[~decided[under]]
        reason[under] = status
        decided[under] = True
    return reason


def make_leads(detections: gpd.GeoDataFrame, permits: gpd.GeoDataFrame, windows: Windows,
               detector: str, land_classes: gpd.GeoDataFrame | None = None
               ) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Leads (equal-area CRS, columns of LEAD_SCHEMA) and the detections annotated with their permit
    status and lead id. With the land survey's parcels (`land_classes`: dlbm, dlmc) each lead
    carries the land class of the parcel covering most of it: its class at the earlier date."""
    changes = detections.reset_index(drop=True)
    perm = permits.to_crs(EQUAL_AREA_CRS) if len(permits) else permits
    checks = _permit_checks(changes, perm, windows)
    geoms = changes.geometry.to_numpy()
    valid = checks[checks.status == "valid"]
    covered = np.full(len(changes), None, dtype=object)
    for i, part in valid.groupby("change").geometry:
        covered[i] = shapely.intersection(shapely.union_all(part.to_numpy()), geoms[i])
    uncovered = np.where(pd.isna(covered), geoms, shapely.difference(geoms, covered))
    covered_m2 = np.nan_to_num(shapely.area(covered.astype(object)).astype(float)) if len(changes) else np.zeros(0)
    mmu = np.array([get_category(c).min_area_m2 for c in changes.category], dtype=float)
    uncovered_m2 = shapely.area(uncovered).astype(float) if len(changes) else np.zeros(0)
    is_lead = ~shapely.is_empty(uncovered) & (uncovered_m2 >= mmu) if len(changes) else np.zeros(0, dtype=bool)
    reason = _reasons(uncovered, covered_m2 / np.maximum(shapely.area(geoms), 1e-9), checks) if len(changes) else []
    wgs84 = changes.geometry.to_crs("EPSG:4326").to_numpy() if len(changes) else []
    ids = np.array([lead_id(c, g, windows) if lead else None
                    for c, g, lead in zip(changes.category, wgs84, is_lead, strict=True)], dtype=object)
    annotated = changes.assign(status=np.where(is_lead, "lead", "permitted"), lead_id=ids)

    touched = checks.groupby("change").agg(permits_touched=("permit_id", ",".join), permit_notes=("detail", "; ".join),
                                           permit_notes_zh=("detail_zh", "；".join))
    touched = touched.astype(object).reindex(range(len(changes)), fill_value="")
    k = np.flatnonzero(is_lead)
    cats = [get_category(c) for c in changes.category.to_numpy()[k]]
    area = uncovered_m2[k]
    where = gpd.GeoSeries(uncovered[k], crs=EQUAL_AREA_CRS).to_crs("EPSG:4326").representative_point()
    land = land_class_of(gpd.GeoSeries(uncovered[k], crs=EQUAL_AREA_CRS), land_classes)
    columns = {
        "lead_id": ids[k], "category": [c.id for c in cats], "category_zh": [c.name_zh for c in cats],
        "category_en": [c.name_en for c in cats], "reason": np.asarray(reason, dtype=object)[k],
        "reason_zh": [REASONS_ZH[r] for r in np.asarray(reason, dtype=object)[k]], "dlbm": land.dlbm.to_numpy(),
        "dlmc": land.dlmc.to_numpy(), "status": LEAD_STATUS,
        "area_m2": area.round(1), "area_ha": (area / 1e4).round(3), "area_mu": (area / MU_M2).round(2),
        "change_area_m2": shapely.area(geoms[k]).round(1), "permitted_m2": covered_m2[k].round(1),
        "p_mean": changes.p_mean.to_numpy(dtype=float)[k].round(3),
        "p_max": changes.p_max.to_numpy(dtype=float)[k].round(3),
        "permits_touched": touched.permits_touched.to_numpy()[k], "permit_notes": touched.permit_notes.to_numpy()[k],
        "permit_notes_zh": touched.permit_notes_zh.to_numpy()[k],
        "baseline_window": _fmt_window(windows.baseline.start, windows.baseline.end),
        "monitoring_window": _fmt_window(windows.monitoring.start, windows.monitoring.end),
        "before_dates": changes.before_dates.to_numpy()[k], "after_dates": changes.after_dates.to_numpy()[k],
        "detector": detector, "lon": where.x.round(6).to_numpy(), "lat": where.y.round(6).to_numpy(),
        "register_id": "", "register_note": "",  # filled by the lead register (pipeline/leads/register.py)
        # filled by pipeline/leads/confidence.py and pipeline/leads/priority.py
        "confidence": "", "confidence_score": np.nan, "confirmations": -1, "clear_acquisitions": -1,
        "anychange_mean": np.nan, "anychange_agrees": False, "priority": np.nan, "priority_rank": 0,
        "priority_reasons": "",
    }
    leads = gpd.GeoDataFrame({name: pd.Series(np.broadcast_to(np.asarray(columns[name], dtype=dtype), len(k)),
                                              dtype=dtype) for name, dtype in LEAD_SCHEMA.items()},
                             geometry=gpd.GeoSeries(uncovered[k], crs=EQUAL_AREA_CRS), crs=EQUAL_AREA_CRS)
    leads = leads.sort_values(["category", "area_m2"], ascending=[True, False], kind="stable")
    return leads.reset_index(drop=True), annotated
