"""Imagery behind one interface (`ImagerySource.composite`): local GeoTIFFs and the simulator, the
scene and pair types they deliver. A configuration's `source` block builds its own source."""

from __future__ import annotations

from pipeline.sources.base import ImagerySource, read_scene

__all__ = ["ImagerySource", "read_scene"]
