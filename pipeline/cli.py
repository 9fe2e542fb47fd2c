"""The `eoleads` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

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
  eoleads simulate OUT_DIR     write a simulated scene: imagery, permits, zones, truth
  eoleads evaluate RUN_DIR     score a simulated run's leads against the planted truth
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
    c = result.counts
    lines += ["", f"{c['leads']} leads from {c['detections']} detected changes in {c['cells']} cells "
              f"({c['cells_resumed']} resumed, {c['cells_skipped']} skipped)"]
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.run import run

    config = load_config(Path(args.config))
    result = run(config, Path(args.config).resolve(), fresh=args.fresh, progress=not args.quiet, shard=args.shard)
    if result.geopackage is None:
        c = result.counts
        print(f"shard {args.shard[0]}/{args.shard[1]}: {c['cells_processed']} cells processed, {c['cells_pending']} "
              f"of {c['cells']} still pending in other shards; the last shard to finish (or a run without --shard) "
              "merges the outputs")
        return 0
    print(_summary(result))
    return 0


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not K/N, e.g. 1/4") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"shard {text}: K must be between 1 and N")
    return k, n


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.demo import write_demo_config
    from pipeline.run import run

    path = write_demo_config(Path(args.out), args.seed)
    config = load_config(path)
    print(f"demo configuration: {path}")
    print(_summary(run(config, path.resolve(), fresh=args.fresh, progress=not args.quiet)))
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from pipeline.aoi import read_aoi
    from pipeline.demo import DEMO_AOI
    from pipeline.sources.simulated import ensure_simulation

    aoi = read_aoi([Path(args.aoi) if args.aoi else DEMO_AOI]).geometry
    folder = ensure_simulation(Path(args.out), aoi, args.seed)
    print(f"simulated scene written to {folder}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import geopandas as gpd

    from detectors.evaluation import score_leads
    from pipeline.errors import InputError

    folder = Path(args.run)
    leads, truth = folder / "leads.gpkg", folder / "inputs" / "truth.gpkg"
    manifest = folder / "manifest.json"
    if manifest.exists():  # the simulated scene lives where the run's configuration put it
        source = json.loads(manifest.read_text(encoding="utf-8"))["config"]["source"]
        recorded = Path(source.get("folder", "")) / "truth.gpkg"
        if source.get("type") == "simulated" and recorded.exists():  # else the folder has moved: inputs/
            truth = recorded
    for path, what in ((leads, "no leads.gpkg: run the configuration first"),
                       (truth, "no inputs/truth.gpkg: only runs on the simulated source have a ground truth")):
        if not path.exists():
            raise InputError(path, None, what, "give the run folder of a finished simulated run, e.g. runs/demo")
    table = score_leads(gpd.read_file(leads, layer="leads"), gpd.read_file(truth, layer="changes"))
    print(table.to_string(index=False))
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
    p.add_argument("--fresh", action="store_true", help="discard finished cells in the output folder")
    p.add_argument("--shard", type=_shard, metavar="K/N",
                   help="process only every N-th cell starting at the K-th, to split a region over N jobs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("demo", help="run the built-in demo", description="Simulate a Sentinel-2 scene on the "
                       "Hulun Lake shore with planted changes and permits, and run the whole pipeline on it.")
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("--seed", type=int, default=DEMO_SEED, help=f"scene simulator seed (default: {DEMO_SEED})")
    p.add_argument("--fresh", action="store_true", help="discard finished cells in the run folder")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)
    p = sub.add_parser("simulate", help="write a simulated scene", description="Write simulated L2A imagery, "
                       "a permit layer, context zones and the ground truth of the planted changes.")
    p.add_argument("out", help="folder to write into")
    p.add_argument("--seed", type=int, default=DEMO_SEED, help=f"random seed (default: {DEMO_SEED})")
    p.add_argument("--aoi", help="AOI file (default: the demo AOI)")
    p.set_defaults(func=_cmd_simulate)
    p = sub.add_parser("evaluate", help="score a simulated run against its ground truth",
                       description="Object-level recall and precision per category of a run's leads against the "
                                   "planted changes of its simulated scene (inputs/truth.gpkg).")
    p.add_argument("run", help="run folder of a run on a simulated source (e.g. runs/demo)")
    p.set_defaults(func=_cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a sub-command; errors of the user's input print without a traceback and exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except EoleadsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
