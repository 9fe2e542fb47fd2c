"""What a change is: categories, detectors, and the scene simulator used to test them."""

from __future__ import annotations

from detectors.interface import Detector


def load_detector(name: str, active: list[str] | None = None) -> Detector:
    """The detector a run configuration names, for the categories the run looks for (all if None)."""
    if name == "baseline":
        from detectors.baseline import SpectralBaseline

        return SpectralBaseline(active)
    raise ValueError(f"unknown detector {name!r}; available: baseline")
