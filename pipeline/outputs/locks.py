"""Locks on a run folder: two jobs never work on the same cells, and the outputs are merged once.

A run without --shard has the folder to itself; `--shard K/N` jobs each hold their own shard
and share the folder with the other shards of the same N. The locks are the operating
system's (`filelock`: flock on Unix, LockFileEx on Windows), so a killed job's locks go with
it and never need clearing by hand. A small file beside each lock says who holds it, for the
message the job that is refused prints.

Whether another job holds a lock can only be learnt by trying to take it, so a job that checks
holds the lock for an instant; two jobs checking at once would each see the other's check as a
job at work. A check therefore waits a moment before it calls a lock held: a check lets go in
microseconds, a job holds its lock for the whole run.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from filelock import BaseFileLock, FileLock, Timeout

from pipeline.atomic import storage_errors, write_json_atomic
from pipeline.errors import InputError

WHOLE = "run"  # the lock of a run without --shard
MERGE = "merge"
_SHARD = re.compile(r"shard-(\d+)-of-(\d+)$")
_CHECK_WAIT_S = 2.0  # how long a held lock may be another job's check, not a job
_WAIT_FIX = "wait for it to finish, or set another `output` folder; the lock goes away by itself when that process ends"


def shard_lock(k: int, n: int) -> str:
    """The name of the lock shard `k` of `n` holds."""
    return f"shard-{k}-of-{n}"


class FolderLocks:
    """The locks one job holds on a run folder; `release` (or the job's end) frees them all."""

    def __init__(self, lock_dir: Path, root: Path) -> None:
        self.lock_dir, self.root = lock_dir, root
        self._held: dict[str, BaseFileLock] = {}

    def take_whole(self) -> None:
        """The whole folder, for a run without --shard or one that starts over (--fresh)."""
        self._take(WHOLE, _WAIT_FIX)
        busy = [name for name in self._shards() if self._busy(name)]
        if busy:
            self.release()
            raise self._refusal(busy[0], "a run without --shard, or with --fresh, needs the folder to itself: "
                                         "wait for the shard jobs to finish")

    def take_shard(self, k: int, n: int) -> None:
        """Shard `k` of `n`: refused while it, a run without --shard or a split into other than `n` runs."""
        self._take(shard_lock(k, n), _WAIT_FIX)
        for name in [WHOLE, *self._shards()]:
            split = _SHARD.match(name)
            if name in self._held or (split and int(split[2]) == n):
                continue
            if self._busy(name):
                self.release()
                raise self._refusal(name, "wait for it to finish; every shard job on one folder splits it into "
                                          "the same N parts")

    def take_merge(self) -> bool:
        """The right to write the merged outputs; False while another job is writing them."""
        return self._try(MERGE)

    def drop(self, name: str) -> None:
        """Free one lock this job holds."""
        self._held.pop(name).release()

    def release(self) -> None:
        """Free every lock this job holds."""
        while self._held:
            self._held.popitem()[1].release()

    def _path(self, name: str) -> Path:
        return self.lock_dir / f"{name}.lock"

    def _take(self, name: str, fix: str) -> None:
        if not self._try(name, wait_s=_CHECK_WAIT_S):  # another job may be checking it this instant
            raise self._refusal(name, fix)

    def _try(self, name: str, wait_s: float = 0.0) -> bool:
        """Take a lock if it is free (or freed within `wait_s`), and say who holds it now."""
        lock = FileLock(self._path(name))
        with storage_errors(self.lock_dir):
            try:
                lock.acquire(timeout=wait_s, poll_interval=0.01)
            except Timeout:
                return False
        self._held[name] = lock
        write_json_atomic(self._path(name).with_suffix(".json"), {
            "pid": os.getpid(), "host": platform.node(), "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)})
        return True

    def _busy(self, name: str) -> bool:
        """Whether a job holds the lock: held past a check's instant (see the module's note)."""
        lock = FileLock(self._path(name))
        try:
            lock.acquire(timeout=_CHECK_WAIT_S, poll_interval=0.01)
        except Timeout:
            return True
        lock.release()
        return False

    def _shards(self) -> list[str]:
        return sorted(p.stem for p in self.lock_dir.glob("shard-*.lock") if _SHARD.match(p.stem))

    def _refusal(self, name: str, fix: str) -> InputError:
        try:
            who = json.loads(self._path(name).with_suffix(".json").read_text(encoding="utf-8"))
            holder = f"pid {who['pid']} on {who['host']}, started {who['started']}: {who['command']}"
        except (OSError, ValueError, KeyError, TypeError):
            holder = "holder unknown"
        split = _SHARD.match(name)
        job = f"shard job {split[1]}/{split[2]}" if split else "another eoleads run"
        return InputError(self.root, None, f"{job} is working in this folder ({holder})", fix)
