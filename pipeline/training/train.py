"""`eoleads train`: train a segmentation model from a seed, with checkpoints, and ship it.

The recipe (scenes, chips, loss, schedule) is fixed by `TrainingRecipe`; the same recipe and
seed give the same weights on the same machine and torch version. A run resumes from its last
checkpoint (safetensors and JSON, never a pickle). At the end, per-category thresholds are
calibrated on the validation scenes (never the held-out test scenes), and weights (safetensors)
and model card are written atomically.
"""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from detectors import DEFAULT_MODEL
from detectors.bands import REFLECTANCE_BANDS
from detectors.categories import CLASSIFIED_IDS
from detectors.features import FEATURE_NAMES, SPECTRAL_CHANNELS, standardise
from detectors.learned import WEIGHTS_DIR, SegmentationDetector, pick_device
from detectors.model_card import Architecture, ModelCard, sha256_of
from pipeline.atomic import atomic_path, write_text_atomic
from pipeline.errors import InputError
from pipeline.evaluation.calibration import calibrate_detector
from pipeline.simulator.real_texture import TextureBank
from pipeline.sources.labelled import LabelledPair, load_labelled_pairs
from pipeline.training.arithmetic import training_arithmetic
from pipeline.training.chips import ChipSampler
from pipeline.training.real_chips import Mixture, RealChangeSampler, load_unlabelled
from pipeline.training.scenes import SceneArrays, make_scenes
from pipeline.training.splits import CITY_FOLDS, SHIPPED_FOLD, TRAIN_PAIRS, TRAIN_SEEDS, VALIDATION_SEEDS
from pipeline.training.targets import CHANGED_ANY

log = logging.getLogger(__name__)


@dataclass
class TrainingRecipe:
    """Everything that decides the weights."""

    name: str = DEFAULT_MODEL
    arch: str = "Unet"
    encoder: str = "tu-regnetx_002"
    encoder_depth: int = 5
    options: dict = field(default_factory=dict)
    seed: int = 0
    steps: int = 6000
    #: The first steps learn the categories on simulated chips alone; the real-change mixture
    #: follows, so real textures refine the model instead of unsettling what the categories are.
    simulated_only_steps: int = 3000
    batch_size: int = 12
    chip_size: int = 96
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    mixture: Mixture = field(default_factory=Mixture)
    partial_weight: float = 1.0  # weight of a "changed, category unknown" pixel against a category pixel
    train_scenes: tuple[int, ...] = TRAIN_SEEDS
    validation_scenes: tuple[int, ...] = VALIDATION_SEEDS
    city_fold: str = SHIPPED_FOLD
    train_pairs: tuple[str, ...] = TRAIN_PAIRS
    checkpoint_every: int = 100
    stop_after: int | None = None  # stop early (an interruption), the schedule still spans `steps`

    def architecture(self) -> Architecture:
        return Architecture(arch=self.arch, encoder=self.encoder, encoder_depth=self.encoder_depth,
                            options=self.options, in_channels=len(FEATURE_NAMES), classes=1 + len(CLASSIFIED_IDS))

    def signature(self) -> str:
        """What a checkpoint must match to be resumed (everything but when to stop)."""
        return json.dumps({k: v for k, v in asdict(self).items() if k != "stop_after"}, sort_keys=True)


def normalisation(sampler: RealChangeSampler, chips: int = 96) -> dict[str, list[float]]:
    """Mean and std of the spectral feature channels over valid pixels of sampled chips."""
    x, _ = sampler.batch(chips)
    valid = x[:, FEATURE_NAMES.index("valid")] > 0
    values = np.moveaxis(x[:, :SPECTRAL_CHANNELS], 1, 0)[:, valid]
    return {"mean": values.mean(axis=1).round(6).tolist(), "std": (values.std(axis=1) + 1e-6).round(6).tolist()}


def _loss(logits, target, weights, partial_weight: float = 1.0):
    """Weighted cross-entropy plus soft Dice over the categories present in the batch.

    Targets holding only full labels (0 background, 1.. categories) take the shipped recipe's
    loss unchanged; targets with CHANGED_ANY or IGNORE pixels take `_partial_loss`.
    """
    import torch.nn.functional as F

    if bool((target > len(CLASSIFIED_IDS)).any()):
        return _partial_loss(logits, target, weights, partial_weight)
    ce = F.cross_entropy(logits, target, weight=weights)
    return ce + _dice(logits, target, None)


def _dice(logits, target, known):
    """Soft Dice over the categories present, on pixels whose category is known (all if `known` is None)."""
    import torch
    import torch.nn.functional as F

    probs = torch.softmax(logits, dim=1)[:, 1:]
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].float()
    if known is not None:
        probs = probs * known[:, None]
        onehot = onehot * known[:, None]
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    denom = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    present = onehot.sum(dim=(0, 2, 3)) > 0
    dice = 1 - (2 * inter + 1) / (denom + 1)
    return dice[present].mean() if present.any() else 0.0 * logits.sum()


def _partial_loss(logits, target, weights, partial_weight: float = 1.0):
    """Cross-entropy where the category is known, −log p_change where only "changed" is known,
    nothing where IGNORE; one weighted mean over all supervised pixels, plus Dice on known ones.

    A CHANGED_ANY pixel weighs as much as a category pixel (the mean category weight) times
    `partial_weight`; unchanged pixels of labelled cities are plain background (−log p_bg).
    """
    import torch

    known = target < CHANGED_ANY
    changed = target == CHANGED_ANY
    t = torch.where(known, target, torch.zeros_like(target))
    logp = torch.log_softmax(logits, dim=1)
    nll_known = -logp.gather(1, t[:, None])[:, 0]
    nll_changed = -torch.logsumexp(logp[:, 1:], dim=1)
    w_known = weights[t] * known
    w_changed = weights[1:].mean() * partial_weight * changed
    ce = ((w_known * nll_known).sum() + (w_changed * nll_changed).sum()) / (w_known.sum() + w_changed.sum()
                                                                            ).clamp_min(1e-6)
    return ce + _dice(logits, t, known.float())


def train(recipe: TrainingRecipe, data: Path, real_pairs: Path | None = None, labelled_pairs: Path | None = None,
          out: Path = WEIGHTS_DIR, progress: bool = True, workers: int = 2, device: str = "auto",
          precision: str = "auto") -> Path:
    """Simulate (or reuse) the recipe's scenes, read the real pairs (never copied), fit, calibrate,
    and write `out/<name>.safetensors` and `out/<name>.json`; returns the card path.

    `real_pairs` holds unlabelled pairs (`<name>/before.tif, after.tif`) to implant into, of which
    the recipe's `train_pairs` are used; `labelled_pairs` holds labelled cities
    (`<name>/…, change.tif`), of which the recipe's fold trains and the rest stay unseen.
    """
    from tqdm import tqdm

    scene_dir = Path(data) / "scenes"
    train_paths = make_scenes(scene_dir, recipe.train_scenes, workers)
    val_paths = make_scenes(scene_dir, recipe.validation_scenes, workers)
    scenes = [SceneArrays.load(p) for p in tqdm(train_paths, desc="loading scenes", disable=not progress)]
    validation = [SceneArrays.load(p) for p in val_paths]
    city_names = CITY_FOLDS[recipe.city_fold][0] if labelled_pairs else ()
    cities = list(load_labelled_pairs(labelled_pairs, city_names).values()) if labelled_pairs else []
    pair_names = tuple(n for n in recipe.train_pairs if real_pairs and (Path(real_pairs) / n).is_dir())
    backgrounds = load_unlabelled(real_pairs, pair_names) if real_pairs else []
    return fit(recipe, scenes, validation, cities, backgrounds, Path(data) / f"{recipe.name}.checkpoint.safetensors",
               Path(out), {"real_pairs": list(pair_names), "labelled_cities": list(city_names)}, progress, device,
               precision)


def recalibrate(card_path: Path, data: Path, labelled_pairs: Path | None = None, progress: bool = True,
                workers: int = 2) -> Path:
    """Choose a trained model's thresholds again on the validation scenes (from `data`, simulated
    where missing) and the training cities its card names; see `rewrite_thresholds`."""
    card = ModelCard.read(card_path)
    seeds = tuple(card.training.get("recipe", {}).get("validation_scenes", VALIDATION_SEEDS))
    names = tuple(card.training.get("labelled_cities", ()))
    if names and labelled_pairs is None:
        raise InputError(card_path, "training.labelled_cities", f"the thresholds were chosen on {', '.join(names)}",
                         "name the folder of labelled pairs with --labelled-pairs")
    validation = [SceneArrays.load(p) for p in make_scenes(Path(data) / "scenes", seeds, workers)]
    cities = list(load_labelled_pairs(labelled_pairs, names).values()) if names else []
    return rewrite_thresholds(card_path, validation, cities, progress)


def rewrite_thresholds(card_path: Path, validation: list[SceneArrays], cities: list[LabelledPair],
                       progress: bool = True) -> Path:
    """The thresholds `fit` would choose for the card's weights under this eoleads' decision rule,
    and their validation scores, written into the card; the weights are untouched. For a change
    of the rule, where retraining would change nothing else."""
    card = ModelCard.read(card_path)
    detector = SegmentationDetector.load(card_path, device="cpu")
    thresholds, val_metrics = calibrate_detector(detector, validation, cities, progress)
    card = card.model_copy(update={"thresholds": thresholds,
                                   "metrics": {**card.metrics, "validation_objects": val_metrics}})
    write_text_atomic(card_path, card.to_json())
    return card_path


def save_checkpoint(path: Path, tensors: dict, state: dict) -> None:
    """Tensors as safetensors with the rest of the training state as JSON in its header: one file,
    written atomically, which loading cannot turn into running code (a pickle can)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"state": json.dumps(state)})


def read_checkpoint(path: Path) -> tuple[dict, dict] | None:
    """The tensors and state of a checkpoint, or None (with a note) where there is none to resume from.

    A pickle left by an older eoleads beside it (`<name>.pt`) is never unpickled: training restarts.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    legacy = path.with_suffix(".pt")
    if not path.exists():
        if legacy.exists():
            log.warning("%s is a checkpoint in the old pickle format, which is not loaded (unpickling can run "
                        "code); training starts from step 0 and checkpoints to %s; delete the old file", legacy, path)
        return None
    try:
        with safe_open(path, "pt") as fh:
            state = json.loads((fh.metadata() or {})["state"])
        return load_file(path), state
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        log.warning("%s cannot be read (%s); training starts from step 0", path, exc)
        return None


def _optimiser_tensors(opt) -> dict:
    """The optimiser's per-parameter tensors under flat names (`optimizer.<param>.<name>`)."""
    return {f"optimizer.{i}.{name}": value for i, entries in opt.state_dict()["state"].items()
            for name, value in entries.items()}


def _optimiser_state(tensors: dict, param_groups: list[dict]) -> dict:
    """The optimiser state dict again from its flat tensors and its JSON parameter groups."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = value
    return {"state": state, "param_groups": param_groups}


def fit(recipe: TrainingRecipe, scenes: list[SceneArrays], validation: list[SceneArrays], cities: list[LabelledPair],
        backgrounds: list[tuple[np.ndarray, np.ndarray, np.ndarray]], checkpoint: Path, out: Path,
        provenance: dict | None = None, progress: bool = True, device: str = "cpu", precision: str = "auto") -> Path:
    """The training loop, resumable from `checkpoint` (a .safetensors file); writes weights and card into `out`.

    Thresholds are calibrated on the validation scenes and the training cities (never held-out
    ones). The forward pass runs in `precision` (pipeline.training.arithmetic: by default on a GPU
    bf16, or fp16 with a loss scaler where it has no bf16, in channels_last; fp32 on the CPU); the
    weights stay fp32.
    """
    import torch
    from safetensors.torch import save_file
    from tqdm import tqdm

    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    images = [(b, v) for b, _, v in backgrounds] + [(c.before, c.valid) for c in cities]
    bank = TextureBank.build(images, cities, np.random.default_rng([recipe.seed, 1]))
    sampler = RealChangeSampler(ChipSampler(scenes, recipe.chip_size, rng) if scenes else None, cities, backgrounds,
                                bank, recipe.chip_size, rng, recipe.mixture)
    first = sampler.simulated_only() if scenes else sampler
    stats = normalisation(sampler.with_rng(np.random.default_rng(recipe.seed + 1)))
    mean = np.asarray(stats["mean"], dtype=np.float32)
    std = np.asarray(stats["std"], dtype=np.float32)

    device = pick_device(device)
    arithmetic = training_arithmetic(device, precision)
    net = recipe.architecture().build().to(device)
    if arithmetic.channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.learning_rate, total_steps=recipe.steps,
                                                pct_start=0.1)
    class_weights = torch.tensor([1.0] + [3.0] * len(CLASSIFIED_IDS), device=device)
    step, losses = 0, []
    saved = read_checkpoint(checkpoint)
    if saved is not None:
        tensors, state = saved
        if state["signature"] == recipe.signature() and state["stats"] == stats:
            net.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
            opt.load_state_dict(_optimiser_state(tensors, state["optimizer_param_groups"]))
            sched.load_state_dict(state["scheduler"])
            step, losses = state["step"], state["losses"]
            sampler.rng.bit_generator.state = state["sampler_rng"]
            torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
            arithmetic.restore(state)
            before = state.get("arithmetic", "fp32")
            if before != arithmetic.name:
                log.warning("%s was trained in %s up to step %d and goes on in %s: the weights will be those of "
                            "neither arithmetic alone", checkpoint, before, step, arithmetic.name)
        else:
            log.warning("%s is of another recipe or other data; training starts from step 0", checkpoint)

    def save() -> None:
        save_checkpoint(checkpoint, {**{f"model.{k}": v for k, v in net.state_dict().items()},
                                     **_optimiser_tensors(opt)},
                        {"signature": recipe.signature(), "stats": stats,
                         "optimizer_param_groups": opt.state_dict()["param_groups"],
                         "scheduler": sched.state_dict(), "step": step, "losses": losses,
                         "sampler_rng": sampler.rng.bit_generator.state,
                         "torch_rng": torch.get_rng_state().tolist(), **arithmetic.state()})

    net.train()
    bar = tqdm(total=recipe.steps, initial=step, desc=f"training {recipe.name}", unit="step", disable=not progress)
    while step < min(recipe.steps, recipe.stop_after or recipe.steps):
        x, y = (first if step < recipe.simulated_only_steps else sampler).batch(recipe.batch_size)
        xt = torch.from_numpy(standardise(x, mean, std)).to(device)  # as the detector does at run time
        logits = arithmetic.forward(net, xt)
        loss = _loss(logits.float(), torch.from_numpy(y).to(device), class_weights, recipe.partial_weight)
        arithmetic.step(loss, opt)
        sched.step()
        step += 1
        losses.append(round(loss.item(), 5))
        bar.update()
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        if step % recipe.checkpoint_every == 0 or step == recipe.steps:
            save()
    bar.close()
    net.eval().cpu()

    card = ModelCard(
        name=recipe.name,
        description="Bi-temporal Sentinel-2 change segmentation for the eight eoleads categories",
        architecture=recipe.architecture(), input_bands=list(REFLECTANCE_BANDS),
        radiometry="surface (L2A) or top-of-atmosphere (L1C) reflectance as 0..1 floats; the source applies "
                   "each file's scale (QUANTIFICATION_VALUE) and offset (BOA_/RADIO_ADD_OFFSET) before the model",
        features=list(FEATURE_NAMES), normalisation=stats, categories=list(CLASSIFIED_IDS),
        thresholds=dict.fromkeys(CLASSIFIED_IDS, 0.5), weights_file=f"{recipe.name}.safetensors", weights_sha256="",
    )
    detector = SegmentationDetector(card, net, "cpu")
    thresholds, val_metrics = calibrate_detector(detector, validation, cities, progress)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / card.weights_file
    with atomic_path(weights) as tmp:
        save_file({k: v.contiguous() for k, v in net.to(memory_format=torch.contiguous_format).state_dict().items()},
                  str(tmp))
    card = card.model_copy(update={
        "thresholds": thresholds, "weights_sha256": sha256_of(weights),
        "training": {"recipe": asdict(recipe), "simulated_scenes": len(scenes), "validation_scenes": len(validation),
                     **(provenance or {}), "steps_done": step,
                     "loss_median_per_100_steps": [float(np.median(losses[i:i + 100]))
                                                   for i in range(0, len(losses), 100)],
                     "trained_on": f"{platform.machine()}, torch {torch.__version__}",
                     "arithmetic": f"{arithmetic.name} on {arithmetic.device_type}",
                     "date": datetime.now(UTC).date().isoformat()},
        "metrics": {"validation_objects": val_metrics},
        "versions": _versions(),
    })
    card_path = out / f"{recipe.name}.json"
    write_text_atomic(card_path, card.to_json())
    return card_path


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("eoleads", "torch", "segmentation-models-pytorch", "numpy")}
