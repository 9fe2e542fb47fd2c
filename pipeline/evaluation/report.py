"""Where measurements are written: Markdown tables, marked sections of a docs page, JSON tables,
and the machine they were measured on."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import pandas as pd

from pipeline.atomic import write_text_atomic


def vector_units(flags: set[str]) -> str:
    """The widest vector arithmetic of a CPU's flags (/proc/cpuinfo): hosts of one model name differ in
    it, and the network's speed (and whether bf16 runs natively) with it."""
    if "avx512f" in flags:
        return "AVX-512 with bf16" if {"avx512_bf16", "amx_bf16"} & flags else "AVX-512"
    return "AVX2" if "avx2" in flags else "no AVX2"


def machine() -> str:
    """CPU model and vector units, cores and memory, as the benchmark table states them."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                cpu += f" ({vector_units(set(line.split(':', 1)[1].split()))})"
                break
        mem_kb = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines()
                      if x.startswith("MemTotal"))
        mem = f"{mem_kb / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        mem = "unknown memory"
    return f"{cpu}, {os.cpu_count()} cores, {mem}, Python {platform.python_version()}"


def software() -> str:
    """The versions that decide the speed of a benchmark: torch, GDAL (through rasterio) and NumPy."""
    import numpy
    import rasterio
    import torch

    return f"torch {torch.__version__}, GDAL {rasterio.__gdal_version__}, rasterio {rasterio.__version__}, " \
           f"NumPy {numpy.__version__}"


def markdown_table(rows: list[dict]) -> str:
    """A Markdown table of records with the same keys; numbers right-aligned."""
    keys = list(rows[0])
    right = [all(isinstance(r[k], (int, float)) for r in rows) for k in keys]
    lines = ["| " + " | ".join(keys) + " |", "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def write_section(path: Path, section: str, begin: str, end: str) -> None:
    """Replace the section between two markers of a page (`section` includes them), keeping everything else."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    write_text_atomic(path, text)


def write_json(table: pd.DataFrame, path: Path) -> None:
    """A table as JSON records, for the model card and docs."""
    write_text_atomic(path, json.dumps(table.to_dict(orient="records"), indent=1, ensure_ascii=False))
