"""The `eoleads` command line."""

from __future__ import annotations

import argparse
import logging
import sys
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

from detectors import DEFAULT_MODEL
from detectors.learned import PRECISIONS
from detectors.model_card import ModelError
from pipeline.demo import DEMO_SEED
from pipeline.errors import EoleadsError

if TYPE_CHECKING:
    from pipeline.run import RunResult

DESCRIPTION = """\
eoleads finds land changes in satellite imagery that no valid permit covers, and writes them
as leads (线索) to a GeoPackage for investigators to check. A lead is not a finding: a person
decides.

commands:
  eoleads demo                 run the built-in simulated demo (no account, network or GPU)
  eoleads run CONFIG.yaml      run a configuration (docs/configuration.md)
  eoleads plan CONFIG.yaml     what a run would download (cells, scenes, requests, bytes), fetching nothing
  eoleads register [PATH]      the lead register across runs: leads by status, latest runs; --export xlsx/csv
  eoleads simulate OUT_DIR     write a simulated scene: imagery, permits, zones, truth
  eoleads detect BEFORE AFTER  detect changes between two GeoTIFFs (no permits, no run folder)
  eoleads train                reproduce the shipped model's weights from its seed
  eoleads evaluate RUN_DIR     score a simulated run's leads against the planted truth
  eoleads evaluate --held-out  score detectors on held-out scenes (and real pairs, if given)
"""


def _pad(text: str, width: int) -> str:
    """Left-align in a terminal, where Chinese characters take two columns."""
    shown = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(width - shown, 1)


def _summary(result: RunResult) -> str:
    from detectors.categories import CATEGORIES

    leads = result.leads
    lines = [f"leads written to {result.geopackage}", "",
             f"{'category':<44}{'leads':>6}{'area ha':>10}  reasons"]
    for cat in CATEGORIES:
        sub = leads[leads.category == cat.id] if len(leads) else leads
        reasons = ", ".join(f"{k} {v}" for k, v in sub.reason.value_counts().items()) if len(sub) else ""
        area = sub.area_ha.sum() if len(sub) else 0.0
        lines.append(f"{_pad(cat.label, 44)}{len(sub):>6}{area:>10.1f}  {reasons}")
    from pipeline.run import dates_found, example_ids

    c = result.counts
    lines += ["", f"{c['leads']} leads from {c['detections']} detected changes in {c['cells']} cells "
              f"({c['cells_resumed']} resumed, {c['cells_unobserved']} not seen, {c['cells_failed']} failed)",
              f"acquisitions found: {dates_found(result.acquisitions)}"]
    lines += [f"note: {n}" for n in result.notes]
    if result.failed_cells:
        lines += ["", f"ERROR: {len(result.failed_cells)} cell(s) failed and were not looked at; the leads above "
                  f"do not cover them: {example_ids(result.failed_cells)}. Run the same command again to retry them."]
    unseen = result.unobserved_cells
    if unseen:
        level = "ERROR" if result.exit_code else "WARNING"
        lines += ["", f"{level}: {len(unseen)} of {c['cells']} cell(s) had no usable imagery on both dates and were "
                  f"not looked at ({example_ids(unseen)}); the leads above do not cover them, 0 leads there means "
                  "nothing was seen. They are not stored as finished: run the same command again once the imagery "
                  "is there (check the windows' dates and the files' extent and values)"
                  + ("." if result.partial_allowed else ", or accept partial coverage with --allow-partial.")]
    return "\n".join(lines)


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.run import run

    config = load_config(Path(args.config))
    if args.allow_partial:
        config = config.model_copy(update={"allow_partial_coverage": True})
    cluster = {**({"workers": args.workers, "scheduler": None} if args.workers else {}),
               **({"scheduler": args.scheduler} if args.scheduler else {})}  # over the configuration's cluster block
    if cluster:
        config = config.model_copy(update={"cluster": config.cluster.model_copy(update=cluster)})
    result = run(config, Path(args.config).resolve(), fresh=args.fresh, progress=not args.quiet, shard=args.shard)
    if result.geopackage is None:
        c = result.counts
        print(f"shard {args.shard[0]}/{args.shard[1]}: {c['cells_processed']} cells processed, {c['cells_pending']} "
              f"of {c['cells']} still pending in other shards; the last shard to finish (or a run without --shard) "
              "merges the outputs")
        from pipeline.run import example_ids

        if result.failed_cells:
            print(f"ERROR: cell(s) failed: {example_ids(result.failed_cells)}; run again to retry them",
                  file=sys.stderr)
        if result.unobserved_cells:
            print(f"cell(s) without usable imagery on both dates: {example_ids(result.unobserved_cells)}; "
                  "they are retried by the next run", file=sys.stderr)
        return result.exit_code
    print(_summary(result))
    return result.exit_code


def _cmd_plan(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.plan import format_plan, plan_config

    print(format_plan(plan_config(load_config(Path(args.config)), Path(args.config))))
    return 0


def _cmd_register(args: argparse.Namespace) -> int:
    from pipeline.leads.register import describe_register, export_register

    print(describe_register(Path(args.path)))
    if args.export:
        print(f"register exported to {export_register(Path(args.path), Path(args.export))}")
    return 0


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not K/N, e.g. 1/4") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"shard {text}: K must be between 1 and N")
    return k, n


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.demo import write_demo_config
    from pipeline.run import run

    path = write_demo_config(Path(args.out), args.seed, args.detector)
    config = load_config(path)
    print(f"demo configuration: {path}")
    result = run(config, path.resolve(), fresh=args.fresh, progress=not args.quiet)
    print(_summary(result))
    return result.exit_code


def _cmd_simulate(args: argparse.Namespace) -> int:
    from pipeline.demo import DEMO_AOI
    from pipeline.inputs.aoi import read_aoi
    from pipeline.sources.simulated import ensure_simulation

    aoi = read_aoi([Path(args.aoi) if args.aoi else DEMO_AOI]).geometry
    folder = ensure_simulation(Path(args.out), aoi, args.seed)
    print(f"simulated scene written to {folder}")
    return 0


def _pairs(text: str, value: type, example: str) -> dict:
    """NAME=VALUE,... as a dict, or argparse's error with an example."""
    try:
        return {k.strip(): value(v) for k, v in (item.split("=") for item in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {example}") from None


def _band_map(text: str) -> dict[str, int]:
    return _pairs(text, int, "NAME=INDEX,..., e.g. B02=1,B03=2,B04=3")


def _threshold_map(text: str) -> dict[str, float]:
    return _pairs(text, float, "CATEGORY=VALUE,..., e.g. other=0.3")


def _cmd_detect(args: argparse.Namespace) -> int:
    from pipeline.config import ZoneLayer
    from pipeline.detect import detect

    layers = [ZoneLayer(path=Path(args.zones), column=args.zone_column)] if args.zones else []
    result = detect(Path(args.before), Path(args.after), Path(args.out), args.detector, layers, args.radiometry,
                    args.bands, args.device, precision=args.precision, compile=args.compile,
                    batch_size=args.batch_size, thresholds=args.threshold)
    print(f"{len(result.polygons)} changes written to {result.changes}")
    for cat, n in result.polygons.category.value_counts().items():
        print(f"  {cat}: {n}")
    print(f"probabilities: {result.probabilities} (one band per category)")
    if args.threshold:
        print("thresholds: " + ", ".join(f"{c} {v:g}" for c, v in result.thresholds.items() if c in args.threshold)
              + " (given), the rest the detector's")
    for note in result.notes:
        print(f"note: {note}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from pipeline.training.train import TrainingRecipe, train

    recipe = TrainingRecipe()
    if args.steps:
        recipe = replace(recipe, steps=args.steps)
    if args.seed is not None:
        recipe = replace(recipe, seed=args.seed)
    real, labelled = _pair_folder(args.real_pairs), _pair_folder(args.labelled_pairs)
    card = train(recipe, Path(args.data), real, labelled, Path(args.out), progress=not args.quiet,
                 workers=args.workers, device=args.device, precision=args.precision)
    print(f"model written: {card} and {card.with_suffix('.safetensors')}")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from detectors.learned import resolve_card
    from pipeline.training.train import recalibrate

    card = recalibrate(resolve_card(args.model), Path(args.data), _pair_folder(args.labelled_pairs),
                       progress=not args.quiet, workers=args.workers)
    print(f"thresholds chosen again: {card}")
    return 0


def _pair_folder(text: str | None) -> Path | None:
    """A folder of pair folders given on the command line, checked before any work starts."""
    if not text:
        return None
    if not Path(text).is_dir():
        from pipeline.errors import InputError

        raise InputError(Path(text), None, "not a folder",
                         "give a folder of <name>/before.tif, after.tif (and change.tif for labelled pairs)")
    return Path(text)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pipeline.evaluation.evaluate import evaluate_detectors, score_run

    if args.held_out:
        evaluate_detectors([d.strip() for d in args.detectors.split(",")], Path(args.out), args.scenes,
                           args.demo_seeds, _pair_folder(args.real_pairs), _pair_folder(args.labelled_pairs),
                           args.write_docs, progress=not args.quiet)
        return 0
    if not args.run:
        from pipeline.errors import InputError

        raise InputError(None, None, "nothing to evaluate", "give a run folder or --held-out")
    print(score_run(Path(args.run)).to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line, one sub-command per job."""
    parser = argparse.ArgumentParser(prog="eoleads", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("run", help="run a configuration file", description="Run a YAML or TOML configuration; "
                       "re-running the same command resumes where it stopped.")
    p.add_argument("config", help="run configuration (YAML or TOML)")
    p.add_argument("--fresh", action="store_true", help="start over: remove the cells and outputs eoleads wrote "
                   "in the output folder (files of your own there stay)")
    p.add_argument("--shard", type=_shard, metavar="K/N",
                   help="process only every N-th cell starting at the K-th, to split a region over N jobs")
    p.add_argument("--allow-partial", action="store_true",
                   help="exit 0 although some cells had no usable imagery (allow_partial_coverage: true)")
    p.add_argument("--workers", type=_positive, metavar="N", help="run the cells on a local Dask cluster of N worker "
                   "processes (default: one per GPU for a model, else 1: in this process; docs/region.md)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run the cells on the workers of a running Dask "
                   "scheduler (tcp://host:8786); they must see the run folder at the same path (docs/region.md)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("plan", help="what a run would fetch, without fetching it",
                       description="Lay out the cells of a configuration and ask its source what a run would read: "
                                   "cells, scenes, requests and bytes (and processing units where the source "
                                   "counts them). Catalogs may be searched; no imagery is downloaded.")
    p.add_argument("config", help="run configuration (YAML or TOML)")
    p.set_defaults(func=_cmd_plan)
    p = sub.add_parser("register", help="the lead register across runs", description="Show the lead register "
                       "(docs/register.md): leads by category and status, review outcomes and the latest runs; "
                       "--export writes it as a table.")
    p.add_argument("path", nargs="?", default="runs/register.gpkg",
                   help="the register GeoPackage (default: runs/register.gpkg, the demo's)")
    p.add_argument("--export", metavar="FILE", help="write every registered lead to FILE.xlsx or FILE.csv")
    p.set_defaults(func=_cmd_register)
    p = sub.add_parser("demo", help="run the built-in demo", description="Simulate a Sentinel-2 scene on the "
                       "Hulun Lake shore with planted changes and permits, and run the whole pipeline on it.")
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("--seed", type=int, default=DEMO_SEED, help=f"scene simulator seed (default: {DEMO_SEED})")
    p.add_argument("--detector", help=f"'baseline' or a model (default: {DEFAULT_MODEL})")
    p.add_argument("--fresh", action="store_true", help="start over: remove the cells and outputs eoleads wrote "
                   "in the run folder (files of your own there stay)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)
    p = sub.add_parser("simulate", help="write a simulated scene", description="Write simulated L2A imagery, "
                       "a permit layer, context zones and the ground truth of the planted changes.")
    p.add_argument("out", help="folder to write into")
    p.add_argument("--seed", type=int, default=DEMO_SEED, help=f"random seed (default: {DEMO_SEED})")
    p.add_argument("--aoi", help="AOI file (default: the demo AOI)")
    p.set_defaults(func=_cmd_simulate)
    p = sub.add_parser("evaluate", help="score a simulated run, or detectors on held-out scenes",
                       description="With RUN_DIR: object-level recall and precision per category of a run's leads "
                                   "against the planted changes of its simulated scene (inputs/truth.gpkg). With "
                                   "--held-out: run each detector on held-out simulated scenes (seeds no training "
                                   "scene uses, harder settings) and, with --real-pairs, on real image pairs.")
    p.add_argument("run", nargs="?", help="run folder of a run on a simulated source (e.g. runs/demo)")
    p.add_argument("--held-out", action="store_true", help="evaluate detectors on held-out scenes")
    p.add_argument("--detectors", default=f"baseline,{DEFAULT_MODEL}", help="comma-separated detectors")
    p.add_argument("--scenes", type=int, default=5, help="number of held-out scenes (default: 5)")
    p.add_argument("--demo-seeds", action="store_true", help="also score the demo scene with seeds 7, 11, 23, 31, 43")
    p.add_argument("--real-pairs", help="folder of unlabelled real pairs (<name>/before.tif, after.tif): implants "
                   "into the held-out ones, and the area flagged on them")
    p.add_argument("--labelled-pairs", help="folder of labelled real pairs (<name>/before.tif, after.tif, change.tif): "
                   "real change on the cities held out of training, against a change-vector-analysis floor")
    p.add_argument("--out", default="runs/evaluation", help="folder for runs and tables (default: runs/evaluation)")
    p.add_argument("--write-docs", action="store_true",
                   help="write the tables into docs/models.md and the models' cards")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_evaluate)
    p = sub.add_parser("detect", help="detect changes between two GeoTIFFs",
                       description="Run a detector on a co-registered before/after pair of GeoTIFFs and write one "
                                   "probability GeoTIFF per category and changes.gpkg. Bands are named by the files' "
                                   "band descriptions or --bands; radiometry comes from the files' tags or "
                                   "--radiometry.")
    p.add_argument("before", help="earlier image (GeoTIFF)")
    p.add_argument("after", help="later image (GeoTIFF), warped onto the earlier one's grid if needed")
    p.add_argument("--out", required=True, help="folder to write into")
    p.add_argument("--detector", default=DEFAULT_MODEL, help=f"'baseline', a model name or a model card (default: "
                   f"{DEFAULT_MODEL})")
    p.add_argument("--bands", type=_band_map, help="band name to 1-based index, e.g. B02=1,B03=2,B04=3,B08=4,"
                   "B11=5,B12=6")
    p.add_argument("--radiometry", choices=["auto", "L1C", "L2A"], default="auto",
                   help="processing level when the files' tags do not say (default: auto)")
    p.add_argument("--zones", help="zone layer with a column naming each feature's zone (docs/configuration.md)")
    p.add_argument("--zone-column", default="zone", help="that column (default: zone)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="the model's arithmetic (default: auto: on a GPU bf16 where supported, else fp16; on the CPU "
                   "fp32; bf16 on the CPU needs AVX-512 or AMX)")
    p.add_argument("--compile", action="store_true", help="compile the model with torch.compile (slow start, "
                   "faster on a GPU)")
    p.add_argument("--batch-size", type=_positive, help="tiles per model call (default: as many as the GPU's free "
                   "memory holds; 8 on the CPU)")
    p.add_argument("--threshold", type=_threshold_map, help="decision thresholds overriding the detector's, e.g. "
                   "other=0.3: lower finds more change and flags more ground for nothing (docs/models.md, "
                   "Sensitivity)")
    p.set_defaults(func=_cmd_detect)
    p = sub.add_parser("train", help="train the shipped model from its seed",
                       description="Simulate training and validation scenes (cached), train with checkpoints "
                                   "(an interrupted run resumes), calibrate thresholds on validation scenes and "
                                   "write weights/<name>.safetensors and its model card.")
    p.add_argument("--data", default="build/training", help="cache of scenes and checkpoints (default: build/training)")
    p.add_argument("--real-pairs", help="folder of unlabelled real pairs to implant real surfaces into (optional)")
    p.add_argument("--labelled-pairs", help="folder of labelled real pairs (with change.tif) to learn real change "
                   "from, whole cities held out (optional)")
    p.add_argument("--out", default="weights", help="where to write weights and card (default: weights)")
    p.add_argument("--steps", type=int, help="training steps (default: the recipe's)")
    p.add_argument("--seed", type=int, help="seed (default: the recipe's)")
    p.add_argument("--workers", type=int, default=2, help="processes simulating scenes (default: 2)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to train (default: auto)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="arithmetic of the forward pass, weights fp32 (default: auto, which is bf16 on a GPU that has "
                   "it, fp16 with a loss scaler on an older one, fp32 on the CPU, the shipped weights' arithmetic; "
                   "bf16 on a CPU that runs it natively is faster and gives other weights)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("calibrate", help="choose a trained model's thresholds again, weights untouched",
                       description="Choose the thresholds of a trained model again under this eoleads' decision "
                                   "rule, on the validation scenes and training cities its card names, and rewrite "
                                   "them into the card. For a change of the rule, where retraining would change "
                                   "nothing else.")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"a model name or a model card (default: {DEFAULT_MODEL})")
    p.add_argument("--data", default="build/training", help="cache of scenes (default: build/training)")
    p.add_argument("--labelled-pairs", help="folder of the labelled real pairs the card's training cities are in")
    p.add_argument("--workers", type=int, default=2, help="processes simulating scenes (default: 2)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_calibrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a sub-command; errors of the user's input print without a traceback and exit 2, Ctrl-C
    says where the work stopped and exits 130."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (EoleadsError, ModelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        print(f"interrupted: {stop or 'stopped by Ctrl-C'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
