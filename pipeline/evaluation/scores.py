"""Object-level scores of leads against the simulator's ground truth, per category.

A planted change that should become a lead is found when a lead of its category overlaps it;
a lead is true when it overlaps such a change of its own category. Permitted changes that were
flagged anyway, and leads whose reason differs from the planted scenario, are counted apart:
both cost an investigator a trip.
"""

from __future__ import annotations

import geopandas as gpd
import pandas as pd

from detectors.categories import CATEGORY_IDS


def score_leads(leads: gpd.GeoDataFrame, truth: gpd.GeoDataFrame) -> pd.DataFrame:
    """Recall, precision and error counts per category, and an 'all' row."""
    truth = truth.to_crs(leads.crs) if len(leads) else truth
    rows = []
    for cat in CATEGORY_IDS:
        t = truth[truth.category == cat]
        expected = t[t.expected_lead.astype(bool)]
        permitted = t[~t.expected_lead.astype(bool)]
        ld = leads[leads.category == cat] if len(leads) else leads
        found = [i for i, g in expected.geometry.items() if len(ld) and ld.intersects(g).any()]
        true_leads = [i for i, g in ld.geometry.items() if expected.intersects(g).any()] if len(ld) else []
        reason_ok = 0
        for i in found:
            hit = ld[ld.intersects(expected.geometry[i])]
            reason_ok += int((hit.reason == expected.expected_reason[i]).any())
        on_permitted = sum(int(len(ld) > 0 and ld.intersects(g).any()) for g in permitted.geometry)
        rows.append({"category": cat, "expected": len(expected), "found": len(found), "leads": len(ld),
                     "true_leads": len(true_leads), "flagged_permitted": on_permitted,
                     "permitted": len(permitted), "reason_correct": reason_ok})
    df = pd.DataFrame(rows)
    total = df.drop(columns="category").sum()
    df = pd.concat([df, pd.DataFrame([{"category": "all", **total.to_dict()}])], ignore_index=True)
    df["recall"] = (df.found / df.expected.where(df.expected > 0)).round(3)
    df["precision"] = (df.true_leads / df.leads.where(df.leads > 0)).round(3)
    return df
