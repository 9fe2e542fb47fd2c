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
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from detectors.categories import PermitType, TimeRule, get_category
from pipeline.config import Windows
from pipeline.vectorize import EQUAL_AREA_CRS

MU_M2 = 10000.0 / 15.0  # 1 亩 = 666.67 m²
REASONS_ZH = {"no_permit": "无许可", "expired": "许可已过期", "reclamation_overdue": "逾期未复垦",
              "outside_boundary": "超出许可范围", "partly_covered": "部分无许可"}
#: Temporary land must be reclaimed within a year of the approval's end when no deadline is given.
TEMPORARY_RECLAIM = timedelta(days=365)
#: Share of a change a valid permit must cover for the rest to read as spilling past its boundary.
OUTSIDE_BOUNDARY_SHARE = 0.5


@dataclass(frozen=True)
class PermitCheck:
    """One permit against one change: its status and the sentence an investigator reads."""

    permit_id: str
    status: str  # valid, expired, reclamation_overdue, not_yet_valid, undated, wrong_type
    detail: str


def check_permit(permit: pd.Series, category: str, windows: Windows) -> PermitCheck:
    """Whether one permit exempts a change of `category` observed in `windows`, and why not."""
    cat = get_category(category)
    pid, ptype = str(permit.permit_id), str(permit.permit_type)
    if ptype not in {t.value for t in cat.exempting_permits}:
        return PermitCheck(pid, "wrong_type", f"{pid} ({ptype}): this type does not exempt {category}")
    start, end = permit.valid_from, permit.valid_to
    if start is None or end is None or pd.isna(start) or pd.isna(end):
        return PermitCheck(pid, "undated", f"{pid} ({ptype}): validity dates missing, cannot exempt")
    if start > windows.monitoring.end:
        return PermitCheck(pid, "not_yet_valid", f"{pid} ({ptype}): valid only from {start}, after the change")
    if cat.time_rule is TimeRule.EVENT:
        if end < windows.baseline.start:
            return PermitCheck(pid, "expired", f"{pid} ({ptype}): expired {end}, before the change window")
        return PermitCheck(pid, "valid", f"{pid} ({ptype}): valid {start} to {end}")
    reclaim = permit.reclaim_by if permit.reclaim_by is not None and not pd.isna(permit.reclaim_by) else None
    allowed_until = end
    if ptype == PermitType.TEMPORARY_LAND.value:
        allowed_until = reclaim or (end if end == date.max else end + TEMPORARY_RECLAIM)
    if allowed_until >= windows.monitoring.start:
        return PermitCheck(pid, "valid", f"{pid} ({ptype}): valid {start} to {allowed_until}")
    overdue = ptype == PermitType.TEMPORARY_LAND.value or (reclaim is not None and reclaim < windows.monitoring.start)
    if overdue:
        deadline = reclaim or allowed_until
        return PermitCheck(pid, "reclamation_overdue", f"{pid} ({ptype}): expired {end}, reclamation due {deadline}")
    return PermitCheck(pid, "expired", f"{pid} ({ptype}): expired {end}, use continues after it")


def lead_id(category: str, geom_wgs84: BaseGeometry, windows: Windows) -> str:
    """Same place, category and monitoring window give the same id in every run."""
    pt = geom_wgs84.representative_point()
    key = f"{category}|{pt.x:.4f}|{pt.y:.4f}|{windows.monitoring.start}|{windows.monitoring.end}"
    return f"{get_category(category).code}-{windows.monitoring.end.year}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def _fmt_window(start: date, end: date) -> str:
    return f"{start.isoformat()}/{end.isoformat()}"


def make_leads(detections: gpd.GeoDataFrame, permits: gpd.GeoDataFrame, windows: Windows,
               detector: str) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Leads (equal-area CRS) and the detections annotated with their permit status and lead id."""
    det = detections.copy()
    perm = permits.to_crs(EQUAL_AREA_CRS) if len(permits) else permits
    tree = perm.sindex if len(perm) else None
    det_status, det_lead, leads = [], [], []
    det_wgs84 = det.geometry.to_crs("EPSG:4326")  # once for all, not once per change
    for idx, row in det.iterrows():
        geom = row.geometry
        checks, valid_geoms, blocking = [], [], []
        if tree is not None:
            for j in tree.query(geom, predicate="intersects"):
                p = perm.iloc[j]
                chk = check_permit(p, row.category, windows)
                checks.append(chk)
                if chk.status == "valid":
                    valid_geoms.append(p.geometry)
                elif chk.status in ("expired", "reclamation_overdue"):
                    blocking.append((chk.status, p.geometry))
        covered = shapely.union_all(valid_geoms).intersection(geom) if valid_geoms else None
        uncovered = geom.difference(covered) if covered is not None else geom
        mmu = get_category(row.category).min_area_m2
        if uncovered.is_empty or uncovered.area < mmu:
            det_status.append("permitted")
            det_lead.append(None)
            continue
        covered_share = 0.0 if covered is None else covered.area / geom.area
        reason = "no_permit"
        for status in ("reclamation_overdue", "expired"):
            if any(g.intersection(uncovered).area >= 0.5 * uncovered.area for s, g in blocking if s == status):
                reason = status
                break
        else:
            if covered_share > 0:
                reason = "outside_boundary" if covered_share >= OUTSIDE_BOUNDARY_SHARE else "partly_covered"
        lid = lead_id(row.category, det_wgs84[idx], windows)
        cat = get_category(row.category)
        det_status.append("lead")
        det_lead.append(lid)
        leads.append({
            "lead_id": lid, "category": cat.id, "category_zh": cat.name_zh, "category_en": cat.name_en,
            "reason": reason, "reason_zh": REASONS_ZH[reason],
            "status": "线索 lead: to be verified in the field",
            "area_m2": round(uncovered.area, 1), "area_ha": round(uncovered.area / 1e4, 3),
            "area_mu": round(uncovered.area / MU_M2, 2), "change_area_m2": round(geom.area, 1),
            "permitted_m2": round(0.0 if covered is None else covered.area, 1),
            "p_mean": round(float(row.p_mean), 3), "p_max": round(float(row.p_max), 3),
            "permits_touched": ",".join(c.permit_id for c in checks),
            "permit_notes": "; ".join(c.detail for c in checks),
            "baseline_window": _fmt_window(windows.baseline.start, windows.baseline.end),
            "monitoring_window": _fmt_window(windows.monitoring.start, windows.monitoring.end),
            "before_dates": row.before_dates, "after_dates": row.after_dates,
            "detector": detector, "geometry": uncovered,
        })
    det["status"] = det_status
    det["lead_id"] = det_lead
    if not leads:
        cols = ["lead_id", "category", "reason", "area_m2", "geometry"]
        return gpd.GeoDataFrame(columns=cols, geometry="geometry", crs=EQUAL_AREA_CRS), det
    out = gpd.GeoDataFrame(leads, geometry="geometry", crs=EQUAL_AREA_CRS)
    where = out.geometry.to_crs("EPSG:4326").representative_point()
    out.insert(len(out.columns) - 1, "lon", where.x.round(6))
    out.insert(len(out.columns) - 1, "lat", where.y.round(6))
    return out.sort_values(["category", "area_m2"], ascending=[True, False]).reset_index(drop=True), det
