"""The dossier: web pages, a PDF whose Chinese text can be found and that prints in black and white,
and a workbook with the same leads, made from leads of the real overlay over small real GeoTIFFs."""

from __future__ import annotations

import json
import re
import sys
from datetime import date

import geopandas as gpd
import numpy as np
import openpyxl
import pypdfium2
import pytest
from matplotlib.figure import Figure
from pypdf import PdfReader
from shapely.geometry import box

from pipeline.config import Windows
from pipeline.detection.vectorize import EQUAL_AREA_CRS
from pipeline.leads import evidence
from pipeline.leads.overlay import make_leads
from pipeline.outputs.dossier import RunFacts, write_dossier
from pipeline.outputs.dossier.cartography import label_extent, place_labels
from pipeline.outputs.dossier.pages import wrap
from pipeline.outputs.dossier.wording import confidence, index_table, reason_sentences
from pipeline.outputs.dossier.writer import NO_FONT
from pipeline.sources.local import LocalGeoTiffSource
from tests.conftest import ORIGIN, write_s2

WINDOWS = Windows.model_validate({"baseline": {"start": "2024-07-01", "end": "2024-08-31"},
                                  "monitoring": {"start": "2025-07-01", "end": "2025-08-31"}})
UTM = "EPSG:32650"
SIZE = 120  # px of 10 m: 1.2 km square images
YARD = box(500400, 5429400, 500600, 5429600)  # a bare yard under an expired temporary-land approval
STEPPE = box(500800, 5429100, 500950, 5429250)  # ploughed steppe, no permit at all


def _scene(tmp_path):
    """Two real L2A-like GeoTIFFs: green land, and a year later the yard and the field bare."""
    green = np.empty((6, SIZE, SIZE), dtype=float)
    green[:] = np.array([0.04, 0.07, 0.05, 0.35, 0.18, 0.09])[:, None, None]
    bare = green.copy()
    for shape in (YARD, STEPPE):
        x0, y0, x1, y1 = shape.bounds
        rows = slice(int((5430000 - y1) / 10), int((5430000 - y0) / 10))
        cols = slice(int((x0 - 500000) / 10), int((x1 - 500000) / 10))
        bare[:, rows, cols] = np.array([0.15, 0.18, 0.22, 0.26, 0.35, 0.30])[:, None, None]
    write_s2(tmp_path / "before.tif", green, "2024-07-20", transform=ORIGIN)
    write_s2(tmp_path / "after.tif", bare, "2025-07-18", transform=ORIGIN)
    return LocalGeoTiffSource([str(tmp_path / "*.tif")])


def _leads():
    """Leads of the real overlay: one with an overdue reclamation, one without any permit."""
    changes = gpd.GeoDataFrame(
        {"category": ["temporary_land", "grassland"], "p_mean": [0.91, 0.55], "p_max": [0.99, 0.7],
         "before_dates": ["2024-07-20"] * 2, "after_dates": ["2025-07-18"] * 2},
        geometry=[YARD, STEPPE], crs=UTM).to_crs(EQUAL_AREA_CRS)
    permits = gpd.GeoDataFrame(
        {"permit_id": ["LS-2021-001", "JS-2020-007"], "permit_type": ["temporary_land", "construction"],
         "holder": ["路桥公司", "某公司"], "valid_from": [date(2021, 3, 5), date(2020, 1, 1)],
         "valid_to": [date(2023, 3, 4), date(2030, 1, 1)], "reclaim_by": [date(2024, 3, 4), None]},
        geometry=[YARD.buffer(20), STEPPE.buffer(-40)], crs=UTM).to_crs("EPSG:4326")
    leads, _ = make_leads(changes, permits, WINDOWS, "eoleads-s2-unet")
    return leads, permits


@pytest.fixture(scope="module")
def dossier(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dossier")
    source = _scene(tmp)
    leads, permits = _leads()
    aoi = gpd.GeoDataFrame(geometry=[box(500000, 5428800, 501200, 5430000)], crs=UTM)
    run = RunFacts("测试运行", WINDOWS, "eoleads 0.1.0", ["WARNING: 1 of 9 cell(s) were not seen on both dates"])
    written = write_dossier(tmp, leads, permits, aoi, source, run, progress=False)
    return tmp, leads, written


def test_the_dossier_writes_the_index_the_pdf_the_workbook_and_a_page_per_lead(dossier):
    folder, leads, written = dossier
    for rel in ("report/index.html", "report/leads.pdf", "report/overview.png", "leads.xlsx",
                *(f"report/{i}.html" for i in leads.lead_id), *(f"report/img/{i}.png" for i in leads.lead_id)):
        assert rel in written and (folder / rel).stat().st_size > 0
    assert not list(folder.rglob(".*partial*"))
    index = (folder / "report/index.html").read_text(encoding="utf-8")
    for heading in ("线索编号", "类别", "原因", "面积（亩）", "面积（公顷）", "中心经度（CGCS2000）", "状态"):
        assert heading in index
    assert "not seen on both dates" in index  # what the run could not look at is on the first page
    for link in re.findall(r'href="([^"]+)"', index):
        assert (folder / "report" / link).exists()


def test_the_pdf_is_a4_with_the_reasons_as_text_in_an_embedded_truetype_font(dossier):
    folder, leads, _ = dossier
    reader = PdfReader(folder / "report/leads.pdf")
    assert len(reader.pages) == 2 + len(leads)  # overview, list, one page per lead
    for page in reader.pages:
        assert [round(float(v)) for v in page.mediabox[2:]] == [595, 842]
    text = "\n".join(p.extract_text() for p in reader.pages)
    assert "临时用地许可 LS-2021-001 于2023-03-04到期，复垦期限2024-03-04已过" in re.sub(r"\s*\n\s*", "", text)
    for word in ("线索列表", "临时用地未复垦", "草原破坏", "不能豁免", *leads.lead_id):
        assert word in text
    fonts = [f.get_object() for p in reader.pages for f in p["/Resources"]["/Font"].values()]
    cjk = [f for f in fonts if "CJK" in str(f["/BaseFont"])]
    assert cjk and all(f["/DescendantFonts"][0].get_object()["/Subtype"] == "/CIDFontType2" for f in cjk)


def test_every_page_renders_with_content(dossier):
    folder, _, _ = dossier
    pdf = pypdfium2.PdfDocument(folder / "report/leads.pdf")
    for page in pdf:
        grey = np.asarray(page.render(scale=0.5, grayscale=True).to_pil().convert("L"), dtype=float)
        assert (grey < 128).mean() > 0.005 and grey.std() > 10  # not blank: text, lines and imagery


def test_the_workbook_lists_the_same_leads_as_the_index(dossier):
    folder, leads, _ = dossier
    sheet = openpyxl.load_workbook(folder / "leads.xlsx").active
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == list(index_table(leads).columns)
    assert [r[1] for r in rows[1:]] == list(leads.lead_id)
    assert rows[1][4] == pytest.approx(leads.area_mu.iloc[0], abs=0.05)  # numbers stay numbers
    assert sheet.cell(2, 2).hyperlink.target == f"report/{leads.lead_id.iloc[0]}.html"


def test_reasons_read_as_sentences_from_the_permits_the_lead_touched():
    leads, permits = _leads()
    overdue, unpermitted = (leads[leads.category == c].iloc[0] for c in ("temporary_land", "grassland"))
    assert reason_sentences(overdue, permits, WINDOWS)[0] == (
        "临时用地许可 LS-2021-001 于2023-03-04到期，复垦期限2024-03-04已过，"
        "监测期（2025-07-01至2025-08-31）影像上变化仍在。")
    steppe = reason_sentences(unpermitted, permits, WINDOWS)
    assert steppe[0].startswith("发现草原破坏变化") and "触及的许可都不能豁免它" in steppe[0]
    assert steppe[1] == "建设用地许可 JS-2020-007：此类许可不能豁免草原破坏。"
    assert [confidence(overdue), confidence(unpermitted)] == ["高", "低"]  # bands of p_mean 0.91 and 0.55


def test_a_confidence_the_run_assessed_is_shown_as_given():
    leads, _ = _leads()
    assert confidence(leads.assign(confidence="中").iloc[0]) == "中"


def test_land_survey_class_is_listed_when_leads_carry_it():
    leads, _ = _leads()
    table = index_table(leads.assign(dlbm="0404", dlmc="其他草地"))
    assert list(table["地类"]) == ["0404 其他草地"] * len(leads)
    assert "地类" not in index_table(leads).columns


def test_labels_around_one_spot_are_kept_apart():
    fig = Figure(figsize=(4, 4))
    ax = fig.add_axes((0.1, 0.1, 0.8, 0.8))
    ax.set_xlim(0, 1000)
    ax.set_ylim(0, 1000)
    anchors = [(500 + i, 500 - i) for i in range(10)]
    assert place_labels(ax, anchors, [str(i + 1) for i in range(10)]) == 0
    renderer = fig.canvas.get_renderer()
    boxes = [label_extent(t, renderer) for t in ax.texts]
    assert len(boxes) == 10
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_lines_break_between_characters_never_inside_a_date():
    text = "临时用地许可 LS-2021-001 于2023-03-04到期，复垦期限2024-03-04已过，变化仍在"
    lines = wrap(text, 20)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    assert all(re.search(r"\d{4}-\d{2}-\d{2}", line) or "-03" not in line for line in lines)


def test_a_run_without_leads_still_says_what_it_looked_at(tmp_path):
    leads, permits = _leads()
    aoi = gpd.GeoDataFrame(geometry=[box(500000, 5428800, 501200, 5430000)], crs=UTM)
    run = RunFacts("空", WINDOWS, "v", ["WARNING: 3 of 9 cell(s) were not seen on both dates"])
    write_dossier(tmp_path, leads.iloc[0:0], permits, aoi, _scene(tmp_path), run, progress=False)
    index = (tmp_path / "report/index.html").read_text(encoding="utf-8")
    assert "本次运行没有线索" in index and "3 of 9 cell(s) were not seen" in index
    text = "".join(p.extract_text() for p in PdfReader(tmp_path / "report/leads.pdf").pages)
    assert "线索 0 条" in text and "本次运行没有线索" in text
    assert list(openpyxl.load_workbook(tmp_path / "leads.xlsx").active.iter_rows(values_only=True))[1:] == []


def test_without_a_chinese_font_no_pdf_is_drawn_and_the_index_says_why(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(evidence, "_CJK_FAMILIES", ("No Such Font",))
    monkeypatch.setitem(sys.modules, "noto_cjk_sans_otc", None)  # the package is not installed
    evidence.cjk_font.cache_clear()
    try:
        leads, permits = _leads()
        aoi = gpd.GeoDataFrame(geometry=[box(500000, 5428800, 501200, 5430000)], crs=UTM)
        written = write_dossier(tmp_path, leads, permits, aoi, _scene(tmp_path), RunFacts("t", WINDOWS, "v"),
                                progress=False)
    finally:
        evidence.cjk_font.cache_clear()
    assert not (tmp_path / "report/leads.pdf").exists() and not list((tmp_path / "report/img").iterdir())
    assert "report/leads.pdf" not in written and "leads.xlsx" in written
    assert NO_FONT in (tmp_path / "report/index.html").read_text(encoding="utf-8")
    assert "no font with Chinese glyphs" in caplog.text


@pytest.mark.slow
def test_the_demo_run_writes_the_dossier(demo_run):
    leads = gpd.read_file(demo_run / "leads.gpkg", layer="leads")
    assert len(leads) > 0
    sheet = openpyxl.load_workbook(demo_run / "leads.xlsx").active
    assert [r[1] for r in sheet.iter_rows(min_row=2, values_only=True)] == list(leads.lead_id)
    text = "".join(p.extract_text() for p in PdfReader(demo_run / "report/leads.pdf").pages)
    assert "临时用地" in text and all(i in text for i in leads.lead_id)
    outputs = json.loads((demo_run / "manifest.json").read_text())["outputs"]
    assert {"report/index.html", "report/leads.pdf", "leads.xlsx"} <= set(outputs)
