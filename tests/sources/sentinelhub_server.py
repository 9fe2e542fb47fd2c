"""A loopback Sentinel Hub for tests: OAuth token, Catalog and Process endpoints over real GeoTIFFs.

It serves what sentinelhub-py's real client sends: a client-credentials token request, Catalog
searches (bbox, datetime, a CQL2 `eo:cloud_cover` filter, paging with `next`), collection lookups,
and Process requests whose evalscript names the bands it returns (as eoleads' identity evalscript
does). The pixels are cut with rasterio from Sentinel-2-like GeoTIFFs onto the requested
bbox/size/CRS (nearest, as Sentinel Hub resamples by default), one acquisition day per time range,
most recent first. It counts requests and injects faults.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape

CATALOG = "/api/v1/catalog/1.0.0"
TOKEN_PATH = "/oauth/token"
CLOUD_CLASSES = (3, 8, 9, 10)  # cloud shadow, cloud medium/high, cirrus: the cloud cover Sentinel Hub reports
BASELINE_04 = date(2022, 1, 25)


@dataclass
class Faults:
    """What goes wrong next; each count is used up by the Process requests it hits."""

    rate_limited: int = 0  # answer 429 with Retry-After (milliseconds, as Sentinel Hub does)
    retry_after_ms: int = 50
    server_errors: int = 0  # answer 500
    dropped: int = 0  # send half of the image and close the connection
    expire_tokens_after: int | None = None  # every token issued so far stops working after this many requests


@dataclass
class Scene:
    """One GeoTIFF as a Catalog feature."""

    id: str
    path: Path
    when: date
    cloud_cover: float
    footprint: dict  # GeoJSON, WGS84
    band_index: dict[str, int]


def _scene(path: Path) -> Scene:
    with rasterio.open(path) as src:
        when = date.fromisoformat(src.tags()["ACQUISITION_DATE"][:10])
        index = {d: i + 1 for i, d in enumerate(src.descriptions) if d}
        scl = src.read(index["SCL"]) if "SCL" in index else np.zeros((1, 1))
        seen = scl > 0
        cloud = 100.0 * np.isin(scl, CLOUD_CLASSES).sum() / max(int(seen.sum()), 1)
        footprint = transform_geom(src.crs, "EPSG:4326", mapping(box(*src.bounds)))
    scene_id = f"S2B_MSIL2A_{when:%Y%m%d}T031539_N0510_R118_T50UQA_{when:%Y%m%d}T060000_{path.stem}"
    return Scene(scene_id, path, when, round(cloud, 2), footprint, index)


@dataclass
class SentinelHubServer:
    """The server; use as a context manager. `url` and `token_url` go into the source configuration."""

    imagery: list[Path]
    client_id: str = "eoleads-test-client"
    client_secret: str = "s3cr3t-Test-Value-9f27c1"
    collection: str = "sentinel-2-l2a"
    faults: Faults = field(default_factory=Faults)
    counts: Counter = field(default_factory=Counter)
    process_times: list[float] = field(default_factory=list)
    process_sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) of each image served

    def __post_init__(self) -> None:
        self.scenes = [_scene(Path(p)) for p in self.imagery]
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self._since_issue = 0

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    def __enter__(self) -> SentinelHubServer:
        server = self

        class Handler(_Handler):
            sh = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def issue_token(self) -> str:
        payload = {"azp": self.client_id, "exp": int(time.time()) + 3600}
        parts = [{"alg": "none"}, payload, {"n": len(self._tokens)}]
        token = ".".join(base64.urlsafe_b64encode(json.dumps(p).encode()).decode().rstrip("=") for p in parts)
        with self._lock:
            self._tokens.add(token)
            self._since_issue = 0
        return token

    def token_valid(self, header: str | None) -> bool:
        with self._lock:
            return bool(header) and header.removeprefix("Bearer ") in self._tokens

    def used_token(self) -> None:
        """Count an authorised request; past the fault's limit, every token issued so far expires (once)."""
        with self._lock:
            self._since_issue += 1
            if self.faults.expire_tokens_after is not None and self._since_issue >= self.faults.expire_tokens_after:
                self._tokens.clear()
                self.faults.expire_tokens_after = None

    def search(self, body: dict) -> tuple[int, dict]:
        if body.get("collections") != [self.collection]:
            return 404, {"code": 404, "description": f"Collection {body.get('collections')} not found"}
        start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")).date() for t in body["datetime"].split("/"))
        area = box(*body["bbox"])
        cloud = re.fullmatch(r"eo:cloud_cover\s*(<=|<)\s*([\d.]+)", (body.get("filter") or "").strip())
        hits = [s for s in self.scenes if start <= s.when <= end and shape(s.footprint).intersects(area)]
        if cloud:
            limit = float(cloud.group(2))
            hits = [s for s in hits if (s.cloud_cover <= limit if cloud.group(1) == "<=" else s.cloud_cover < limit)]
        offset, limit = int(body.get("next") or 0), int(body.get("limit", 10))
        page = hits[offset:offset + limit]
        features = [{"type": "Feature", "stac_version": "1.0.0", "id": s.id, "geometry": s.footprint,
                     "bbox": list(shape(s.footprint).bounds),
                     "properties": {"datetime": f"{s.when.isoformat()}T03:15:39Z", "eo:cloud_cover": s.cloud_cover}}
                    for s in page]
        more = offset + limit < len(hits)
        return 200, {"type": "FeatureCollection", "features": features,
                     "context": {"limit": limit, "returned": len(page), **({"next": offset + limit} if more else {})}}

    def process(self, body: dict) -> tuple[int, dict | bytes, dict]:
        data = body["input"]["data"][0]
        if data["type"] != self.collection:
            return 400, {"error": {"status": 400, "reason": "Bad Request", "code": "COMMON_BAD_PAYLOAD",
                                   "message": f"Invalid collection type: {data['type']}"}}, {}
        script = body["evalscript"]
        bands = re.findall(r'"(\w+)"', re.search(r"bands:\s*\[([^\]]*)\]", script).group(1))
        if 'units: "DN"' not in script or 'sampleType: "UINT16"' not in script:
            return 400, {"error": {"status": 400, "message": "this loopback server serves UINT16 DN only"}}, {}
        epsg = int(body["input"]["bounds"]["properties"]["crs"].rsplit("/", 1)[-1])
        minx, miny, maxx, maxy = body["input"]["bounds"]["bbox"]
        width, height = body["output"]["width"], body["output"]["height"]
        if max(width, height) > 2500:
            return 400, {"error": {"status": 400, "message": "The maximum size is 2500 x 2500 px"}}, {}
        time_range = data["dataFilter"]["timeRange"]
        start, end = (datetime.fromisoformat(time_range[k].replace("Z", "+00:00")) for k in ("from", "to"))
        harmonise = data.get("processing", {}).get("harmonizeValues", True)
        transform = Affine((maxx - minx) / width, 0, minx, 0, -(maxy - miny) / height, maxy)
        out = np.zeros((len(bands), height, width), dtype=np.uint16)
        filled = np.zeros((height, width), dtype=bool)
        chosen = sorted((s for s in self.scenes if start.date() <= s.when <= end.date()), key=lambda s: s.when,
                        reverse=data["dataFilter"].get("mosaickingOrder", "mostRecent") == "mostRecent")
        for s in chosen:
            with rasterio.open(s.path) as src, WarpedVRT(src, crs=f"EPSG:{epsg}", transform=transform, width=width,
                                                        height=height, resampling=Resampling.nearest,
                                                        src_nodata=0, nodata=0) as vrt:
                pixels = vrt.read()
            new = (pixels[0] > 0) & ~filled
            for k, band in enumerate(bands):
                if band == "dataMask":
                    continue
                values = pixels[s.band_index[band] - 1]
                if harmonise is not False and band != "SCL" and s.when >= BASELINE_04:
                    values = np.clip(values.astype(np.int32) - 1000, 0, None).astype(np.uint16)
                out[k][new] = values[new]
            filled |= new
        if "dataMask" in bands:
            out[bands.index("dataMask")] = filled
        units = max(max(width * height / 512**2, 0.01) * len([b for b in bands if b != "dataMask"]) / 3, 0.005)
        with MemoryFile() as mem:
            with mem.open(driver="GTiff", width=width, height=height, count=len(bands), dtype="uint16",
                          crs=f"EPSG:{epsg}", transform=transform) as dst:
                dst.write(out)
            return 200, mem.read(), {"x-processingunits-spent": f"{units:.4f}"}


class _Handler(BaseHTTPRequestHandler):
    sh: SentinelHubServer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read the counts, not a request log."""

    def _send(self, status: int, body: dict | bytes, headers: dict | None = None, cut: bool = False) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "image/tiff" if isinstance(body, bytes) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data[:len(data) // 2] if cut else data)
        if cut:
            self.wfile.flush()
            self.close_connection = True

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _authorised(self) -> bool:
        if self.sh.token_valid(self.headers.get("Authorization")):
            self.sh.used_token()
            return True
        self._send(401, {"error": {"status": 401, "reason": "Unauthorized",
                                   "message": "You are not authorized! Please provide a valid access token."}})
        return False

    def do_GET(self) -> None:
        sh = self.sh
        if self.path.startswith(f"{CATALOG}/collections/"):
            sh.counts["collection"] += 1
            if not self._authorised():
                return
            name = self.path.rsplit("/", 1)[-1]
            if name == sh.collection:
                self._send(200, {"type": "Collection", "id": name, "stac_version": "1.0.0"})
            else:
                self._send(404, {"code": 404, "description": f"Collection not found: {name}"})
            return
        self._send(404, {"error": {"status": 404, "message": "not found"}})

    def do_POST(self) -> None:
        sh = self.sh
        body = self._body()
        if self.path == TOKEN_PATH:
            sh.counts["token"] += 1
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            if (form.get("grant_type") == "client_credentials" and form.get("client_id") == sh.client_id
                    and form.get("client_secret") == sh.client_secret):
                self._send(200, {"access_token": sh.issue_token(), "expires_in": 3600, "token_type": "Bearer"})
            else:
                self._send(401, {"error": "invalid_client", "error_description": "Invalid client credentials"})
            return
        if self.path == f"{CATALOG}/search":
            sh.counts["catalog"] += 1
            if self._authorised():
                self._send(*sh.search(json.loads(body)))
            return
        if self.path == "/api/v1/process":
            sh.counts["process"] += 1
            sh.process_times.append(time.monotonic())
            faults = sh.faults
            if faults.rate_limited > 0:
                faults.rate_limited -= 1
                self._send(429, {"error": {"status": 429, "reason": "Too Many Requests",
                                           "message": "You have exceeded the rate limit"}},
                           {"Retry-After": str(faults.retry_after_ms)})
                return
            if faults.server_errors > 0:
                faults.server_errors -= 1
                self._send(500, {"error": {"status": 500, "reason": "Internal Server Error",
                                           "message": "Illegal state"}})
                return
            if not self._authorised():
                return
            request = json.loads(body)
            status, payload, headers = sh.process(request)
            cut = status == 200 and faults.dropped > 0
            if cut:
                faults.dropped -= 1
            elif status == 200:
                sh.counts["process_served"] += 1
                sh.process_sizes.append((request["output"]["width"], request["output"]["height"]))
            self._send(status, payload, headers, cut=cut)
            return
        self._send(404, {"error": {"status": 404, "message": "not found"}})
