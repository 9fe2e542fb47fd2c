"""A trained segmentation model as a detector: one forward pass gives all eight categories.

The network (segmentation-models-pytorch) reads the feature stack of detectors/features.py
and gives a softmax over background and the categories of its model card. Weights load only
if their sha256 matches the card; on CUDA the forward pass runs in channels_last under
autocast (bf16 where the GPU supports it, else fp16).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detectors.categories import CATEGORY_IDS, CLASSIFIED_IDS, OTHER_ID, Zone
from detectors.features import FEATURE_NAMES, feature_stack, standardise
from detectors.model_card import ModelCard, ModelError, sha256_of
from detectors.zones import restrict_to_zones

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def resolve_card(name_or_path: str) -> Path:
    """A model's card from its name in weights/ or a path to a .json card."""
    path = Path(name_or_path)
    if path.suffix == ".json":
        return path
    card = WEIGHTS_DIR / f"{name_or_path}.json"
    if not card.exists():
        shipped = sorted(p.stem for p in WEIGHTS_DIR.glob("*.json")) if WEIGHTS_DIR.exists() else []
        raise ModelError(f"no model {name_or_path!r} in {WEIGHTS_DIR}; available: "
                           f"{', '.join(['baseline', *shipped])}, or give a path to a model card (.json)")
    return card


def load_network(card_path: Path, device: str = "cpu"):  # -> (ModelCard, torch.nn.Module)
    """The card and its network with verified weights, in eval mode on `device`."""
    import torch
    from safetensors.torch import load_file

    card = ModelCard.read(card_path)
    weights = card.weights_path(card_path)
    if not weights.exists():
        raise ModelError(f"{weights}: weights file named by {card_path} is missing; "
                           "restore it from the repository or retrain with `make train`")
    digest = sha256_of(weights)
    if digest != card.weights_sha256:
        raise ModelError(f"{weights}: sha256 {digest[:12]}… does not match {card_path} "
                           f"(weights_sha256 {card.weights_sha256[:12]}…); the file was changed or damaged: "
                           "restore both from the repository or retrain with `make train`")
    if tuple(card.features) != FEATURE_NAMES:
        raise ModelError(f"{card_path}: the model reads features {card.features[:3]}…, this version of eoleads "
                           "makes a different stack; use the weights shipped with this version")
    unknown = [c for c in card.categories if c not in CLASSIFIED_IDS]
    if unknown:
        raise ModelError(f"{card_path}: field 'categories' has unknown categories {unknown}")
    net = card.architecture.build()
    net.load_state_dict(load_file(weights), strict=True)
    net.eval().to(device)
    if device.startswith("cuda"):
        net = net.to(memory_format=torch.channels_last)
    return card, net


def pick_device(requested: str) -> str:
    """'cuda' when asked for or available under 'auto', else 'cpu'."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' was requested but torch sees no CUDA GPU; set device: cpu or auto")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


class SegmentationDetector:
    """The shipped model (or any model card) behind the Detector protocol."""

    def __init__(self, card: ModelCard, net, device: str, active: list[str] | None = None,
                 card_path: Path | None = None) -> None:
        self.device, self.card, self.net, self.card_path = device, card, net, card_path
        self.autocast = True  # on CUDA; off to compare against fp32
        self.name = self.card.name
        self.bands = tuple(self.card.input_bands)
        self.categories = CATEGORY_IDS
        self.thresholds = {c: float(self.card.thresholds.get(c, 0.5)) for c in CATEGORY_IDS}
        chosen = CATEGORY_IDS if active is None else active
        self._out_index = [self.card.categories.index(c) + 1 if c in self.card.categories else -1
                           for c in CLASSIFIED_IDS]
        self._active = np.array([c in chosen and c in self.card.categories for c in CLASSIFIED_IDS])
        self._report_other = OTHER_ID in chosen
        self._mean = np.asarray(self.card.normalisation["mean"], dtype=np.float32)
        self._std = np.asarray(self.card.normalisation["std"], dtype=np.float32)

    @classmethod
    def load(cls, card_path: Path, active: list[str] | None = None, device: str = "auto") -> SegmentationDetector:
        """The model of a card file, weights verified, on the requested device."""
        device = pick_device(device)
        card, net = load_network(card_path, device)
        return cls(card, net, device, active, Path(card_path))

    def inputs(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray,
               zones: dict[Zone, np.ndarray]) -> np.ndarray:
        """The standardised feature stack the network reads."""
        return standardise(feature_stack(before, after, valid, zones), self._mean, self._std)

    def probabilities(self, stack: np.ndarray) -> np.ndarray:
        """Softmax (N, 1 + categories, H, W) of a standardised feature stack.

        Tiles whose sides are not multiples of the encoder's stride (small images, scene edges)
        are padded by repeating their edge, and the padding is cropped off the answer.
        """
        import torch

        h, w = stack.shape[-2:]
        stride = 2 ** self.card.architecture.encoder_depth
        pad = ((0, 0), (0, 0), (0, -h % stride), (0, -w % stride))
        if any(p[1] for p in pad):
            stack = np.pad(stack, pad, mode="edge")
        x = torch.from_numpy(stack).to(self.device)
        with torch.inference_mode():
            if self.device.startswith("cuda"):
                x = x.contiguous(memory_format=torch.channels_last)
                dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
                with torch.autocast("cuda", dtype=dtype, enabled=self.autocast):
                    logits = self.net(x)
            else:
                logits = self.net(x)
            return torch.softmax(logits.float(), dim=1)[..., :h, :w].cpu().numpy()

    def predict(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray,
                zones: dict[Zone, np.ndarray]) -> np.ndarray:
        """Per-category probabilities, zeroed outside each category's zone and for inactive
        categories; `other` is the probability of a change that no supplied zone layer rules out
        (1 − background, less the categories whose known zone excludes the pixel)."""
        soft = self.probabilities(self.inputs(before, after, valid, zones))
        out = np.zeros((before.shape[0], len(CATEGORY_IDS), *before.shape[2:]), dtype=np.float32)
        for i, k in enumerate(self._out_index):
            if k >= 0:
                out[:, i] = soft[:, k]
        for n in range(out.shape[0]):
            out[n, :-1] = restrict_to_zones(out[n, :-1], CLASSIFIED_IDS, {z: m[n] for z, m in zones.items()})
        if self._report_other:
            out[:, -1] = out[:, :-1].sum(axis=1)
        out[:, :-1][:, ~self._active] = 0.0
        return out * valid[:, None]
