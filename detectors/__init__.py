"""What a change is: categories, detectors, and the scene simulator used to test them."""

from __future__ import annotations

from detectors.interface import Detector


def load_detector(name: str, active: list[str] | None = None, device: str = "auto") -> Detector:
    """The detector a run configuration names ("baseline", a model in weights/, or a model card path),
    for the categories the run looks for (all if None)."""
    if name == "baseline":
        from detectors.baseline import SpectralBaseline

        return SpectralBaseline(active)
    from detectors.learned import SegmentationDetector, resolve_card

    return SegmentationDetector.load(resolve_card(name), active, device)
