"""Every split of data in one place: which scene seeds and which real pairs serve what.

Training scenes fit the weights, validation scenes pick the thresholds, held-out scenes (also
harder, `pipeline.simulator.settings.HELD_OUT`) and held-out real pairs only measure. A seed or
a pair is in one split only.
"""

from __future__ import annotations

TRAIN_SEEDS = tuple(range(1000, 1030))
VALIDATION_SEEDS = tuple(range(2000, 2006))
HELD_OUT_SEEDS = tuple(range(3000, 3005))
#: The demo's own scene and settings over five seeds (the demo itself is seed 7).
DEMO_SEEDS = (7, 11, 23, 31, 43)
#: Real pairs kept out of training, to measure false alarms on real imagery the model never saw.
HELD_OUT_PAIRS = ("montpellier", "norcia", "valencia")
