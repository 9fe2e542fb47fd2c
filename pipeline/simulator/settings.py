"""How hard a simulated scene is: clouds, season, change sizes and surfaces, radiometry.

The defaults make the demo scene (its figures are documented); held-out evaluation scenes and
training scenes widen every range so a model cannot learn the demo's shortcuts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

#: The after-surfaces a change of each category may take when surfaces vary: the demo's own
#: first, then dark and mixed surfaces (roofs, dark ploughed soil, coal, ponds) that bright-soil
#: rules miss. Categories that share ground (temporary land, grassland and mines all happen on the
#: steppe) keep apart: what tells them apart there is the surface and the shape, so a surface
#: of one is never a surface of another.
SURFACE_CHOICES: dict[str, tuple[str, ...]] = {
    "temporary_land": ("gravel_yard", "built"),
    "forest": ("clearing", "steppe_soil", "dry_grass", "built"),
    "black_soil": ("subsoil", "fill", "water", "built", "gravel_yard"),
    "river": ("sediment", "fill", "rock_pit", "gravel_yard"),
    "grassland": ("plough", "black_soil", "steppe_soil"),
    "lake": ("fill", "built", "gravel_yard", "sediment"),
    "wetland": ("steppe_soil", "fill", "plough", "gravel_yard"),
    "mine": ("coal", "rock_pit"),
}
#: Shapes per category when shapes vary: yards and buildings are rectangles or joined
#: rectangles, fields and clearings blobs or rectangles, river disturbance follows no plan.
SHAPE_CHOICES: dict[str, tuple[str, ...]] = {
    "temporary_land": ("rect", "compound"),
    "forest": ("blob", "rect"),
    "black_soil": ("rect", "compound"),
    "river": ("blob",),
    "grassland": ("blob", "rect"),
    "lake": ("rect", "compound", "blob"),
    "wetland": ("blob", "rect"),
    "mine": ("blob", "rect"),
}


@dataclass(frozen=True)
class SceneSettings:
    """Ranges each scene draws from; a range (lo, hi) is sampled uniformly."""

    cloud_cover: tuple[float, float] = (0.03, 0.12)  # per acquisition
    phenology: tuple[float, float] = (0.85, 1.1)  # green-fraction factor per epoch
    change_size: tuple[float, float] = (0.8, 3.0)  # × the category's mapping unit (at least 5000 m²)
    misregistration_px: float = 0.4  # after-window shift, up to ± this
    radiometry: Literal["L2A", "L1C"] = "L2A"
    varied_surfaces: bool = False  # draw shapes and surfaces from SURFACE_CHOICES instead of the demo's

    def to_dict(self) -> dict:
        return asdict(self)


#: Held-out evaluation: more cloud, a stronger season shift, changes close to the mapping unit.
HELD_OUT = SceneSettings(cloud_cover=(0.15, 0.35), phenology=(0.7, 1.25), change_size=(1.0, 1.6),
                         misregistration_px=0.7, varied_surfaces=True)


def training_settings(rng: np.random.Generator) -> SceneSettings:
    """A random setting per training scene, wider than HELD_OUT on every axis."""
    lo_cloud = float(rng.uniform(0.0, 0.2))
    return SceneSettings(
        cloud_cover=(lo_cloud, lo_cloud + float(rng.uniform(0.05, 0.25))),
        phenology=(float(rng.uniform(0.6, 0.9)), float(rng.uniform(1.0, 1.3))),
        change_size=(0.3, float(rng.uniform(1.5, 4.0))),
        misregistration_px=float(rng.uniform(0.2, 1.0)),
        radiometry="L1C" if rng.random() < 0.35 else "L2A",
        varied_surfaces=True,
    )
