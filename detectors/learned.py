"""A trained segmentation model as a detector: one forward pass gives all eight categories.

The network (segmentation-models-pytorch) reads the feature stack of detectors/features.py
and gives a softmax over background and the categories of its model card. Weights load only
if their sha256 matches the card. For inference each batch normalisation that follows a
convolution is folded into it, and the forward pass runs in channels_last on every device (on
the CPU the two make the network 1.6x faster: oneDNN's convolutions are faster in that layout),
and under autocast: on CUDA by default (bf16 where the GPU supports it, else fp16), on the CPU
when asked for (bf16 where oneDNN runs it natively, AVX-512 or AMX: the network 1.7-2x faster than
fp32 on an AVX-512 EPYC; probabilities move by up to 0.1 at a few pixels, the flagged area by a
median 0.3 % on real pairs: docs/models.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detectors.categories import CATEGORY_IDS, CLASSIFIED_IDS, OTHER_ID, Zone, get_category
from detectors.features import FEATURE_NAMES, feature_stack, feature_tensor, standardised
from detectors.model_card import ModelCard, ModelError, sha256_of

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


#: What to do about weights that cannot be used: they and their card travel together.
_RESTORE = "restore the weights and their card from weights/ in the repository, or retrain with `make train`"


def _read_weights(weights: Path, card_path: Path) -> dict:
    """The tensors of a safetensors file; a damaged one is named, whatever hash its card records."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(weights)
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"{weights}: not a whole safetensors file ({exc}), although its sha256 matches "
                         f"{card_path}: the card was written for a damaged or truncated copy; {_RESTORE}") from None


def _check_fits(net, tensors: dict, weights: Path, card_path: Path) -> None:
    """Refuse weights whose tensors are not those of the card's architecture, naming the first misfits."""
    expected = net.state_dict()
    misfits = [f"{k} is missing" for k in expected if k not in tensors]
    misfits += [f"{k} is not in the architecture" for k in tensors if k not in expected]
    misfits += [f"{k} has shape {tuple(tensors[k].shape)}, the architecture {tuple(v.shape)}"
                for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    if misfits:
        raise ModelError(f"{weights}: {len(misfits)} tensor(s) do not fit the architecture in {card_path} "
                         f"({'; '.join(misfits[:3])}{'; …' if len(misfits) > 3 else ''}): the weights belong to "
                         f"another model; {_RESTORE}")


def load_network(card_path: Path, device: str = "cpu"):  # -> (ModelCard, torch.nn.Module)
    """The card and its network with verified weights, in eval mode on `device`."""
    import torch

    card = ModelCard.read(card_path)
    weights = card.weights_path(card_path)
    if not weights.exists():
        raise ModelError(f"{weights}: weights file named by {card_path} is missing; {_RESTORE}")
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
    tensors = _read_weights(weights, card_path)
    with torch.device("meta"):  # no random weights drawn only to be overwritten
        net = card.architecture.build()
    _check_fits(net, tensors, weights, card_path)
    net.load_state_dict(tensors, strict=True, assign=True)
    return card, folded_batch_norms(net.eval()).to(device, memory_format=torch.channels_last)


def folded_batch_norms(net):  # torch.nn.Module in eval mode -> the same module
    """The network with every batch normalisation that directly follows a convolution in a
    Sequential (the decoders' conv-norm-ReLU blocks) folded into that convolution's weights and
    bias: the same function in eval mode, one pass over each activation fewer."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for seq in [m for m in net.modules() if isinstance(m, torch.nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, norm = seq[i], seq[i + 1]
            if type(conv) is torch.nn.Conv2d and type(norm) is torch.nn.BatchNorm2d:
                seq[i], seq[i + 1] = fuse_conv_bn_eval(conv, norm), torch.nn.Identity()
    return net


#: The forward pass's arithmetic a user may ask for (`--precision`, `detection.precision`).
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
#: How torch says whether oneDNN runs a reduced precision natively on this CPU.
_CPU_SUPPORT = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}


def cpu_runs_natively(precision: str) -> bool:
    """Whether oneDNN runs `precision` (bf16, fp16) natively on this CPU; fp32 and auto always run."""
    import torch

    if precision not in _CPU_SUPPORT:
        return True
    probe = getattr(torch.ops.mkldnn, _CPU_SUPPORT[precision], None)
    return probe is not None and torch.backends.mkldnn.is_available() and bool(probe())


def check_cpu_precision(precision: str) -> None:
    """Raise unless this CPU runs `precision` natively: emulated, bf16 or fp16 is slower than fp32."""
    if not cpu_runs_natively(precision):
        raise ModelError(f"precision {precision!r} was asked for on the CPU, but this CPU has no native {precision} "
                         "arithmetic (bf16 needs AVX-512 or AMX, fp16 AVX-512-FP16 or AMX-FP16): it would run "
                         "slower than fp32; use precision fp32 (or auto)")


def cuda_has_bf16() -> bool:
    """Whether the GPU computes in bf16 natively (Ampere and later, or ROCm): before that, cuDNN has no bf16
    convolutions, although `torch.cuda.is_bf16_supported()` may say yes (it counts emulation)."""
    import torch

    return bool(torch.version.hip) or torch.cuda.get_device_capability() >= (8, 0)


def check_cuda_precision(precision: str) -> None:
    """Raise if `precision` is bf16 and the GPU has none of its own."""
    import torch

    if precision == "bf16" and not cuda_has_bf16():
        raise ModelError(f"precision 'bf16' was asked for, but {torch.cuda.get_device_name()} has no bf16 "
                         "arithmetic; use precision fp16 (or auto, which picks it on this GPU)")


def check_precision(device: str, precision: str) -> None:
    """Raise unless `precision` is one of PRECISIONS and `device` (cpu, cuda…) runs it natively."""
    if precision not in PRECISIONS:
        raise ModelError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    (check_cuda_precision if device.startswith("cuda") else check_cpu_precision)(precision)


def autocast_dtype(device: str, precision: str):  # -> torch.dtype | None
    """The reduced precision a forward pass on `device` runs in for `precision`; None for fp32. On the
    CPU only when asked for ("auto" keeps fp32's answers); on CUDA "auto" is bf16 where the GPU has it,
    else fp16."""
    import torch

    if precision == "fp32":
        return None
    if not device.startswith("cuda"):
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if precision == "fp16" or (precision == "auto" and not cuda_has_bf16()):
        return torch.float16
    return torch.bfloat16


def arithmetic_name(dtype) -> str:  # torch.dtype | None -> str
    """fp32, bf16 or fp16: what a record (a cell, a model card) says was computed in."""
    import torch

    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


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
        self.autocast = True  # off to compare against fp32
        self._precision = "auto"
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

    def compile(self) -> None:
        """Compile the network with torch.compile (slow to start, faster per tile on a GPU); once."""
        import torch

        if not isinstance(self.net, torch._dynamo.eval_frame.OptimizedModule):
            self.net = torch.compile(self.net)

    @property
    def precision(self) -> str:
        """The forward pass's arithmetic: "auto" (on CUDA bf16 where the GPU supports it, else fp16;
        fp32 on the CPU), "bf16", "fp16" or "fp32"."""
        return self._precision

    @precision.setter
    def precision(self, precision: str) -> None:
        check_precision(self.device, precision)
        self._precision = precision

    @property
    def arithmetic(self) -> str:
        """What the forward pass runs in on this device now, with "auto" resolved: fp32, bf16 or fp16."""
        return arithmetic_name(self._autocast_dtype())

    def _autocast_dtype(self):  # -> torch.dtype | None
        """The reduced precision the forward pass runs in, per `precision`; None for fp32."""
        return autocast_dtype(self.device, self.precision) if self.autocast else None

    def _softmax(self, x):  # torch tensor on self.device -> torch tensor
        """Softmax (N, 1 + categories, H, W) of a standardised feature tensor.

        Tiles whose sides are not multiples of the encoder's stride (small images, scene edges)
        are padded by repeating their edge, and the padding is cropped off the answer.
        """
        import torch

        h, w = x.shape[-2:]
        stride = 2 ** self.card.architecture.encoder_depth
        if h % stride or w % stride:
            x = torch.nn.functional.pad(x, (0, -w % stride, 0, -h % stride), mode="replicate")
        with torch.inference_mode():
            dtype = self._autocast_dtype()
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.split(":")[0], dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                logits = self.net(x)
            return torch.softmax(logits.float(), dim=1)[..., :h, :w]

    def inputs(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray,
               zones: dict[Zone, np.ndarray]) -> np.ndarray:
        """The standardised feature stack the network reads, in its layout (channels_last strides)."""
        import torch

        return standardised(torch.from_numpy(feature_stack(before, after, valid, zones)), torch.from_numpy(self._mean),
                            torch.from_numpy(self._std)).numpy()

    def probabilities(self, stack: np.ndarray) -> np.ndarray:
        """Softmax (N, 1 + categories, H, W) of a standardised feature stack."""
        import torch

        return self._softmax(torch.from_numpy(stack).to(self.device)).cpu().numpy()

    def predict_tensor(self, before, after, valid, zones: dict):  # torch tensors -> torch tensor
        """`predict` on torch tensors already on the detector's device (reflectance (N, bands, H, W),
        masks (N, H, W)): features, standardisation and the network all run there."""
        import torch

        mean, std = (torch.as_tensor(v, device=before.device) for v in (self._mean, self._std))
        soft = self._softmax(standardised(feature_tensor(before, after, valid, zones), mean, std))
        out = torch.zeros((before.shape[0], len(CATEGORY_IDS), *before.shape[2:]), dtype=torch.float32,
                          device=before.device)
        for i, (k, cat) in enumerate(zip(self._out_index, CLASSIFIED_IDS, strict=True)):
            if k >= 0:  # restricted to the category's zone, as detectors.zones.restrict_to_zones
                zone = get_category(cat).zone
                restrict = zone is not Zone.EVERYWHERE and zone in zones
                out[:, i] = soft[:, k] * zones[zone] if restrict else soft[:, k]
        if self._report_other:
            out[:, -1] = out[:, :-1].sum(dim=1)
        out[:, :-1][:, torch.from_numpy(~self._active).to(before.device)] = 0.0
        return out.mul_(valid[:, None])

    def predict(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray,
                zones: dict[Zone, np.ndarray]) -> np.ndarray:
        """Per-category probabilities, zeroed outside each category's zone and for inactive
        categories; `other` is the probability of a change that no supplied zone layer rules out
        (1 − background, less the categories whose known zone excludes the pixel)."""
        import torch

        def put(a: np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

        return self.predict_tensor(put(before), put(after), put(valid),
                                   {z: put(m) for z, m in zones.items()}).cpu().numpy()
