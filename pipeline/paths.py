"""Where the project's own data live (AOI files and shipped weights)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
AOI_DIR = PROJECT_ROOT / "aoi"
