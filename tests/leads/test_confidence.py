from datetime import date

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from detectors.categories import CATEGORY_IDS, OTHER_ID
from pipeline.config import DateRange, Windows
from pipeline.detection.probabilities import write_probabilities
from pipeline.detection.vectorize import EQUAL_AREA_CRS
from pipeline.leads.confidence import (
    NOT_COUNTED,
    assess_confidence,
    confidence_level,
    confidence_score,
    count_confirmations,
)
from pipeline.leads.evidence import write_evidence
from pipeline.sources.local import LocalGeoTiffSource
from pipeline.sources.remembered import BUDGET_BYTES, RememberedComposites
from pipeline.sources.scene import ReadGrid
from tests.conftest import ORIGIN, write_s2

WINDOWS = Windows(baseline=DateRange(start=date(2024, 7, 1), end=date(2024, 8, 31)),
                  monitoring=DateRange(start=date(2025, 7, 1), end=date(2025, 8, 31)))
SIZE = 120  # 1.2 km of 10 m pixels: the lead's evidence grid (at least 800 m) fits inside
#: B02, B03, B04, B08, B11, B12
GRASS = np.array([0.03, 0.06, 0.04, 0.35, 0.18, 0.09], dtype=np.float32)
SOIL = np.array([0.12, 0.15, 0.18, 0.25, 0.32, 0.28], dtype=np.float32)
CLOUD = np.full(6, 0.6, dtype=np.float32)
LEAD_UTM = box(500400, 5429400, 500600, 5429600)  # rows and columns 40-59 of the files
INSIDE = (slice(40, 60), slice(40, 60))


def _image(inside: np.ndarray) -> np.ndarray:
    refl = np.broadcast_to(GRASS[:, None, None], (6, SIZE, SIZE)).copy()
    refl[(slice(None), *INSIDE)] = inside[:, None, None]
    return refl


def _scl(cloud_over_lead: bool) -> np.ndarray:
    scl = np.full((SIZE, SIZE), 4, dtype=np.uint16)
    if cloud_over_lead:
        scl[INSIDE] = 9
    return scl


@pytest.fixture()
def source(tmp_path):
    """Two grassland baselines; five monitoring acquisitions: three show bare soil on the lead, one is
    cloudy over it (SCL 9), one sees the grass again."""
    for when in ("2024-07-10", "2024-07-20"):
        write_s2(tmp_path / f"S2_{when}.tif", _image(GRASS), when, scl=_scl(False))
    for when, inside, cloudy in (("2025-07-05", SOIL, False), ("2025-07-15", SOIL, False),
                                 ("2025-07-25", CLOUD, True), ("2025-08-04", GRASS, False),
                                 ("2025-08-14", SOIL, False)):
        write_s2(tmp_path / f"S2_{when}.tif", _image(inside), when, scl=_scl(cloudy))
    return LocalGeoTiffSource([str(tmp_path / "S2_*.tif")])


def _leads(p_mean: float = 0.9) -> gpd.GeoDataFrame:
    geom = gpd.GeoSeries([LEAD_UTM], crs="EPSG:32650").to_crs(EQUAL_AREA_CRS)
    return gpd.GeoDataFrame({"lead_id": ["TL-2025-a"], "p_mean": [p_mean]}, geometry=geom, crs=EQUAL_AREA_CRS)


def test_clear_acquisitions_that_show_the_change_confirm_it(source):
    leads, notes = assess_confidence(_leads(), source, WINDOWS, [], 0.5, progress=False)
    lead = leads.iloc[0]
    assert lead.clear_acquisitions == 4  # the cloudy one does not count
    assert lead.confirmations == 3  # the one that sees grass again does not confirm
    assert not lead.anychange_agrees  # no mosaic given: nothing agrees
    assert notes == []


def test_per_acquisition_reads_are_the_files_of_the_window_in_date_order(source):
    grid = ReadGrid("EPSG:32650", ORIGIN, SIZE, SIZE)
    reads = source.acquisition_reads(grid, WINDOWS.monitoring)
    assert [d for d, _ in reads] == [date(2025, 7, 5), date(2025, 7, 15), date(2025, 7, 25), date(2025, 8, 4),
                                     date(2025, 8, 14)]
    cloudy = reads[2][1]
    assert np.isnan(cloudy[(slice(None), *INSIDE)]).all() and np.isfinite(cloudy[:, :40]).all()
    np.testing.assert_allclose(reads[0][1][(slice(None), 50, 50)], SOIL, atol=1e-4)


def test_any_change_output_over_the_lead_agrees_at_its_threshold(source, tmp_path):
    probs = np.zeros((len(CATEGORY_IDS), SIZE, SIZE), dtype=np.float32)
    other = CATEGORY_IDS.index(OTHER_ID)
    probs[other] = 0.1
    probs[(other, *INSIDE)] = 0.8
    mosaic = write_probabilities(tmp_path / "probabilities.tif", probs, np.ones((SIZE, SIZE), bool),
                                 ReadGrid("EPSG:32650", ORIGIN, SIZE, SIZE), CATEGORY_IDS)
    leads, _ = assess_confidence(_leads(), source, WINDOWS, [mosaic], 0.5, progress=False)
    assert leads.anychange_mean.iloc[0] == pytest.approx(0.8, abs=0.005)
    assert leads.anychange_agrees.iloc[0]
    assert leads.confidence.iloc[0] == "高"  # 0.4 * 0.9 + 0.4 * 3/3 + 0.2
    stricter, _ = assess_confidence(_leads(), source, WINDOWS, [mosaic], 0.85, progress=False)
    assert not stricter.anychange_agrees.iloc[0]
    assert stricter.confidence_score.iloc[0] == pytest.approx(leads.confidence_score.iloc[0] - 0.2)


def test_a_source_without_single_acquisitions_says_so_and_caps_confidence(source):
    class CompositesOnly:
        bands = source.bands

        def composite(self, grid, window):
            return source.composite(grid, window)

    leads, notes = assess_confidence(_leads(1.0), CompositesOnly(), WINDOWS, [], None, progress=False)
    assert leads.confirmations.iloc[0] == NOT_COUNTED and leads.clear_acquisitions.iloc[0] == NOT_COUNTED
    assert leads.confidence.iloc[0] == "低"  # 0.4 * 1.0: no confirmation, no any-change agreement
    assert any(n.startswith("WARNING") and "CompositesOnly" in n for n in notes)
    assert any("'other' is not among the run's categories" in n for n in notes)


def test_tiles_of_one_date_count_as_one_acquisition():
    before = np.zeros((6, 2, 2), dtype=np.float32)
    after = np.ones((6, 2, 2), dtype=np.float32)
    pixels = np.ones((2, 2), bool)
    west, east = np.full((6, 2, 2), np.nan, np.float32), np.full((6, 2, 2), np.nan, np.float32)
    west[:, :, 0], east[:, :, 1] = 0.9, 0.9
    day = date(2025, 7, 5)
    assert count_confirmations([(day, west), (day, east)], before, after, pixels).clear_acquisitions == 1
    half_seen = count_confirmations([(day, west)], before, after, pixels)
    assert (half_seen.confirmations, half_seen.clear_acquisitions) == (1, 1)  # half the lead is enough
    quarter = np.full((6, 2, 2), np.nan, np.float32)
    quarter[:, 0, 0] = 0.9
    assert count_confirmations([(day, quarter)], before, after, pixels).clear_acquisitions == 0


@pytest.mark.parametrize(("p_mean", "confirmations", "agrees", "level"), [
    (0.9, 2, True, "高"), (0.9, 1, True, "中"), (0.9, 0, True, "中"), (0.9, 0, False, "低"),
    (0.6, 3, False, "中"), (0.5, 3, True, "高"),
])
def test_levels_read_off_the_score(p_mean, confirmations, agrees, level):
    score = confidence_score(np.array([p_mean]), np.array([confirmations]), np.array([agrees]))
    assert confidence_level(score)[0] == level


class CountingSource(LocalGeoTiffSource):
    """The local source, counting the composites it makes."""

    composites = 0

    def composite(self, grid, window):
        self.composites += 1
        return super().composite(grid, window)


@pytest.mark.parametrize("budget, reads", [(BUDGET_BYTES, 2), (0, 4)])
def test_a_leads_chip_is_read_once_for_its_confidence_and_its_evidence(source, tmp_path, budget, reads):
    counting = CountingSource([str(tmp_path / "S2_*.tif")])  # the files the `source` fixture wrote
    chips = RememberedComposites(counting, budget)
    lead = _leads().assign(category="temporary_land", reason="no permit", area_ha=4.0, area_mu=60.0)
    leads, notes = assess_confidence(lead, chips, WINDOWS, [], 0.5, progress=False)
    assert write_evidence(leads, chips, WINDOWS, tmp_path, progress=False) == ["evidence/TL-2025-a.png"]
    assert counting.composites == reads  # before and after, once; twice each where nothing may be kept
    assert leads.confirmations.iloc[0] == 3 and notes == []
    assert (chips.kept_bytes > 0) == (budget > 0)


def test_kept_composites_are_handed_out_read_only(source):
    chips = RememberedComposites(source)
    grid = ReadGrid("EPSG:32650", ORIGIN, SIZE, SIZE)
    first = chips.composite(grid, WINDOWS.monitoring)
    assert chips.composite(grid, WINDOWS.monitoring) is first
    with pytest.raises(ValueError, match="read-only"):
        first.reflectance[0, 0, 0] = 1.0


def test_remembering_composites_keeps_the_sources_own_name_in_notes(source):
    class CompositesOnly:
        bands = source.bands

        def composite(self, grid, window):
            return source.composite(grid, window)

    _, notes = assess_confidence(_leads(), RememberedComposites(CompositesOnly()), WINDOWS, [], None, progress=False)
    assert any(n.startswith("WARNING: the CompositesOnly source") for n in notes)
