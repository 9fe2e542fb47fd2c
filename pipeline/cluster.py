"""Where the cells run: in this process, or as tasks on a Dask cluster (one worker per GPU, machines that
share the run folder).

Every cell goes through `attempt_cell`, wherever it runs: it is processed and committed into the run
folder by the folder's own atomic commit, or recorded as failed (not committed, so the next run
retries it), exactly as the run loop always did. On a cluster each worker process builds the run's
source, zones and detector once, then takes cell after cell; only the cells' records travel back, so
the process that holds the folder's lock (and merges) never holds a cell's arrays. Workers need no
lock: they write only their own cells' staging folders and rename them into place. See docs/region.md.
"""

from __future__ import annotations

import logging
import os
import platform
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from shapely import wkt
from shapely.geometry.base import BaseGeometry
from tqdm import tqdm

from detectors import load_detector
from detectors.interface import Detector
from detectors.model_card import ModelError
from pipeline.atomic import storage_errors
from pipeline.config import ClusterConfig, RunConfig
from pipeline.errors import EoleadsError, InputError
from pipeline.inputs.grid import Cell
from pipeline.inputs.zones import Zones, load_zones
from pipeline.outputs.runfolder import RunFolder
from pipeline.profiling import StageTimer
from pipeline.sources import ImagerySource
from pipeline.sources.local import DamagedFileError

log = logging.getLogger(__name__)

_SHARED_FIX = ("put the run folder on a file system every worker mounts at the same path (NFS, Lustre, a "
               "shared volume), or run the workers on this machine")


@dataclass
class CellContext:
    """What processing a cell needs, built once per process."""

    config: RunConfig
    folder: RunFolder
    source: ImagerySource
    zones: Zones
    detector: Detector


@dataclass
class CellOutcome:
    """What comes back of one cell: its record (done or unobserved), or why it failed."""

    cell_id: str
    record: dict | None = None
    failure: str | None = None
    error: tuple | None = None  # an error the user must fix, rebuilt and raised where the run is driven
    host: str = field(default_factory=platform.node)
    seconds: dict[str, float] = field(default_factory=dict)  # stage times of a task, added to the run's
    calls: dict[str, int] = field(default_factory=dict)


def run_detector(config: RunConfig, zones: Zones) -> Detector:
    """The run's detector, for the categories it looks for where the zones switch none off."""
    return load_detector(config.detection.detector, [c for c in config.categories if c not in zones.switched_off],
                         config.device)


def attempt_cell(cell: Cell, context: CellContext, timer: StageTimer) -> CellOutcome:
    """Process and commit one cell; a failure of this cell alone is recorded, an error in the user's input
    or the model's (the same for every cell: missing weights, a precision this machine cannot run) is raised."""
    from pipeline.run import process_cell  # the run module drives this one: imported when first needed

    c = context
    try:
        with storage_errors(c.folder.cells_dir):  # a full or read-only disk fails every cell: stop, say so
            return CellOutcome(cell.id, record=process_cell(cell, c.config, c.source, c.zones, c.detector, c.folder,
                                                            timer))
    except DamagedFileError as err:  # one file's data: only the cells that read it are lost
        return CellOutcome(cell.id, failure=f"failed: {err.path}: {err.problem}; fix: {err.fix}, then run again "
                                            "to retry it")
    except (EoleadsError, ModelError):  # the user's input, or a model (or its precision) this machine cannot run
        raise
    except Exception as exc:  # one bad cell: recorded, not committed (so retried), the run goes on
        log.exception("cell %s failed", cell.id)
        return CellOutcome(cell.id, failure=f"failed ({exc.__class__.__name__}: {exc}); run again to retry it")


def default_workers(config: RunConfig) -> int:
    """One worker per GPU for a model allowed on the GPU; otherwise one (the cells run in this process)."""
    if config.device == "cpu" or config.detection.detector == "baseline":
        return 1
    try:
        import torch
    except ImportError:
        return 1
    return max(1, torch.cuda.device_count())


def run_cells(cells: list[Cell], context: CellContext, aoi_wgs84: BaseGeometry, weights: str, timer: StageTimer,
              progress: bool = True, done_before: int = 0) -> Iterator[CellOutcome]:
    """Each cell's outcome as it finishes: in this process, or on the cluster the configuration names.

    `done_before` cells (resumed) start the progress bar. Stopping early (Ctrl-C, an input error)
    cancels the tasks not yet started; a local cluster is shut down with its workers.
    """
    settings: ClusterConfig = context.config.cluster
    workers = settings.workers or default_workers(context.config)
    bar = tqdm(total=len(cells) + done_before, initial=done_before, desc="cells", unit="cell", disable=not progress)
    try:
        if settings.scheduler is None and workers <= 1:
            for cell in cells:
                yield attempt_cell(cell, context, timer)
                bar.update()
            return
        job = CellJob(context.config, context.folder.config_path, weights, aoi_wgs84.wkt,
                      context.folder.fingerprint, uuid.uuid4().hex)
        for outcome in _on_cluster(cells, job, settings, workers):
            _check_committed(outcome, context.folder)
            for stage, seconds in outcome.seconds.items():
                timer.seconds[stage] += seconds
                timer.calls[stage] += outcome.calls.get(stage, 0)
            yield outcome
            bar.update()
    finally:
        bar.close()


@dataclass(frozen=True)
class CellJob:
    """What a worker needs to build the run's context itself; `token` tells one run's tasks from another's."""

    config: RunConfig
    config_path: Path | None
    weights: str
    aoi_wkt: str
    fingerprint: str
    token: str


def _on_cluster(cells: list[Cell], job: CellJob, settings: ClusterConfig, workers: int) -> Iterator[CellOutcome]:
    """The cells as Dask tasks, a few per worker in flight at a time so the scheduler stays small."""
    from distributed import as_completed

    with _quiet_teardown() as silence:
        client, cluster = _connect(settings, workers)
        try:
            shared = client.scatter(job, broadcast=True)
            pending = iter(cells)
            running = as_completed()

            def top_up() -> None:  # two tasks per worker in flight: one running, one ready to start
                wanted = max(2, 2 * len(client.scheduler_info()["workers"])) - running.count()
                for cell in (c for _, c in zip(range(wanted), pending, strict=False)):
                    running.add(client.submit(_task, shared, cell, key=f"cell-{cell.id}-{job.token}", pure=False))

            top_up()
            for future in running:
                cell_id = future.key.removeprefix("cell-").removesuffix(f"-{job.token}")
                try:
                    outcome = future.result()
                except Exception as exc:  # the task died with its worker, or could not run at all
                    log.error("cell %s failed on the cluster: %s", cell_id, exc)
                    outcome = CellOutcome(cell_id, failure=f"failed on a worker ({exc.__class__.__name__}: {exc}); run "
                                                           "again to retry it")
                future.release()
                if outcome.error is not None:
                    cls, args = outcome.error
                    raise cls(*args)
                top_up()
                yield outcome
        except (KeyboardInterrupt, GeneratorExit):
            silence()
            raise
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


_TEARDOWN_LOGGERS = ("distributed", "tornado")


@contextmanager
def _quiet_teardown() -> Iterator[Callable[[], None]]:
    """Yields what silences Dask's and Tornado's logs while a run stops early (Ctrl-C, an input error).

    The run says why it stopped itself; the connections that break as the cluster is torn down under
    running tasks are logged with tracebacks, which would bury that message. Ctrl-C silences them in
    its own signal handler, before the KeyboardInterrupt reaches Dask: Dask's client answers it by
    scheduling a callback on its event loop thread, which can fail and be logged at once. The levels
    come back once the cluster is closed.
    """
    names = [n for n in logging.root.manager.loggerDict
             if any(n == root or n.startswith(root + ".") for root in _TEARDOWN_LOGGERS)]
    levels = {name: logging.getLogger(name).level for name in {*_TEARDOWN_LOGGERS, *names}}  # Dask sets children's

    def silence() -> None:
        for name in levels:
            logging.getLogger(name).setLevel(logging.CRITICAL)

    previous = signal.getsignal(signal.SIGINT)
    hooked = threading.current_thread() is threading.main_thread() and callable(previous)
    if hooked:
        def on_ctrl_c(signum: int, frame: object) -> None:
            silence()
            previous(signum, frame)

        signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield silence
    finally:
        if hooked:
            signal.signal(signal.SIGINT, previous)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _connect(settings: ClusterConfig, workers: int):  # -> (distributed.Client, LocalCluster | None)
    """A client of the configured scheduler (waiting for a first worker), or of a new local cluster."""
    from distributed import Client, LocalCluster

    if settings.scheduler is None:
        threads = str(max(1, (os.cpu_count() or 1) // workers))  # the cores shared out, not oversubscribed
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               env={"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
                                    "OPENBLAS_NUM_THREADS": threads})
        return Client(cluster), cluster
    try:
        client = Client(settings.scheduler, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise InputError(None, "cluster.scheduler", f"no Dask scheduler answers at {settings.scheduler} ({exc})",
                         "start one (`dask scheduler`) and its workers, check the address and port, or leave "
                         "cluster.scheduler unset to run on this machine") from None
    try:
        client.wait_for_workers(1, timeout=120)
    except TimeoutError:
        client.close()
        raise InputError(None, "cluster.scheduler", f"the scheduler at {settings.scheduler} has no worker "
                         "(waited 2 minutes)", "start workers with `dask worker " + settings.scheduler + "`, one "
                         "per GPU (docs/region.md)") from None
    return client, None


def _check_committed(outcome: CellOutcome, folder: RunFolder) -> None:
    """A cell a worker reports done must be in this run folder; where it is not, the worker wrote to another
    disk, and the cell counts as failed rather than vanishing from the leads."""
    if outcome.record is not None and outcome.record.get("status") == "done" and not folder.is_done(outcome.cell_id):
        outcome.record, outcome.failure = None, (
            f"failed: the worker on {outcome.host} finished it, but it is not in {folder.cells_dir}: that worker "
            f"does not see this run folder; fix: {_SHARED_FIX}")


_contexts: dict[str, CellContext] = {}  # per worker process: the context of the run it serves


def _worker_context(job: CellJob) -> CellContext:
    """The run's context in this worker process, built by its first task and kept for the others."""
    if job.token not in _contexts:
        _contexts.clear()  # a worker serves one run at a time: the previous run's detector goes
        config = job.config
        if not (config.output / "manifest.json").exists():
            raise InputError(config.output, None, f"the worker on {platform.node()} does not see the run folder",
                             _SHARED_FIX)
        folder = RunFolder(config.output, config, job.config_path, job.weights)  # not opened: the driver holds it
        if folder.fingerprint != job.fingerprint:
            raise InputError(config.output, None, f"the worker on {platform.node()} reads the configuration "
                             "differently (another eoleads version?)", "run the same eoleads on every worker")
        _pin_gpu(config)
        aoi = wkt.loads(job.aoi_wkt)
        source = config.source.build(aoi)
        zones = load_zones(config.zones, config.categories, aoi)
        _contexts[job.token] = CellContext(config, folder, source, zones, run_detector(config, zones))
    return _contexts[job.token]


def _pin_gpu(config: RunConfig) -> None:
    """On a machine whose workers all see several GPUs, worker k of a local cluster takes GPU k (mod
    their number); a worker started with CUDA_VISIBLE_DEVICES sees one and keeps it."""
    from distributed import get_worker

    if config.device == "cpu" or config.detection.detector == "baseline":
        return
    import torch

    name = get_worker().name
    if torch.cuda.device_count() > 1 and isinstance(name, int):
        torch.cuda.set_device(name % torch.cuda.device_count())


def _task(job: CellJob, cell: Cell) -> CellOutcome:
    """One cell on a worker; an input error comes back as data (its class and arguments) to be raised
    by the driver, as the run's own errors do not survive pickling by their message alone."""
    timer = StageTimer()
    try:
        outcome = attempt_cell(cell, _worker_context(job), timer)
    except InputError as err:
        outcome = CellOutcome(cell.id, error=(type(err), (err.path, err.field, err.problem, err.fix)))
    except (EoleadsError, ModelError) as err:
        outcome = CellOutcome(cell.id, error=(type(err), err.args))
    outcome.seconds, outcome.calls = dict(timer.seconds), dict(timer.calls)
    return outcome
