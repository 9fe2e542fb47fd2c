"""STAC catalogs of the simulator's scenes, for tests: on disk, and as an API served on 127.0.0.1.

Each multi-band simulated GeoTIFF becomes one item with one COG per band, keyed as Earth Search keys
them (blue, green, ..., scl), so a STAC run reads exactly the pixels a local run reads. The API
serves the landing page, /conformance, /collections/<id> and /search (GET and POST, paged through
`next` links), and the assets with HTTP range requests, counting every asset request.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pystac
import rasterio
from rasterio.warp import transform_bounds
from shapely.geometry import box, mapping

from detectors.bands import L2A_QUANTIFICATION, SCL_BAND
from pipeline.sources.stac import EARTH_SEARCH_ASSETS

COLLECTION = "sentinel-2-l2a"
CLOUDY_SCL = (3, 8, 9, 10)


@dataclass
class ServedItem:
    """One acquisition: its STAC item as a dict (asset hrefs relative to the server root)."""

    id: str
    when: datetime
    bbox: tuple[float, float, float, float]
    properties: dict
    assets: dict[str, dict]

    def to_dict(self, base: str) -> dict:
        return {"type": "Feature", "stac_version": "1.0.0", "id": self.id, "collection": COLLECTION,
                "bbox": list(self.bbox), "geometry": mapping(box(*self.bbox)),
                "properties": {"datetime": self.when.strftime("%Y-%m-%dT%H:%M:%SZ"), **self.properties},
                "links": [], "assets": {k: {**a, "href": f"{base}/{a['href']}"} for k, a in self.assets.items()},
                "stac_extensions": []}


def split_into_band_cogs(files: list[Path], folder: Path) -> list[ServedItem]:
    """One COG per band of each multi-band L2A file, and the item describing them."""
    items = []
    for path in sorted(files):
        with rasterio.open(path) as src:
            tags, profile = src.tags(), src.profile
            names = src.descriptions
            when = datetime.fromisoformat(tags["ACQUISITION_DATE"]).replace(hour=3, tzinfo=UTC)
            item_id = f"S2_SIM_{when:%Y%m%d}_{path.stem}"
            scale = 1.0 / float(tags.get("QUANTIFICATION_VALUE", L2A_QUANTIFICATION))
            offset = float(tags["BOA_ADD_OFFSET"]) * scale
            assets, scl = {}, None
            for i, name in enumerate(names, start=1):
                key = EARTH_SEARCH_ASSETS[name]
                band = src.read(i)
                if name == SCL_BAND:
                    scl = band
                out = folder / item_id / f"{key}.tif"
                out.parent.mkdir(parents=True, exist_ok=True)
                with rasterio.open(out, "w", driver="COG", width=src.width, height=src.height, count=1,
                                   dtype=band.dtype, crs=src.crs, transform=src.transform, nodata=profile["nodata"],
                                   compress="DEFLATE", blocksize=256, overviews="NONE") as dst:
                    dst.write(band, 1)
                raster = {"nodata": 0, "data_type": "uint16"}
                if name != SCL_BAND:
                    raster.update(scale=scale, offset=offset)
                assets[key] = {"href": f"{item_id}/{key}.tif", "type": "image/tiff; application=geotiff; "
                               "profile=cloud-optimized", "roles": ["data"], "raster:bands": [raster]}
            bbox = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        cloud = 100.0 * float(np.isin(scl, CLOUDY_SCL).mean())
        items.append(ServedItem(item_id, when, bbox, {"eo:cloud_cover": round(cloud, 2),
                                                      "s2:processing_baseline": "05.10"}, assets))
    return items


def write_static_catalog(items: list[ServedItem], assets: Path, folder: Path) -> Path:
    """A static catalog (catalog.json, collection, items) in `folder` whose assets are the COGs in `assets`."""
    catalog = pystac.Catalog("simulated", "Simulated Sentinel-2 L2A scenes")
    extent = pystac.Extent(pystac.SpatialExtent([list(items[0].bbox)]),
                           pystac.TemporalExtent([[min(i.when for i in items), max(i.when for i in items)]]))
    collection = pystac.Collection(COLLECTION, "Simulated L2A", extent)
    catalog.add_child(collection)
    for served in items:
        item = pystac.Item.from_dict(served.to_dict(str(assets.resolve())))
        collection.add_item(item)
    catalog.normalize_hrefs(str(folder))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)  # assets keep their absolute paths on disk
    return folder / "catalog.json"


@dataclass
class StacApi:
    """A STAC API on 127.0.0.1 in a thread; `asset_requests` counts GET and HEAD requests for assets."""

    items: list[ServedItem]
    assets: Path
    page_size: int = 2
    asset_requests: int = 0
    search_requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> StacApi:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()

    def count(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    def landing(self) -> dict:
        links = [{"rel": "self", "href": f"{self.url}/", "type": "application/json"},
                 {"rel": "root", "href": f"{self.url}/", "type": "application/json"},
                 {"rel": "conformance", "href": f"{self.url}/conformance", "type": "application/json"},
                 {"rel": "data", "href": f"{self.url}/collections", "type": "application/json"},
                 {"rel": "search", "href": f"{self.url}/search", "type": "application/geo+json", "method": "GET"},
                 {"rel": "search", "href": f"{self.url}/search", "type": "application/geo+json", "method": "POST"}]
        return {"type": "Catalog", "stac_version": "1.0.0", "id": "loopback", "description": "test STAC API",
                "conformsTo": CONFORMS, "links": links}

    def collection(self) -> dict:
        return {"type": "Collection", "stac_version": "1.0.0", "id": COLLECTION, "description": "Simulated L2A",
                "license": "proprietary", "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                                                      "temporal": {"interval": [[None, None]]}},
                "links": [{"rel": "self", "href": f"{self.url}/collections/{COLLECTION}"},
                          {"rel": "root", "href": f"{self.url}/"},
                          {"rel": "items", "href": f"{self.url}/collections/{COLLECTION}/items"}]}

    def search(self, params: dict, method: str) -> dict:
        """Items matching collections, bbox and datetime, one page at a time (token = offset)."""
        hits = [i for i in self.items if _matches(i, params)]
        start = int(params.get("token") or 0)
        page = hits[start:start + int(params.get("limit") or self.page_size)][: self.page_size]
        links = []
        if start + len(page) < len(hits):
            nxt = {**params, "token": str(start + len(page))}
            if method == "POST":
                links.append({"rel": "next", "href": f"{self.url}/search", "method": "POST", "body": nxt,
                              "merge": False, "type": "application/geo+json"})
            else:
                query = "&".join(f"{k}={_param_text(v)}" for k, v in nxt.items())
                links.append({"rel": "next", "href": f"{self.url}/search?{query}", "method": "GET",
                              "type": "application/geo+json"})
        return {"type": "FeatureCollection", "features": [i.to_dict(f"{self.url}/assets") for i in page],
                "links": links, "numberMatched": len(hits), "numberReturned": len(page)}


CONFORMS = ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search",
            "https://api.stacspec.org/v1.0.0/collections", "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
            "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson"]


def _param_text(v: object) -> str:
    return ",".join(str(x) for x in v) if isinstance(v, list) else str(v)


def _matches(item: ServedItem, params: dict) -> bool:
    collections = params.get("collections")
    if isinstance(collections, str):
        collections = collections.split(",")
    if collections and COLLECTION not in collections:
        return False
    bbox = params.get("bbox")
    if bbox:
        bbox = [float(x) for x in (bbox.split(",") if isinstance(bbox, str) else bbox)]
        if not box(*bbox).intersects(box(*item.bbox)):
            return False
    span = params.get("datetime")
    if span:
        lo, hi = (None if p in ("..", "") else datetime.fromisoformat(p.replace("Z", "+00:00"))
                  for p in span.split("/"))
        if (lo and item.when < lo) or (hi and item.when > hi):
            return False
    return True


def _handler(api: StacApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet test output
            pass

        def _json(self, data: dict, status: int = 200) -> None:
            body = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_HEAD(self) -> None:
            self._asset(head=True)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path.startswith("/assets/"):
                return self._asset(head=False)
            if url.path in ("", "/"):
                return self._json(api.landing())
            if url.path == "/conformance":
                return self._json({"conformsTo": CONFORMS})
            if url.path == "/collections":
                return self._json({"collections": [api.collection()], "links": []})
            if url.path.startswith("/collections/"):
                if url.path.rstrip("/") == f"/collections/{COLLECTION}":
                    return self._json(api.collection())
                return self._json({"code": "NotFound", "description": "Collection not found"}, 404)
            if url.path == "/search":
                api.count("search_requests")
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                return self._json(api.search(params, "GET"))
            return self._json({"code": "NotFound"}, 404)

        def do_POST(self) -> None:
            if urlparse(self.path).path != "/search":
                return self._json({"code": "NotFound"}, 404)
            api.count("search_requests")
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            return self._json(api.search(body, "POST"))

        def _asset(self, head: bool) -> None:
            api.count("asset_requests")
            path = (api.assets / urlparse(self.path).path[len("/assets/"):]).resolve()
            if not path.is_file() or api.assets.resolve() not in path.parents:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = path.read_bytes()
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if m:
                lo = int(m.group(1))
                hi = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
                part = data[lo:hi + 1]
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {lo}-{hi}/{len(data)}")
            else:
                part = data
                self.send_response(200)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "image/tiff")
            self.send_header("Content-Length", str(len(part)))
            self.end_headers()
            if not head:
                self.wfile.write(part)

    return Handler
