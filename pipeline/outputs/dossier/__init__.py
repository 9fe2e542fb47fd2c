"""The printable dossier of a run: web pages, one PDF and an Excel list of the leads, in Chinese."""

from pipeline.outputs.dossier.writer import REPORT_DIR, XLSX, RunFacts, dossier_paths, write_dossier

__all__ = ["REPORT_DIR", "XLSX", "RunFacts", "dossier_paths", "write_dossier"]
