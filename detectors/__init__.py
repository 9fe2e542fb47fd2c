"""What a change is: categories, detectors, and the scene simulator used to test them."""

from __future__ import annotations

from detectors.interface import Detector


def load_detector(name: str) -> Detector:
    """The detector a run configuration names."""
    if name == "baseline":
        from detectors.baseline import SpectralBaseline

        return SpectralBaseline()
    raise ValueError(f"unknown detector {name!r}; available: baseline")
