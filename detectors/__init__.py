"""What a change is: categories, detectors, and the scene simulator used to test them."""

from __future__ import annotations

import os
from pathlib import Path

from detectors.interface import Detector

# torch's CPU tensors of 2 MiB and more on transparent huge pages, where the system offers them on
# request (its default): a batch's activations are allocated afresh for every batch, and faulting
# them in 4 KiB at a time cost a tenth of the network's time and a quarter of the features' (read
# by torch at its first such allocation, so set before any; a value the user set is kept).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

#: The model a run uses unless its configuration names another.
DEFAULT_MODEL = "eoleads-s2-unet"


def detector_label(name: str) -> str:
    """A detector's name fit for a folder: a model card given by path is named by its file's stem."""
    return Path(name).stem if name.endswith(".json") else name


def weights_hash(name: str) -> str:
    """The sha256 a named detector's weights must have ("" for the weightless baseline)."""
    if name == "baseline":
        return ""
    from detectors.learned import resolve_card
    from detectors.model_card import ModelCard

    return ModelCard.read(resolve_card(name)).weights_sha256


def load_detector(name: str, active: list[str] | None = None, device: str = "auto") -> Detector:
    """The detector a run configuration names ("baseline", a model in weights/, or a model card path),
    for the categories the run looks for (all if None)."""
    if name == "baseline":
        from detectors.baseline import SpectralBaseline

        return SpectralBaseline(active)
    from detectors.learned import SegmentationDetector, resolve_card

    return SegmentationDetector.load(resolve_card(name), active, device)
