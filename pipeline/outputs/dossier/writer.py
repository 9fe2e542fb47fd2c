"""Write the dossier of a run: report/index.html, one page per lead, report/leads.pdf and leads.xlsx.

Every file appears whole or not at all (`atomic_path`). The report folder is eoleads' own: the
run folder lists these files as its outputs, so the next run removes pages of leads that are
gone and leaves a user's own files alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import geopandas as gpd
import matplotlib
import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages
from tqdm import tqdm

from detectors.categories import get_category
from pipeline.atomic import atomic_path, write_text_atomic
from pipeline.config import Windows
from pipeline.leads.evidence import cjk_font, font_families, read_chip
from pipeline.outputs.dossier.html import index_html, lead_html
from pipeline.outputs.dossier.pages import lead_figure, overview_background, overview_figure, table_figures
from pipeline.outputs.dossier.wording import (
    confidence,
    index_table,
    land_class,
    reason_sentences,
    touched_permits,
)
from pipeline.outputs.workbook import write_workbook
from pipeline.sources import ImagerySource

REPORT_DIR = "report"
XLSX = "leads.xlsx"
PAGE_DPI = 90  # page images for the web pages; the PDF is vector with images at their own resolution
NO_FONT = ("未找到中文字体，未生成 PDF 与图件：请重新安装 eoleads（它会安装 noto-cjk-sans-otc 字体包），"
           "或安装系统字体 fonts-noto-cjk")


@dataclass(frozen=True)
class RunFacts:
    """What the run knows that the pages state besides the leads."""

    name: str
    windows: Windows
    detector_version: str
    notes: list[str] = field(default_factory=list)


def page_path(lead_id: str) -> str:
    """A lead's web page, relative to the run folder."""
    return f"{REPORT_DIR}/{lead_id}.html"


def image_path(lead_id: str) -> str:
    """A lead's printed page as an image, relative to the run folder."""
    return f"{REPORT_DIR}/img/{lead_id}.png"


def dossier_paths(lead_ids: Iterable[str]) -> list[str]:
    """Every file the dossier of these leads may write, relative to the run folder (claimed before writing)."""
    ids = list(lead_ids)
    return [f"{REPORT_DIR}/index.html", f"{REPORT_DIR}/overview.png", f"{REPORT_DIR}/leads.pdf", XLSX,
            *map(page_path, ids), *map(image_path, ids)]


def _window(start: date, end: date) -> str:
    return f"{start}至{end}"


def lead_facts(lead: pd.Series, permits: gpd.GeoDataFrame, run: RunFacts, centre: tuple[float, float]) -> list[
        tuple[str, str]]:
    """The lines a lead's page states, in reading order."""
    cat = get_category(lead.category)
    w = run.windows
    facts = [("类别", f"{cat.name_zh}（{cat.name_en}）"), ("状态", str(lead.status)),
             ("原因", "".join(reason_sentences(lead, permits, w))),
             ("面积", f"{lead.area_mu:.1f}亩（{lead.area_ha:.2f}公顷，{lead.area_m2:.0f}平方米）"),
             ("中心坐标", f"经度 {centre[0]:.6f}，纬度 {centre[1]:.6f}（CGCS2000，EPSG:4490）")]
    if land_class(lead):
        facts.append(("地类", land_class(lead)))
    facts += [("前期影像", f"窗口 {_window(w.baseline.start, w.baseline.end)}；采集日期 {lead.before_dates or '无'}"),
              ("后期影像",
               f"窗口 {_window(w.monitoring.start, w.monitoring.end)}；采集日期 {lead.after_dates or '无'}"),
              ("检测器", f"{lead.detector}（{run.detector_version}）"),
              ("置信度", f"{confidence(lead)}：平均概率 {lead.p_mean:.2f}，最大概率 {lead.p_max:.2f}")]
    return facts


def _summary(leads: gpd.GeoDataFrame, run: RunFacts) -> list[str]:
    w = run.windows
    counts = "，".join(f"{cat}{n}条" for cat, n in leads.category_zh.value_counts().items()) if len(leads) else "无"
    return [f"运行：{run.name}", f"前期窗口 {_window(w.baseline.start, w.baseline.end)}，"
            f"后期窗口 {_window(w.monitoring.start, w.monitoring.end)}",
            f"线索 {len(leads)} 条：{counts}", f"检测器：{run.detector_version}",
            *(f"运行说明：{n}" for n in run.notes)]


def _front_pages(pdf: PdfPages, report: Path, leads: gpd.GeoDataFrame, aoi: gpd.GeoDataFrame,
                 source: ImagerySource, run: RunFacts, table: pd.DataFrame, title: str) -> list[str]:
    """The overview map (also as report/overview.png for the index) and the list of leads."""
    overview = overview_figure(leads, aoi, overview_background(aoi, source, run.windows),
                               [title, *_summary(leads, run)[1:4]])
    pdf.savefig(overview)
    with atomic_path(report / "overview.png") as tmp:
        overview.savefig(tmp, dpi=PAGE_DPI)
    for page in table_figures(table, "线索列表"):
        pdf.savefig(page)
    return [f"{REPORT_DIR}/overview.png", f"{REPORT_DIR}/leads.pdf"]


def write_dossier(folder: Path, leads: gpd.GeoDataFrame, permits: gpd.GeoDataFrame, aoi: gpd.GeoDataFrame,
                  source: ImagerySource, run: RunFacts, resolution: float = 10.0, progress: bool = True) -> list[str]:
    """Write the dossier into `folder`; returns the files written, relative to it.

    Without a font for Chinese the web pages and the workbook are still written (their text is
    the reader's to render) but the PDF and the images are not, and the index says why.
    """
    report = folder / REPORT_DIR
    (report / "img").mkdir(parents=True, exist_ok=True)
    table = index_table(leads)
    title = f"线索核查材料：{run.name}"
    drawn = cjk_font() is not None
    warnings = [n for n in run.notes if n.upper().startswith("WARNING")] + ([] if drawn else [NO_FONT])
    written = [f"{REPORT_DIR}/index.html", XLSX]
    wgs = leads.to_crs("EPSG:4326")
    permits_wgs = permits.to_crs("EPSG:4326")
    centres = table[["中心经度（CGCS2000）", "中心纬度（CGCS2000）"]].to_numpy()
    rows = list(zip(range(1, len(leads) + 1), leads.iterrows(), wgs.geometry, centres, strict=True))
    with matplotlib.rc_context({"pdf.fonttype": 42, "font.family": font_families()}), ExitStack() as stack:
        pdf = stack.enter_context(PdfPages(stack.enter_context(atomic_path(report / "leads.pdf")),
                                           metadata={"Title": title, "Creator": "eoleads"})) if drawn else None
        if pdf:
            written += _front_pages(pdf, report, leads, aoi, source, run, table, title)
        for number, (_, lead), geom, centre in tqdm(rows, desc="report", unit="lead", disable=not progress):
            facts = lead_facts(lead, permits, run, tuple(centre))
            image = None
            if pdf:
                near = touched_permits(lead, permits_wgs)
                fig = lead_figure(number, lead, gpd.GeoSeries([geom], crs="EPSG:4326"),
                                  gpd.GeoDataFrame(near, geometry="geometry", crs=permits_wgs.crs),
                                  read_chip(geom, source, run.windows, resolution), facts)
                pdf.savefig(fig)
                with atomic_path(folder / image_path(lead.lead_id)) as tmp:
                    fig.savefig(tmp, dpi=PAGE_DPI)
                image = f"img/{lead.lead_id}.png"
                written.append(image_path(lead.lead_id))
            write_text_atomic(folder / page_path(lead.lead_id),
                              lead_html(f"线索 {number}：{lead.lead_id}", facts, image, "index.html"))
            written.append(page_path(lead.lead_id))
    links = [f"{i}.html" for i in leads.lead_id]
    write_text_atomic(report / "index.html", index_html(title, _summary(leads, run), table, links,
                                                         "overview.png" if drawn else None,
                                                         "leads.pdf" if drawn else None, warnings))
    write_workbook(folder / XLSX, table, "线索", ("线索编号", [f"{REPORT_DIR}/{link}" for link in links]))
    return written
