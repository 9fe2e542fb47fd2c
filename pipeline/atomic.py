"""Outputs appear whole or not at all: write beside the final name, then rename into place.

A write that fails because the disk is full or the folder is not writable becomes an
`InputError` naming the place and the fix: GDAL's own messages for these ("no such table:
gpkg_contents", "Write failed") say nothing a user can act on.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.errors import EoleadsError, InputError

_FULL_FIX = "free space on that disk, or set `output` to a folder on a larger one, then run the same command again"
_LOCKED_FIX = "make the folder writable for this user, or set `output` to a folder you can write to"
STORAGE_ERRORS = {  # errno: (what happened, what to do)
    errno.ENOSPC: ("the disk is full", _FULL_FIX),
    errno.EDQUOT: ("the disk quota is used up", _FULL_FIX),
    errno.EFBIG: ("the file grew larger than this system allows", _FULL_FIX),
    errno.EROFS: ("the folder is on a read-only file system", _LOCKED_FIX),
    errno.EACCES: ("permission denied", _LOCKED_FIX),
    errno.EPERM: ("the folder does not allow writing", _LOCKED_FIX),
}
_PROBE_BYTES = 1 << 20


def _probe(folder: Path) -> int | None:
    """The errno of writing a small file into `folder`, None when that works.

    GDAL reports a full disk as a broken table or a failed write without the errno, so the
    place it wrote to is asked directly.
    """
    probe = folder / f".eoleads-probe.{os.getpid()}.partial"
    try:
        with open(probe, "wb") as fh:
            fh.write(bytes(_PROBE_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        return exc.errno
    finally:
        probe.unlink(missing_ok=True)
    return None


def _storage_error(path: Path, exc: BaseException) -> InputError | None:
    """The `InputError` a failed write to `path` deserves when its disk is full or not writable.

    None when the place can be written to: then the failure is something else and keeps its
    own error.
    """
    if isinstance(exc, EoleadsError):
        return None
    path = Path(path)
    code = exc.errno if isinstance(exc, OSError) and exc.errno in STORAGE_ERRORS else None
    if code is None:
        folder = next((p for p in (path, *path.parents) if p.is_dir()), None)
        code = _probe(folder) if folder is not None else None
    if code not in STORAGE_ERRORS:
        return None
    problem, fix = STORAGE_ERRORS[code]
    return InputError(path, None, f"could not be written: {problem} ({os.strerror(code)})", fix)


@contextmanager
def storage_errors(path: Path) -> Iterator[None]:
    """Writes under `path` in this block that fail for a full or unwritable disk raise `InputError`."""
    try:
        yield
    except Exception as exc:
        error = _storage_error(path, exc)
        if error is None:
            raise
        raise error from exc


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix, so drivers recognise it) that replaces `path`
    when the block succeeds and is removed when it fails; readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    with storage_errors(path):
        tmp.unlink(missing_ok=True)
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)  # before a failure is looked into: the probe gets its space back


def write_text_atomic(path: Path, text: str) -> None:
    """A UTF-8 text file that appears whole or not at all."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: Path, data: Any) -> None:
    """Indented UTF-8 JSON (dates and paths as strings) that appears whole or not at all."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
