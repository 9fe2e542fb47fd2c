"""The label codes a training target holds beyond background (0) and the categories (1 + index in
CLASSIFIED_IDS): what is only known to have changed, and what must not be learned from."""

from __future__ import annotations

from detectors.categories import CLASSIFIED_IDS

#: Partial label: the pixel is known to have changed, its category is not (labelled real cities,
#: real surfaces that fit no category). Its loss is binary on p_change = 1 − p_background.
CHANGED_ANY = 1 + len(CLASSIFIED_IDS)
#: Pixels excluded from every loss term: unseen, the uncertain rim of a labelled change.
IGNORE = 255
