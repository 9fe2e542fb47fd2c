"""Training chips that teach real change: labelled real cities (partial labels), implants into
unlabelled real pairs made into no-change pairs, and the simulated scenes.

Implants into real pairs used to label every other pixel "no change", although those cities
hold real construction; the model learned to ignore real change. Here a labelled city's change
is supervised as "changed, category unknown" (CHANGED_ANY) and its rim is ignored, and implants
go into a same-image pair (`pipeline.simulator.no_change`) whose every other pixel is a true
negative. The simulated scenes keep teaching the categories and their zones.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from detectors.features import CONTEXT_ZONES, UNKNOWN_ZONE, feature_stack
from pipeline.simulator.implants import implant
from pipeline.simulator.no_change import same_image_pair
from pipeline.simulator.real_texture import TextureBank, texture_implants
from pipeline.sources.labelled import LabelledPair
from pipeline.sources.pair import read_pair
from pipeline.training.chips import Chip, ChipSampler, augment
from pipeline.training.targets import CHANGED_ANY, IGNORE

#: One unlabelled real pair: before and after reflectance (bands, H, W), seen on both dates (H, W).
Background = tuple[np.ndarray, np.ndarray, np.ndarray]


def load_unlabelled(folder: Path, names: tuple[str, ...]) -> list[Background]:
    """(before, after, valid) reflectance of unlabelled real pairs, read in place."""
    out = []
    for n in names:
        p = read_pair(Path(folder) / n / "before.tif", Path(folder) / n / "after.tif")
        out.append((np.nan_to_num(p.before), np.nan_to_num(p.after), p.valid))
    return out


@dataclass
class Mixture:
    """Shares of chip sources in a batch (they need not sum to 1; they are normalised)."""

    simulated: float = 0.5
    labelled: float = 0.3
    implanted: float = 0.2
    texture_share: float = 0.6  # implants into real pairs: share pasted from real textures (rest: simulator spectra)
    labelled_implants: float = 0.3  # labelled-city chips that also get 1–2 real-texture implants


class RealChangeSampler:
    """Chips from simulated scenes, labelled cities (partial labels) and implanted real pairs."""

    def __init__(self, sim: ChipSampler | None, cities: list[LabelledPair],
                 backgrounds: list[tuple[np.ndarray, np.ndarray, np.ndarray]], bank: TextureBank, size: int,
                 rng: np.random.Generator, mixture: Mixture) -> None:
        self.sim, self.cities, self.backgrounds, self.bank = sim, cities, backgrounds, bank
        self.size, self.rng, self.mixture = size, rng, mixture
        shares = np.array([mixture.simulated if sim else 0.0, mixture.labelled if cities else 0.0,
                           mixture.implanted if backgrounds else 0.0])
        self.shares = shares / shares.sum()
        self.city_objects = []
        for c in cities:
            comp, n = ndimage.label(c.change & c.valid, structure=np.ones((3, 3), bool))
            self.city_objects.append(ndimage.center_of_mass(np.ones_like(comp), comp, range(1, n + 1)))

    def with_rng(self, rng: np.random.Generator) -> RealChangeSampler:
        other = copy.copy(self)
        other.rng = rng
        if self.sim is not None:
            other.sim = self.sim.with_rng(rng)
        return other

    def _window(self, h: int, w: int, r: int | None = None, c: int | None = None) -> tuple[slice, slice]:
        s, rng = self.size, self.rng
        if r is None:
            r0, c0 = int(rng.integers(h - s + 1)), int(rng.integers(w - s + 1))
        else:
            r0 = int(np.clip(r - s // 2 + rng.integers(-s // 3, s // 3), 0, h - s))
            c0 = int(np.clip(c - s // 2 + rng.integers(-s // 3, s // 3), 0, w - s))
        return slice(r0, r0 + s), slice(c0, c0 + s)

    def labelled(self) -> Chip:
        """A labelled-city chip: change → CHANGED_ANY, unchanged → background, label edges and unseen → IGNORE."""
        rng = self.rng
        i = int(rng.integers(len(self.cities)))
        city, objs = self.cities[i], self.city_objects[i]
        h, w = city.change.shape
        if objs and rng.random() < 0.6:
            r, c = objs[rng.integers(len(objs))]
            win = self._window(h, w, int(r), int(c))
        else:
            win = self._window(h, w)
        b = np.nan_to_num(city.before[(slice(None), *win)])
        a = np.nan_to_num(city.after[(slice(None), *win)])
        valid = city.valid[win]
        change = city.change[win]
        edge = ndimage.binary_dilation(change, iterations=1) & ~change
        labels = np.where(change, CHANGED_ANY, 0).astype(np.uint8)
        labels[edge | ~valid] = IGNORE
        zones = np.full((len(CONTEXT_ZONES), self.size, self.size), UNKNOWN_ZONE, np.float32)
        if rng.random() < self.mixture.labelled_implants:
            forbidden = ndimage.binary_dilation(change, iterations=4) | ~valid
            a, labels, zones, _ = texture_implants(a, self.bank, rng, int(rng.integers(1, 3)), labels, zones,
                                                   forbidden)
        return Chip(b, a, valid, zones, labels)

    def implanted(self) -> Chip:
        """Implants into a same-image no-change pair cut from an unlabelled real pair: every pixel
        that is not an implant is a true negative."""
        rng = self.rng
        before, _, valid_all = self.backgrounds[rng.integers(len(self.backgrounds))]
        win = self._window(*valid_all.shape)
        b, valid = before[(slice(None), *win)], valid_all[win]
        b, a = same_image_pair(b, rng)
        count = int(rng.integers(1, 4))
        n_tex = int(rng.binomial(count, self.mixture.texture_share))
        labels = np.zeros(valid.shape, np.uint8)
        zones = np.full((len(CONTEXT_ZONES), *valid.shape), UNKNOWN_ZONE, np.float32)
        if count - n_tex:
            a, labels, zones = implant(b, a, rng, count - n_tex)
        if n_tex:
            a, labels, zones, _ = texture_implants(a, self.bank, rng, n_tex, labels, zones,
                                                   ndimage.binary_dilation(labels > 0, iterations=3) | ~valid)
        labels = np.where(valid, labels, IGNORE).astype(np.uint8)
        return Chip(b.astype(np.float32), a.astype(np.float32), valid, zones, labels)

    def simulated_only(self) -> RealChangeSampler:
        """The same sampler drawing simulated chips only (with the same generator)."""
        other = copy.copy(self)
        other.shares = np.array([1.0, 0.0, 0.0])
        return other

    def chip(self) -> Chip:
        kind = self.rng.choice(3, p=self.shares)
        if kind == 0:
            chip = self.sim.simulated()
        elif kind == 1:
            chip = self.labelled()
        else:
            chip = self.implanted()
        return augment(chip, self.rng)

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Feature stacks (n, features, size, size) (not standardised) and labels (n, size, size) int64."""
        chips = [self.chip() for _ in range(n)]
        x = np.concatenate([feature_stack(c.before[None], c.after[None], c.valid[None],
                                          {z: c.zones[j][None] for j, z in enumerate(CONTEXT_ZONES)})
                            for c in chips])
        y = np.stack([c.labels.astype(np.int64) for c in chips])
        return x, y
