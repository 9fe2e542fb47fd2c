"""What the dossier says about a lead, in Chinese an investigator reads without the code at hand.

The sentences are built from the lead's reason and from the permits it touched, checked again
with the overlay's own rule (`check_permit`), so the dossier can never give another reason than
the one that made the lead.
"""

from __future__ import annotations

from datetime import date

import geopandas as gpd
import pandas as pd

from detectors.categories import PermitType, get_category, permit_name_zh
from pipeline.config import Windows
from pipeline.leads.overlay import MU_M2, TEMPORARY_RECLAIM, check_permit

#: A simple band on the lead's mean probability, for leads without an assessed confidence; lower
#: bounds, highest first.
CONFIDENCE_BANDS: tuple[tuple[float, str], ...] = ((0.8, "高"), (0.6, "中"), (0.0, "低"))
CONFIDENCE_NOTE = ("置信度取运行的综合评估（概率、多景确认、整体变化是否一致）；没有评估时按平均概率分档："
                   "≥0.8 高，0.6–0.8 中，<0.6 低")
DISCLAIMER = "线索仅指出需要实地核查的地点，不是违法认定。"


def confidence_band(p_mean: float) -> str:
    """低/中/高 for a lead's mean probability."""
    return next(band for floor, band in CONFIDENCE_BANDS if p_mean >= floor)


def confidence(lead: pd.Series) -> str:
    """The lead's confidence level: the run's assessment where it made one, else the band of p_mean."""
    level = lead.get("confidence")
    return level if isinstance(level, str) and level else confidence_band(float(lead.p_mean))


def _day(value: object) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def _given(value: object) -> bool:
    return value is not None and not pd.isna(value)


def _reclaim_deadline(permit: pd.Series) -> object:
    """The reclamation deadline the overlay applied: the register's, else a year after a temporary
    approval ended."""
    if _given(permit.reclaim_by):
        return permit.reclaim_by
    return permit.valid_to + TEMPORARY_RECLAIM if permit.permit_type == PermitType.TEMPORARY_LAND else None


def permit_sentence(permit: pd.Series, category: str, windows: Windows) -> tuple[str, str]:
    """The overlay's verdict on one touched permit (its status) and its sentence."""
    check = check_permit(permit, category, windows)
    return check.status, check.detail_zh


def touched_permits(lead: pd.Series, permits: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The permits a lead touched, in the order the lead lists them."""
    ids = [p for p in str(lead.permits_touched or "").split(",") if p]
    found = permits[permits.permit_id.astype(str).isin(ids)]
    return found.set_index(found.permit_id.astype(str)).reindex([i for i in ids if i in set(found.permit_id)])


def reason_sentences(lead: pd.Series, permits: gpd.GeoDataFrame, windows: Windows) -> list[str]:
    """Why this place is a lead: one sentence on the reason, then one per permit it touched."""
    touched = touched_permits(lead, permits)
    checks = [(row, *permit_sentence(row, lead.category, windows)) for _, row in touched.iterrows()]
    cat = get_category(lead.category).name_zh
    monitored = f"{windows.monitoring.start}至{windows.monitoring.end}"
    seen = f"监测期（{monitored}）影像上变化仍在"
    by_status = {status: row for row, status, _ in reversed(checks)}  # the first permit of each status
    valid_ids = "、".join(str(row.permit_id) for row, status, _ in checks if status == "valid")
    permitted_mu = f"{lead.permitted_m2 / MU_M2:.1f}"
    if lead.reason == "reclamation_overdue" and "reclamation_overdue" in by_status:
        p = by_status["reclamation_overdue"]
        first = (f"{permit_name_zh(str(p.permit_type), str(p.permit_id))} 于{_day(p.valid_to)}到期，"
                 f"复垦期限{_day(_reclaim_deadline(p))}已过，{seen}")
    elif lead.reason == "expired" and "expired" in by_status:
        p = by_status["expired"]
        first = f"{permit_name_zh(str(p.permit_type), str(p.permit_id))} 已于{_day(p.valid_to)}到期，{seen}"
    elif lead.reason == "outside_boundary":
        first = (f"变化超出有效许可 {valid_ids} 的范围：许可内{permitted_mu}亩，"
                 f"范围外{lead.area_mu:.1f}亩无许可")
    elif lead.reason == "partly_covered":
        first = f"变化只有一小部分在有效许可 {valid_ids} 内（{permitted_mu}亩），其余{lead.area_mu:.1f}亩无许可"
    elif checks:
        first = f"发现{cat}变化{lead.area_mu:.1f}亩，触及的许可都不能豁免它"
    else:
        first = f"发现{cat}变化{lead.area_mu:.1f}亩，该处没有任何许可"
    named = {str(p.permit_id) for p in by_status.values() if str(p.permit_id) in first}
    lines = [first + "。", *(f"{text}。" for row, _, text in checks if str(row.permit_id) not in named)]
    if len(checks) < len([p for p in str(lead.permits_touched or "").split(",") if p]):
        lines.append(f"（许可登记中未找到部分许可；原始说明：{lead.permit_notes}）")
    return lines


def land_class(lead: pd.Series) -> str:
    """The land-survey class (三调 地类) of the lead's place where the run had the survey, else ""."""
    parts = [str(lead.get(k)) for k in ("dlbm", "dlmc") if _given(lead.get(k)) and str(lead.get(k))]
    return " ".join(parts)


#: How the list's numbers are printed (the workbook keeps them as numbers).
NUMBER_FORMATS = {"面积（亩）": "{:.1f}", "面积（公顷）": "{:.2f}", "中心经度（CGCS2000）": "{:.6f}",
                  "中心纬度（CGCS2000）": "{:.6f}"}


def formatted(table: pd.DataFrame) -> pd.DataFrame:
    """The list as text, numbers to a fixed number of decimals."""
    return pd.DataFrame({c: [NUMBER_FORMATS.get(c, "{}").format(v) for v in table[c]] for c in table.columns},
                        columns=table.columns)


def index_table(leads: gpd.GeoDataFrame) -> pd.DataFrame:
    """The list of leads shown in the index, the PDF and leads.xlsx: one row per lead, numbered as on
    the overview map. Centres are in CGCS2000 (EPSG:4490)."""
    centres = gpd.GeoSeries(leads.geometry.representative_point(), crs=leads.crs).to_crs("EPSG:4490")
    table = pd.DataFrame({
        "序号": range(1, len(leads) + 1),
        "线索编号": leads.lead_id.to_numpy(),
        "类别": leads.category_zh.to_numpy(),
        "原因": leads.reason_zh.to_numpy(),
        "面积（亩）": leads.area_mu.round(1).to_numpy(),
        "面积（公顷）": leads.area_ha.round(2).to_numpy(),
        "中心经度（CGCS2000）": centres.x.round(6).to_numpy(),
        "中心纬度（CGCS2000）": centres.y.round(6).to_numpy(),
        "置信度": [f"{confidence(lead)}（{lead.p_mean:.2f}）" for _, lead in leads.iterrows()],
        "状态": leads.status.to_numpy(),
    })
    classes = [land_class(row) for _, row in leads.iterrows()]
    if any(classes):  # a run with the land survey
        table.insert(4, "地类", classes)
    return table
