"""The model card beside each weights file: everything needed to use a model correctly.

Input bands and their order, radiometry, the feature stack and its normalisation, category
order and thresholds belong to the model, not to the code that runs it: a card that does not
match the running code, or weights whose hash differs from the card's, are refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ModelError(ValueError):
    """A model that cannot be used as asked (untrusted weights, a bad card, no such device); the
    message names the file or setting and the fix."""


class Architecture(BaseModel):
    """How to rebuild the network with segmentation-models-pytorch."""

    model_config = ConfigDict(extra="forbid")
    arch: str
    encoder: str
    encoder_depth: int = 5
    options: dict[str, Any] = Field(default_factory=dict, description="further smp arguments, e.g. decoder_channels")
    in_channels: int
    classes: int

    def build(self):  # -> torch.nn.Module, imported lazily so the baseline needs no torch
        """The network with random weights; encoder_weights=None, so nothing is downloaded."""
        import segmentation_models_pytorch as smp

        return smp.create_model(self.arch, encoder_name=self.encoder, encoder_weights=None,
                                encoder_depth=self.encoder_depth, in_channels=self.in_channels,
                                classes=self.classes, **self.options)


#: The card format this code writes; older cards are upgraded on reading (see UPGRADES).
CARD_VERSION = 2


def _v1_to_v2(card: dict[str, Any]) -> dict[str, Any]:
    """Version 1 cards had no version or licence, and no threshold for the any-change band: such a
    model's `other` band is read at the default threshold."""
    thresholds = card.get("thresholds")
    if isinstance(thresholds, dict):  # anything else is left for validation to name
        thresholds = {"other": 0.5, **thresholds}
    return {**card, "card_version": 2, "licence": card.get("licence", "unstated"), "thresholds": thresholds}


#: Upgraders from each old card version to the next, applied in turn when a card is read.
UPGRADES = {1: _v1_to_v2}


def upgrade(card: dict[str, Any]) -> dict[str, Any]:
    """A card of any earlier version in the current format."""
    version = int(card.get("card_version", 1))
    while version < CARD_VERSION:
        card = UPGRADES[version](card)
        version = int(card["card_version"])
    return card


class ModelCard(BaseModel):
    """What `weights/<name>.json` states about `weights/<name>.safetensors`."""

    model_config = ConfigDict(extra="forbid")
    card_version: int = CARD_VERSION
    name: str
    description: str
    architecture: Architecture
    input_bands: list[str] = Field(description="reflectance bands, in the order the model reads them")
    radiometry: str = Field(description="what the input values are and how DN become them")
    features: list[str] = Field(description="channels of the input stack, in order")
    normalisation: dict[str, list[float]] = Field(description="mean and std of the spectral channels")
    categories: list[str] = Field(description="output classes after the background class, in order")
    thresholds: dict[str, float]
    training: dict = Field(default_factory=dict)
    metrics: dict = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    weights_file: str
    weights_sha256: str
    licence: str = Field("Apache-2.0", description="licence of the weights")

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        """Read and validate a card; errors name the file and the field."""
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(f"{path}: model card not found; give weights/<name>.json or a path to one") from None
        except json.JSONDecodeError as exc:
            raise ModelError(f"{path}: not valid JSON ({exc}); restore the card from the repository") from None
        if not isinstance(raw, dict) or int(raw.get("card_version", 1)) > CARD_VERSION:
            raise ModelError(f"{path}: field 'card_version': a card of a newer eoleads (version "
                             f"{raw.get('card_version') if isinstance(raw, dict) else '?'}, this reads up to "
                             f"{CARD_VERSION}); upgrade eoleads") from None
        try:
            return cls.model_validate(upgrade(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise ModelError(f"{path}: field '{field}': {first['msg']}; regenerate the card with "
                               "`eoleads train` or correct it") from None

    def to_json(self) -> str:
        """The card as the indented JSON it is stored as."""
        return json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"

    def weights_path(self, card_path: Path) -> Path:
        return Path(card_path).parent / self.weights_file


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
