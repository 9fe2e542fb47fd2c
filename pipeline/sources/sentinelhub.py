"""Sentinel-2 L2A from Sentinel Hub (Copernicus Data Space or sentinel-hub.com), through sentinelhub-py.

The Catalog is searched once per window over the AOI, with the cloud filter; each cell takes the
days whose tiles touch it, and each day is fetched with the Process API onto the cell's grid (one
acquisition per request: its day as time range, `mostRecent` mosaicking), as UINT16 digital numbers
with `harmonizeValues: false`, plus SCL and dataMask. The result goes into the imagery cache tagged
as Level-2A, and from there the local source's code applies the processing-baseline offset (−1000
from baseline 04.00, by acquisition date), masks clouds with SCL and composites, exactly as for
files on disk; the same cache can be carried to an offline network and read by the local source.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from affine import Affine
from rasterio.io import MemoryFile
from rasterio.warp import transform_bounds
from sentinelhub import CRS, BBox, MimeType, MosaickingOrder, SentinelHubCatalog, SentinelHubRequest
from shapely import STRtree
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from detectors.bands import L2A_QUANTIFICATION, REFLECTANCE_BANDS, SCL_BAND
from pipeline.errors import InputError
from pipeline.plan import SourcePlan, cell_footprints_wgs84
from pipeline.sources.cache import CacheKey, ImageryCache
from pipeline.sources.local import ImageFile, composite_of, inspect_file, separate_reads
from pipeline.sources.scene import Composite, ReadGrid
from pipeline.sources.sentinelhub_client import (
    Pace,
    PacedClient,
    ProcessingUnitBudget,
    data_collection,
    explained,
    sh_config,
)

if TYPE_CHECKING:
    from pipeline.config import DateRange, SentinelHubSource, Windows
    from pipeline.inputs.grid import Cell

log = logging.getLogger(__name__)

#: The bands of a cached acquisition, in file order.
BANDS: tuple[str, ...] = (*REFLECTANCE_BANDS, SCL_BAND)
#: The bands each Process request returns: the cached ones, then dataMask (where the tiles have data).
REQUEST_BANDS: tuple[str, ...] = (*BANDS, "dataMask")
#: What the cached pixels are: digital numbers as archived (the offset is applied on reading).
PROCESSING = "sentinelhub-dn-unharmonised-v1"
#: The Process API's largest output side, in pixels.
MAX_SIDE = 2500
#: The ledger of processing units spent per month, beside the cached imagery.
LEDGER = "sentinelhub_processing_units.json"

EVALSCRIPT = f"""//VERSION=3
function setup() {{
  return {{
    input: [{{bands: [{", ".join(f'"{b}"' for b in REQUEST_BANDS)}], units: "DN"}}],
    output: {{bands: {len(REQUEST_BANDS)}, sampleType: "UINT16"}}
  }};
}}
function evaluatePixel(s) {{
  return [{", ".join(f"s.{b}" for b in REQUEST_BANDS)}];
}}
"""


def processing_units(width: int, height: int, input_bands: int = len(BANDS)) -> float:
    """Processing units of one Process request, by Sentinel Hub's definition: 1 PU is 512 x 512 px of
    3 input bands (dataMask not counted), one sample, 8- or 16-bit output; the area factor is at
    least 0.01 and a request costs at least 0.005 PU."""
    return max(max(width * height / 512**2, 0.01) * input_bands / 3, 0.005)


def split_grid(grid: ReadGrid, max_side: int = MAX_SIDE) -> list[tuple[int, int, ReadGrid]]:
    """(row, col, sub-grid) pieces of at most `max_side` px a side that tile the grid exactly."""
    def cuts(n: int) -> list[tuple[int, int]]:
        step = math.ceil(n / math.ceil(n / max_side))
        return [(s, min(step, n - s)) for s in range(0, n, step)]

    return [(r, c, ReadGrid(grid.crs, grid.transform @ Affine.translation(c, r), w, h))
            for r, h in cuts(grid.height) for c, w in cuts(grid.width)]


@dataclass(frozen=True)
class CatalogTile:
    """One Catalog feature: a tile of one acquisition, with its cloud cover and footprint (WGS84)."""

    id: str
    when: date
    cloud_cover: float | None
    footprint: BaseGeometry


class SentinelHubService:
    """The authenticated connection: Catalog searches and Process requests through one paced client."""

    def __init__(self, settings: SentinelHubSource) -> None:
        self.settings = settings
        self.config = sh_config(settings)
        self.url = self.config.sh_base_url
        self.collection = data_collection(settings.collection, self.url)
        self.client = PacedClient(self.config, Pace(settings.requests_per_minute))
        self.catalog = SentinelHubCatalog(config=self.config)
        self.catalog.client = self.client  # searches are paced and retried like imagery requests
        cache = settings.cache or Path("imagery_cache")
        self.budget = ProcessingUnitBudget(cache / LEDGER, settings.processing_units_per_month, self.url)
        with explained(self.url, "collection lookup", collection=settings.collection):
            self.catalog.get_collection(self.collection)

    def search(self, bbox: tuple[float, float, float, float], window: DateRange,
               max_cloud_cover: float | None) -> list[CatalogTile]:
        """Tiles over a WGS84 bbox in the window; cloud cover filtered by the Catalog (100 % never kept)."""
        cloud = f"eo:cloud_cover <= {max_cloud_cover:g}" if max_cloud_cover is not None else "eo:cloud_cover < 100"
        with explained(self.url, "Catalog search", collection=self.settings.collection):
            features = list(self.catalog.search(self.collection, time=(window.start, window.end),
                                                bbox=BBox(bbox, CRS.WGS84), filter=cloud, limit=100))
        return [CatalogTile(f["id"], datetime.fromisoformat(f["properties"]["datetime"].replace("Z", "+00:00")).date(),
                            f["properties"].get("eo:cloud_cover"), shape(f["geometry"])) for f in features]

    def window_tiles(self, bbox: tuple[float, float, float, float], window: DateRange) -> list[CatalogTile]:
        """The window's usable tiles; an empty search or a wholly cloudy window is an error, not a blank."""
        limit = self.settings.max_cloud_cover
        tiles = self.search(bbox, window, limit)
        if tiles:
            return tiles
        span = f"between {window.start} and {window.end}"
        everything = self.search(bbox, window, 100.0)
        if not everything:
            raise InputError(self.url, "windows", f"the Catalog found no acquisition of collection "
                             f"{self.settings.collection!r} over the AOI {span}",
                             "check the window's dates (Sentinel-2 L2A exists from 2017 on) and the AOI, "
                             "or widen the window")
        clearest: dict[date, float] = {}
        for t in everything:
            clearest[t.when] = min(clearest.get(t.when, 100.0), t.cloud_cover if t.cloud_cover is not None else 100.0)
        seen = ", ".join(f"{d} ({c:.0f}% cloud)" for d, c in sorted(clearest.items()))
        above = f"above max_cloud_cover {limit:g}%" if limit is not None else "wholly cloudy"
        raise InputError(self.url, "source.max_cloud_cover", f"every acquisition over the AOI {span} is {above}: "
                         f"{seen}", "widen the window to take in clearer dates, or raise source.max_cloud_cover "
                         "(per-pixel cloud masking keeps the clear parts of a cloudy scene)")

    def fetch(self, day: date, grid: ReadGrid) -> np.ndarray:
        """REQUEST_BANDS of one day on the grid, in pieces the Process API accepts, stitched."""
        pieces = split_grid(grid)
        units = [processing_units(g.width, g.height) for _, _, g in pieces]
        self.budget.check(sum(units))
        requests = [self._request(day, g).download_list[0] for _, _, g in pieces]
        with explained(self.url, "Process request", collection=self.settings.collection):
            responses = self.client.download(requests, max_threads=1, decode_data=False)
        out = np.zeros((len(REQUEST_BANDS), grid.height, grid.width), dtype=np.uint16)
        for (row, col, piece), response, estimate in zip(pieces, responses, units, strict=True):
            out[:, row:row + piece.height, col:col + piece.width] = self._decode(response.content, piece)
            spent = {k.lower(): v for k, v in response.headers.items()}.get("x-processingunits-spent")
            self.budget.spend(float(spent) if spent is not None else estimate)
        return out

    def _request(self, day: date, grid: ReadGrid) -> SentinelHubRequest:
        epsg = rasterio.crs.CRS.from_user_input(grid.crs).to_epsg()
        day_range = (datetime.combine(day, datetime.min.time()), datetime.combine(day, datetime.max.time()))
        data = SentinelHubRequest.input_data(self.collection, time_interval=day_range,
                                             mosaicking_order=MosaickingOrder.MOST_RECENT,
                                             other_args={"processing": {"harmonizeValues": False}})
        return SentinelHubRequest(evalscript=EVALSCRIPT, input_data=[data],
                                  responses=[SentinelHubRequest.output_response("default", MimeType.TIFF)],
                                  bbox=BBox(grid.bounds, CRS(epsg)), size=(grid.width, grid.height),
                                  config=self.config)

    def _decode(self, content: bytes, grid: ReadGrid) -> np.ndarray:
        expected = (len(REQUEST_BANDS), grid.height, grid.width)
        try:
            with MemoryFile(content) as mem, mem.open() as src:
                pixels = src.read()
        except rasterio.errors.RasterioIOError:
            pixels = None
        if pixels is None or pixels.shape != expected:
            got = "not a GeoTIFF" if pixels is None else f"an image of shape {pixels.shape}"
            raise InputError(self.url, None, f"the Process API answered with {got}, expected {expected}",
                             "run again; if it persists, report it with the eoleads version") from None
        return pixels.astype(np.uint16)


def write_acquisition(path: Path, pixels: np.ndarray, day: date, grid: ReadGrid) -> None:
    """A cache-ready GeoTIFF: the bands as archived, 0 (no data) where dataMask says there is none,
    tagged so the local source applies L2A radiometry by date."""
    data = np.where(pixels[-1] > 0, pixels[:-1], 0).astype(np.uint16)
    with rasterio.open(path, "w", driver="GTiff", width=grid.width, height=grid.height, count=len(BANDS),
                       dtype="uint16", crs=grid.crs, transform=grid.transform, nodata=0) as dst:
        dst.write(data)
        dst.update_tags(ACQUISITION_DATE=day.isoformat(), PROCESSING_LEVEL="L2A",
                        QUANTIFICATION_VALUE=f"{L2A_QUANTIFICATION:g}", HARMONIZE_VALUES="false",
                        SPACECRAFT="Sentinel-2 (Sentinel Hub Process API)")


class SentinelHubImagery:
    """Composites of Sentinel Hub acquisitions, each fetched once per cell grid and kept in the imagery cache."""

    bands = REFLECTANCE_BANDS

    def __init__(self, settings: SentinelHubSource, aoi_wgs84: BaseGeometry) -> None:
        self.service = SentinelHubService(settings)
        self.cache = ImageryCache(settings.cache or Path("imagery_cache"))
        self._cache_source = f"sentinelhub:{settings.base_url or settings.endpoint}:{settings.collection}"
        self._bbox = tuple(aoi_wgs84.bounds)
        self._windows: dict[tuple[date, date], tuple[list[CatalogTile], STRtree]] = {}

    def _tiles(self, window: DateRange) -> tuple[list[CatalogTile], STRtree]:
        k = (window.start, window.end)
        if k not in self._windows:
            tiles = self.service.window_tiles(self._bbox, window)
            self._windows[k] = (tiles, STRtree([t.footprint for t in tiles]))
        return self._windows[k]

    def _files(self, grid: ReadGrid, window: DateRange) -> list[ImageFile]:
        """One file per day of the window whose tiles reach the grid, each fetched once (through the cache)."""
        tiles, tree = self._tiles(window)
        grid_wgs84 = box(*transform_bounds(grid.crs, "EPSG:4326", *grid.bounds))
        days: dict[date, list[str]] = defaultdict(list)
        for i in sorted(tree.query(grid_wgs84, predicate="intersects")):
            days[tiles[i].when].append(tiles[i].id)
        return [inspect_file(self._cached(day, ids, grid)) for day, ids in sorted(days.items())]

    def composite(self, grid: ReadGrid, window: DateRange) -> Composite | None:
        files = self._files(grid, window)
        return composite_of(files, grid, self.bands) if files else None

    def acquisition_reads(self, grid: ReadGrid, window: DateRange) -> list[tuple[date, np.ndarray]]:
        """Each day of the window on the grid, not composited (for a lead's confidence)."""
        return separate_reads(self._files(grid, window), grid, self.bands)

    def _cached(self, day: date, tile_ids: list[str], grid: ReadGrid) -> Path:
        key = CacheKey(self._cache_source, f"{day}:{'+'.join(sorted(tile_ids))}", grid, BANDS, PROCESSING)
        found = self.cache.get(key)
        if found is not None:
            return found
        pixels = self.service.fetch(day, grid)
        return self.cache.put(key, lambda tmp: write_acquisition(tmp, pixels, day, grid))


def plan_sentinelhub(settings: SentinelHubSource, aoi_wgs84: BaseGeometry, cells: list[Cell],
                     windows: Windows) -> SourcePlan:
    """Search both windows (the Catalog only, no imagery) and count Process requests, bytes and
    processing units, against the configured budgets."""
    from pipeline.config import GridConfig
    from pipeline.leads.evidence import CHIP_MIN_M

    service = SentinelHubService(settings)
    bbox = tuple(aoi_wgs84.bounds)
    tiles = [t for w in (windows.baseline, windows.monitoring) for t in service.window_tiles(bbox, w)]
    footprints = cell_footprints_wgs84(cells)
    cell_idx, tile_idx = STRtree([t.footprint for t in tiles]).query(footprints, predicate="intersects")
    fetches = len({(c, tiles[t].when) for c, t in zip(cell_idx.tolist(), tile_idx.tolist(), strict=True)})
    margin = GridConfig().margin_px
    chip = int(CHIP_MIN_M / 10)  # px of the smallest evidence image at 10 m
    side = cells[0].size_px + 2 * margin if cells else 0
    pieces = split_grid(ReadGrid(cells[0].crs, cells[0].transform(margin), side, side)) if cells else []
    per_fetch = sum(processing_units(g.width, g.height) for _, _, g in pieces)
    requests, units = fetches * len(pieces), fetches * per_fetch
    notes = [f"{len(pieces)} Process request(s) per cell and acquisition day (cells of {side} x {side} px with the "
             f"default halo of {margin} px): {per_fetch:.2f} processing units, ({side} x {side}) / (512 x 512) "
             f"x {len(BANDS)} bands / 3 for UINT16",
             "with evidence on, each lead adds one small request per acquisition day for its images (about "
             f"{processing_units(chip, chip):.2f} PU each); the leads are known only after the run",
             f"acquisitions already in the imagery cache ({settings.cache}) are not fetched again"]
    if settings.processing_units_per_month is not None:
        spent = service.budget.spent()
        share = (units + spent) / settings.processing_units_per_month
        notes.append(f"with {spent:.1f} already spent this month, {100 * share:.0f}% of "
                     f"processing_units_per_month ({settings.processing_units_per_month:g})"
                     + ("; the run would stop when the budget is reached" if share > 1 else ""))
    if settings.requests_per_minute:
        notes.append(f"at {settings.requests_per_minute} requests per minute: at least "
                     f"{requests / settings.requests_per_minute:.0f} minutes of fetching")
    return SourcePlan(f"sentinelhub {service.url} {settings.collection}", len(cells),
                      len({t.id for t in tiles}), requests, fetches * side * side * len(REQUEST_BANDS) * 2,
                      processing_units=round(units, 2), notes=notes)
