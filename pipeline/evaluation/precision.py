"""Does reduced precision change what `detect` finds? fp32 against bf16 (or fp16) on real pairs, side by side.

Autocast is the default on a GPU (bf16) and a choice on the CPU, and it moves probabilities
by a few hundredths at a few pixels. What matters is whether that moves the change polygons,
which become leads. Each pair runs through `detect` at fp32 and at the reduced precision, one
after the other in this process; the table gives how far their probabilities differ (in the
probability file's 1/250 steps), how much of the flagged area only one of them flags, and, on
pairs with a change label, pixel F1 and object recall at each precision. `make precision-check`
writes it into docs/models.md; on a GPU, `--device cuda` compares the GPU's own autocast.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import rasterio
from tqdm import tqdm

from detectors import DEFAULT_MODEL
from pipeline.evaluation.objects import count
from pipeline.evaluation.real_change import MIN_OBJECT_PX, OBJECT_COVER
from pipeline.evaluation.report import machine, markdown_table, software, write_section
from pipeline.sources.labelled import load_labelled

BEGIN, END = "<!-- models:precision:begin -->", "<!-- models:precision:end -->"


def _run(pair: Path, out: Path, detector: str, device: str, precision: str) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 probabilities of one `detect` and where its change polygons lie."""
    from pipeline.detect import detect

    result = detect(pair / "before.tif", pair / "after.tif", out, detector, device=device, precision=precision)
    with rasterio.open(result.probabilities) as src:
        return src.read(), result.grid.mask(list(result.polygons.geometry))


def compare_pair(pair: Path, out: Path, detector: str = DEFAULT_MODEL, device: str = "cpu",
                 precision: str = "bf16") -> dict:
    """One pair at fp32 and at `precision`: their differences, and their scores where it has a change label."""
    runs = {p: _run(pair, out / pair.name / p, detector, device, p) for p in ("fp32", precision)}
    (p32, f32), (plow, flow) = runs["fp32"], runs[precision]
    seen = (p32 != 255) & (plow != 255)  # 255: not seen
    steps = np.abs(p32.astype(np.int16) - plow.astype(np.int16))[seen]
    union = int((f32 | flow).sum())
    row = {"pair": pair.name, "largest difference (of 250)": int(steps.max()) if steps.size else 0,
           "values > 1 step apart %": round(100 * float((steps > 1).mean()), 3) if steps.size else 0.0,
           "flagged ha fp32": round(f32.sum() / 100, 1), f"flagged ha {precision}": round(flow.sum() / 100, 1),
           "flagged by only one %": round(100 * int((f32 ^ flow).sum()) / union, 2) if union else 0.0}
    if (pair / "change.tif").exists():
        labels = load_labelled(pair.parent, pair.name)
        scores = {name: count(flagged, labels.change, MIN_OBJECT_PX, OBJECT_COVER, labels.valid)
                  for name, flagged in (("fp32", f32), (precision, flow))}
        row |= {f"pixel F1 {name}": round(c.pixel_f1, 3) for name, c in scores.items()}
        row |= {f"object recall {name}": round(c.object_recall, 3) for name, c in scores.items()}
    return row


def precision_report(pairs: list[Path], out: Path, detector: str = DEFAULT_MODEL, device: str = "cpu",
                     precision: str = "bf16", progress: bool = True) -> str:
    """The comparison on every pair, as the docs/models.md section."""
    rows = [compare_pair(p, out, detector, device, precision)
            for p in tqdm(pairs, desc=f"fp32 against {precision}", unit="pair", disable=not progress)]
    columns = dict.fromkeys(k for r in rows for k in r)  # scores only where a pair has a label
    scored = [{k: r.get(k, "—") for k in columns} for r in rows]
    lines = [BEGIN, f"### fp32 against {precision} on real pairs, {device}", "",
             f"{machine()}; {software()}; {time.strftime('%Y-%m-%d')}; `{detector}`, `detect` with its defaults. "
             f"`make precision-check` (pipeline/evaluation/precision.py).", "",
             markdown_table(scored), "", "Speed at each precision: [benchmarks.md](benchmarks.md).", END]
    return "\n".join(lines)


def _pairs(folders: list[Path], names: list[str] | None) -> list[Path]:
    """The pair folders (before.tif, after.tif) in `folders`, or only those named."""
    found = [d for f in folders for d in sorted(Path(f).iterdir()) if (d / "before.tif").exists()]
    if names:
        missing = sorted(set(names) - {d.name for d in found})
        if missing:
            raise SystemExit(f"no pair folder named {', '.join(missing)} in {', '.join(map(str, folders))}")
        found = [d for d in found if d.name in names]
    if not found:
        raise SystemExit(f"no pair folders (with before.tif and after.tif) in {', '.join(map(str, folders))}")
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders of pair folders (before.tif, after.tif, "
                        "optionally change.tif)")
    parser.add_argument("--names", nargs="*", help="only these pairs")
    parser.add_argument("--precision", choices=["bf16", "fp16"], default="bf16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--detector", default=DEFAULT_MODEL)
    parser.add_argument("--work", type=Path, default=Path("runs/precision"), help="where the runs' outputs go")
    parser.add_argument("--out", type=Path, help="a page to write the section into (docs/models.md)")
    args = parser.parse_args(argv)
    section = precision_report(_pairs(args.folders, args.names), args.work, args.detector, args.device,
                               args.precision)
    print(section)
    if args.out:
        write_section(args.out, section, BEGIN, END)


if __name__ == "__main__":
    main()
