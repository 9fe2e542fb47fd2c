"""`make bench` and `make gpu-check`: the synthetic pairs, the quick benchmark's section, the TorchGeo-style
loop's fairness (same probabilities as `detect`), the memory cap, and the GPU prediction on the CPU."""

from __future__ import annotations

import mmap
import re
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from detectors.bands import REFLECTANCE_BANDS
from detectors.categories import CATEGORY_IDS
from detectors.learned import cpu_runs_natively
from pipeline.detection.probabilities import PROBABILITY_NODATA, probabilities_as_uint8
from pipeline.evaluation import bench, gpucheck
from pipeline.evaluation.torchgeo_loop import torchgeo_loop
from pipeline.profiling import RssByStage, StageTimer
from pipeline.sources.local import inspect_file
from pipeline.sources.pair import read_pair


def test_synthetic_pair_is_a_sentinel2_like_pair_with_changes(tmp_path: Path) -> None:
    before, after = bench.write_synthetic_pair(tmp_path, 640, seed=3)
    for path in (before, after):
        image = inspect_file(path)
        assert list(image.band_index) == list(REFLECTANCE_BANDS)
        assert (image.scale, image.offset) == (10000.0, -1000.0)
        with rasterio.open(path) as src:
            assert src.dtypes[0] == "uint16" and src.block_shapes[0] == (512, 512) and src.compression is not None
    pair = read_pair(before, after)
    assert pair.valid.all()
    assert 0.0 < np.nanmedian(pair.before) < 0.5
    changed = np.abs(pair.after - pair.before).max(axis=0) > 0.1
    assert 0.001 < changed.mean() < 0.2  # some rectangles changed, most of the scene did not


@pytest.mark.slow
def test_torchgeo_loop_gives_detects_probabilities(tmp_path: Path) -> None:
    """With chips laid out as detect's tiles (480 px = two 256 px chips overlapping by 32 from either corner),
    the loop and detect see the same pixels in the same context: the comparison is of the loops alone."""
    from pipeline.detect import detect

    before, after = bench.write_synthetic_pair(tmp_path / "pair", 480, seed=1)
    ours = detect(before, after, tmp_path / "out", "eoleads-s2-unet", device="cpu")
    loop = torchgeo_loop(before, after, "eoleads-s2-unet", chip=256, overlap=32, workers=2)
    with rasterio.open(ours.probabilities) as src:
        stored = src.read().astype(int)
        names = src.descriptions
    theirs = probabilities_as_uint8(loop.probabilities[[CATEGORY_IDS.index(n) for n in names]],
                                    loop.valid[None]).astype(int)
    assert (stored == PROBABILITY_NODATA).sum() == (theirs == PROBABILITY_NODATA).sum() == 0
    assert np.abs(stored - theirs).max() <= 1  # within 1/250
    assert len(ours.polygons) == len(loop.polygons) > 0


def test_torchgeo_loop_refuses_a_pair_smaller_than_a_chip(tmp_path: Path) -> None:
    before, after = bench.write_synthetic_pair(tmp_path, 256)
    with pytest.raises(ValueError, match="smaller than one 512 px chip"):
        torchgeo_loop(before, after, "baseline", chip=512, workers=0)


def test_a_child_outgrowing_the_memory_cap_is_stopped_and_recorded(tmp_path: Path) -> None:
    result = bench.run_child("detect", rss_cap_mb=1, before=tmp_path / "b.tif", after=tmp_path / "a.tif",
                             out=tmp_path / "out", tiles=1, repeats=1)
    assert result == {"stopped_at_mb": 1}


def _table_rows(text: str, header: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@pytest.mark.slow
def test_quick_bench_writes_a_well_formed_section(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nNotes kept.\n\n<!-- bench:gpu:begin -->\nGPU figures kept.\n"
                   "<!-- bench:gpu:end -->\n")
    bench.main(["--quick", "--out", str(out), "--workdir", str(tmp_path)])
    text = out.read_text()
    assert "Notes kept." in text and "GPU figures kept." in text
    section = text.split(bench.SCALE_BEGIN, 1)[1].split(bench.SCALE_END, 1)[0]
    assert re.search(r"Machine: .+ cores.+torch \S+, GDAL \S+.+Date: \d{4}-\d{2}-\d{2}", section)
    rows = _table_rows(section, "| scene | Mpx |")
    assert [r[0] for r in rows] == [f"{s}²" for s in bench.QUICK_SIZES]
    stages = len(bench.DETECT_STAGES)
    for row in rows:
        assert float(row[3]) > 0 and float(row[4]) > 0  # Mpx/s and km²/s
        assert all(cell == "—" or float(cell) > 0 for cell in row[5:5 + stages])  # the stages this version has
        assert float(row[5 + stages]) > 100  # peak RSS of a process that loaded torch, MiB
    by_stage = _table_rows(section, "| scene | read |")
    assert [r[0] for r in by_stage] == [f"{s}²" for s in bench.QUICK_SIZES]
    for row, peak in zip(by_stage, rows, strict=True):
        model_mb = float(row[1 + list(bench.DETECT_STAGES).index("features and model")])
        assert 100 < model_mb <= float(peak[5 + stages]) + 1  # sampled during the model, never above the peak
    assert re.search(r"Peak resident memory from \d+ to \d+ MiB across the sizes, \+\d+ %: (flat|not flat)", section)
    model = _table_rows(section, "| scene | tiles |")
    assert len(model) == len(bench.QUICK_SIZES) and all(row[-1].endswith("%") for row in model)
    if cpu_runs_natively("bf16"):
        reduced = _table_rows(section, "| precision | end to end s |")
        assert [r[0] for r in reduced] == ["fp32", "bf16"] and all(float(r[1]) > 0 for r in reduced)
        assert re.search(r"`detect` at bf16 runs at \d+\.\d\dx fp32's rate", section)
    else:
        assert "no native bf16" in section and "| precision | end to end s |" not in section
    loop = _table_rows(section, "| loop | seconds |")
    assert [r[0] for r in loop] == ["`detect`", "TorchGeo-style"]
    assert re.search(r"`detect` runs at \d+\.\dx the TorchGeo-style loop's rate", section)
    assert re.search(r"agree within 1/250 on \d+\.\d+ %", section)


def test_region_prediction_names_the_slowest_stage() -> None:
    slow_decode = gpucheck.predict_region(flops_per_px=1e5, decode_per_core=1.0, overlap_factor=1.3)
    assert max(slow_decode, key=slow_decode.get) == "decode of the cached COGs"
    heavy_model = gpucheck.predict_region(flops_per_px=1e9, decode_per_core=1000.0, overlap_factor=1.3)
    assert max(heavy_model, key=heavy_model.get) == "model (bf16)"
    # twice the area takes twice as long in every stage
    double = gpucheck.predict_region(1e5, 1.0, 1.3, area_km2=2 * gpucheck.HULUNBUIR_KM2)
    assert all(double[k] == pytest.approx(2 * slow_decode[k]) for k in slow_decode)


@pytest.mark.slow
def test_gpucheck_prediction_runs_on_the_cpu(tmp_path: Path) -> None:
    lines = gpucheck.prediction_lines(tmp_path)
    text = "\n".join(lines)
    assert lines[0] == gpucheck.PREDICT_BEGIN and lines[-1] == gpucheck.PREDICT_END
    assert "Prediction (not a measurement)" in text
    assert re.search(r"decodes \d+\.\d Mpx/s", text) and re.search(r"\d+\.\d kFLOP per input pixel", text)
    rows = _table_rows(text, "| stage | predicted seconds |")
    assert [r[0] for r in rows] == ["decode of the cached COGs", "PCIe upload (uint16)", "model (bf16)"]
    slowest = max(rows, key=lambda r: float(r[1]))[0]
    assert f"**{slowest}**" in text


@pytest.mark.slow
def test_gpucheck_engine_timing_runs_on_the_cpu(tmp_path: Path) -> None:
    """The engine part of `make gpu-check` on the CPU (no GPU memory figures there): one call prepares the
    detector at each precision this CPU runs natively (bf16 only with AVX-512 or AMX), times the model and
    `detect`, and fills its table."""
    precisions = ("bf16", "fp32") if cpu_runs_natively("bf16") else ("fp32",)
    lines = gpucheck.engine_lines("cpu", tmp_path, size=512, repeats=1, batch=4, precisions=precisions)
    rows = _table_rows("\n".join(lines), "| precision |")
    assert [r[0] for r in rows] == [f"{p}, channels_last" for p in precisions]
    for row in rows:
        # rates are figures (printed to 0.1 Mpx/s: a busy CPU may print 0.0), not the "—" of a missing one
        assert float(row[1]) >= 0 and float(row[2]) >= 0 and row[3].endswith("%") and row[4] == "—, —"


def test_rss_by_stage_charges_memory_to_the_stage_that_held_it() -> None:
    timer = StageTimer()
    with RssByStage(timer, interval=0.001) as rss:
        with timer("small"):
            time.sleep(0.05)
        with timer("large"):
            # 64 MiB of fresh pages, touched: mapped from the kernel, not from memory the allocator
            # kept from earlier tests (which would add nothing resident)
            with mmap.mmap(-1, 64 * 2**20) as held:
                np.frombuffer(held, np.uint8)[:] = 1
                time.sleep(0.05)
    assert set(rss.peak_mb) >= {"small", "large"}
    assert rss.peak_mb["large"] > rss.peak_mb["small"] + 48
