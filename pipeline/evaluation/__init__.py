"""Measuring detectors and the engine: lead scores, held-out scenes and real pairs, threshold
calibration, architecture comparisons, benchmarks, the GPU check, and the reports they write."""
