"""The built-in demo: a simulated scene on the north-east shore of Hulun Lake, run end to end."""

from __future__ import annotations

from pathlib import Path

import yaml

from detectors.categories import PERMIT_TYPES_ZH
from pipeline.paths import AOI_DIR
from pipeline.simulator.writer import PERMIT_COLUMNS_ZH

DEMO_AOI = AOI_DIR / "demo_hulun_shore.geojson"
DEMO_SEED = 7


def demo_config(seed: int = DEMO_SEED, detector: str | None = None) -> dict:
    """The demo's run configuration; also the worked example of docs/configuration.md."""
    config = {
        "name": "demo-hulun-lake-shore",
        "aoi": [str(DEMO_AOI)],
        "windows": {"baseline": {"start": "2024-07-01", "end": "2024-08-31"},
                    "monitoring": {"start": "2025-07-01", "end": "2025-08-31"}},
        "source": {"type": "simulated", "seed": seed, "folder": "inputs"},
        "permits": [{
            "path": "inputs/permits.gpkg",
            "columns": dict(PERMIT_COLUMNS_ZH),
            "type_values": {zh: en for en, zh in PERMIT_TYPES_ZH.items()},
        }],
        "zones": [
            {"path": "inputs/zones.gpkg", "column": "zone"},
            {"path": str(AOI_DIR / "hulun_lake_protection_zone.geojson"), "zone": "lake"},
        ],
        "output": ".",
        "output_crs": "EPSG:4490",
        "device": "cpu",
    }
    if detector:
        config["detection"] = {"detector": detector}
    return config


def write_demo_config(out: Path, seed: int = DEMO_SEED, detector: str | None = None) -> Path:
    """Write the demo configuration into the demo's run folder and return its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "demo.yaml"
    text = "# eoleads demo run: simulated Sentinel-2 L2A scene, Hulun Lake north-east shore\n"
    text += yaml.safe_dump(demo_config(seed, detector), allow_unicode=True, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path
