"""The machine line of the benchmark pages."""

from __future__ import annotations

import pytest

from pipeline.evaluation.report import machine, vector_units


@pytest.mark.parametrize(("flags", "units"), [({"avx2"}, "AVX2"), ({"avx2", "avx512f"}, "AVX-512"),
                                              ({"avx2", "avx512f", "avx512_bf16"}, "AVX-512 with bf16"),
                                              ({"avx2", "avx512f", "amx_bf16"}, "AVX-512 with bf16"),
                                              ({"sse2"}, "no AVX2")])
def test_the_vector_units_of_a_cpu_are_named(flags: set[str], units: str) -> None:
    assert vector_units(flags) == units


def test_the_machine_line_names_cores_and_memory() -> None:
    line = machine()
    assert " cores, " in line and " GiB, Python " in line
