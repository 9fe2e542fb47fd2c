"""Training chips from the simulated scenes: balanced draws, and the augmentation every chip gets.

Chips are centred on a change object chosen category first, then object (so small and dark
changes, and rare categories, are seen as often as big bright ones), on a distractor (a change
that is not a lead), or anywhere. Flips, rotations, per-date gains and dropped zone layers
make the model indifferent to orientation, calibration and which zones a user has.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from detectors.categories import CLASSIFIED_IDS
from detectors.features import CONTEXT_ZONES, UNKNOWN_ZONE
from pipeline.training.scenes import SceneArrays

#: Where a simulated chip is centred: on a change, on a distractor, anywhere.
CENTRE_ON = {"change": 0.6, "distractor": 0.15, "anywhere": 0.25}
ZONE_DROPOUT = 0.25


@dataclass
class Chip:
    """One training example before the feature stack is made."""

    before: np.ndarray  # (bands, h, w)
    after: np.ndarray
    valid: np.ndarray  # (h, w) bool
    zones: np.ndarray  # (len(CONTEXT_ZONES), h, w) float: 1 in, 0 out, UNKNOWN_ZONE
    labels: np.ndarray  # (h, w) uint8


class ChipSampler:
    """Draws chips from simulated scenes."""

    def __init__(self, scenes: list[SceneArrays], size: int, rng: np.random.Generator) -> None:
        self.scenes, self.size, self.rng = scenes, size, rng
        # every change object, by category: (scene index, row, col) of its bounding box's centre
        self.objects: dict[int, list[tuple[int, int, int]]] = {k: [] for k in range(1, len(CLASSIFIED_IDS) + 1)}
        for s, scene in enumerate(scenes):
            for k in self.objects:
                comps, _ = ndimage.label(scene.labels == k)
                for rows, cols in ndimage.find_objects(comps):
                    self.objects[k].append((s, (rows.start + rows.stop) // 2, (cols.start + cols.stop) // 2))
        self.categories_present = [k for k, v in self.objects.items() if v]

    def with_rng(self, rng: np.random.Generator) -> ChipSampler:
        """The same scenes, pairs and object index, drawing with another generator."""
        other = copy.copy(self)
        other.rng = rng
        return other

    def _window(self, shape: tuple[int, int], r: int, c: int, jitter: bool) -> tuple[int, int]:
        half = self.size // 2
        if jitter:
            r += int(self.rng.integers(-half + 8, half - 8))
            c += int(self.rng.integers(-half + 8, half - 8))
        r0 = int(np.clip(r - half, 0, shape[0] - self.size))
        c0 = int(np.clip(c - half, 0, shape[1] - self.size))
        return r0, c0

    def simulated(self) -> Chip:
        rng = self.rng
        mode = rng.choice(list(CENTRE_ON), p=list(CENTRE_ON.values()))
        if mode == "change" and self.categories_present:
            k = self.categories_present[rng.integers(len(self.categories_present))]
            s, r, c = self.objects[k][rng.integers(len(self.objects[k]))]
        else:
            s = int(rng.integers(len(self.scenes)))
            where = self.scenes[s].distractors if mode == "distractor" else None
            if where is not None and where.any():
                rows, cols = np.nonzero(where)
                i = rng.integers(rows.size)
                r, c = int(rows[i]), int(cols[i])
            else:
                r, c = (int(rng.integers(n)) for n in self.scenes[s].labels.shape)
        scene = self.scenes[s]
        r0, c0 = self._window(scene.labels.shape, r, c, jitter=True)
        win = (slice(r0, r0 + self.size), slice(c0, c0 + self.size))
        zones = scene.zones[(slice(None), *win)].astype(np.float32)
        for j in range(len(CONTEXT_ZONES)):
            if rng.random() < ZONE_DROPOUT:
                zones[j] = UNKNOWN_ZONE
        return Chip(scene.before[(slice(None), *win)], scene.after[(slice(None), *win)], scene.valid[win],
                    zones, scene.labels[win])


def augment(chip: Chip, rng: np.random.Generator) -> Chip:
    """A random rotation and flip, and a small independent gain per date and band."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))

    def geo(a: np.ndarray) -> np.ndarray:
        a = np.rot90(a, k, axes=(-2, -1))
        return np.ascontiguousarray(a[..., ::-1] if flip else a)

    gain_b = rng.normal(1.0, 0.03, size=(chip.before.shape[0], 1, 1)).astype(np.float32)
    gain_a = rng.normal(1.0, 0.03, size=(chip.after.shape[0], 1, 1)).astype(np.float32)
    return Chip(geo(chip.before * gain_b), geo(chip.after * gain_a), geo(chip.valid), geo(chip.zones),
                geo(chip.labels))
