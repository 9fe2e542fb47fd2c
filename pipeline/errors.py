"""Errors a user can act on: each names the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path


class EoleadsError(Exception):
    """Base of every error the command line reports without a traceback."""


class InputError(EoleadsError):
    """Bad user input: a file, the field in it that is wrong, and what to do about it."""

    def __init__(self, path: Path | str | None, field: str | None, problem: str, fix: str) -> None:
        self.path, self.field, self.problem, self.fix = path, field, problem, fix
        where = str(path) if path is not None else "input"
        if field:
            where += f", field '{field}'"
        super().__init__(f"{where}: {problem}\n  fix: {fix}")


class ConfigError(InputError):
    """A run configuration that does not validate."""
