"""The lead register: every lead ever issued, across runs, with what reviewers made of it.

Next month's run over the same AOI must not hand out last month's leads again as new. The
register is one GeoPackage layer that reviewers edit in QGIS (status, outcome, reviewer, date,
note); each run holds its leads against it, marks each one, leaves out those a reviewer found
not real unless the change grew, and adds what is new. The rules (docs/register.md):

- a lead continues a registered one with the same lead id, or, in the same category family
  (the same category, or either one `other`), with IoU >= `MIN_IOU` or an overlap covering more
  than `MIN_SMALLER_SHARE` of the smaller polygon; ids alone do not do, since they change with
  the geometry and the monitoring window;
- a lead rejected as 不属实 is raised again only when the change grew beyond `REGROWTH` times the
  area it had when the review was first seen.

A run never writes the reviewer fields. Writes hold a lock, keep the previous version beside
the register and replace the file whole; a register that another program holds open with
unwritten changes is refused rather than corrupted.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from filelock import FileLock, Timeout

from detectors.categories import OTHER_ID
from pipeline.atomic import atomic_path, storage_errors, write_text_atomic
from pipeline.config import RunConfig
from pipeline.detection.vectorize import EQUAL_AREA_CRS
from pipeline.errors import InputError
from pipeline.outputs.qgis_style import layer_styles, value_map_style_qml
from pipeline.outputs.workbook import write_workbook

NEW, PERSISTING, HANDED_OUT, REVIEWED = "新增", "持续", "已下发", "已核查"
STATUSES = (NEW, PERSISTING, HANDED_OUT, REVIEWED)
REJECTED = "不属实"
OUTCOMES = ("属实", REJECTED, "已整改")
#: A lead continues a registered one at this intersection over union ...
MIN_IOU = 0.3
#: ... or when their overlap covers more than this share of the smaller of the two.
MIN_SMALLER_SHARE = 0.5
#: A rejected change is raised again once it is larger than this many times its reviewed area.
REGROWTH = 1.5
RAISED, LEFT_OUT = "raised", f"left out ({REJECTED}, not grown)"
LAYER, RUNS_LAYER = "register", "runs"
LOCK_WAIT_S = 120.0

#: The register layer's columns; `REVIEWER_FIELDS` are the reviewers', the others the runs'.
REGISTER_SCHEMA: dict[str, str] = {
    "register_id": "object", "category": "object", "category_zh": "object",
    "status": "object", "review_outcome": "object", "reviewer": "object", "review_date": "object",
    "review_note": "object",
    "area_m2": "float64", "first_area_m2": "float64", "review_area_m2": "float64", "review_area_for": "object",
    "first_run": "object", "first_window": "object", "last_run": "object", "last_window": "object",
    "runs_seen": "int64", "last_lead_ids": "object", "last_result": "object", "lon": "float64", "lat": "float64",
}
REVIEWER_FIELDS = ("status", "review_outcome", "reviewer", "review_date", "review_note")
RUNS_SCHEMA: dict[str, str] = {
    "run": "object", "name": "object", "monitoring_window": "object", "finished": "object", "leads": "int64",
    "leads_new": "int64", "leads_persisting": "int64", "leads_handed_out": "int64", "leads_reviewed": "int64",
    "leads_suppressed": "int64", "leads_regrown": "int64",
}
_VALUE_FIX = ("pick one of the listed values (the register's QGIS style offers them as a list), or clear the field; "
              "then run the same command again: the finished cells are kept")


@dataclass(frozen=True)
class RunStamp:
    """Which run is holding its leads against the register."""

    run: str  # the run folder, relative to the register's folder where it can be
    name: str
    window: str  # the monitoring window, start/end
    finished: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @classmethod
    def of(cls, config: RunConfig, register: Path) -> RunStamp:
        """The stamp of a run of `config` against the register at `register`."""
        try:
            folder = os.path.relpath(config.output, Path(register).parent)
        except ValueError:  # another drive
            folder = str(config.output)
        window = f"{config.windows.monitoring.start.isoformat()}/{config.windows.monitoring.end.isoformat()}"
        return cls(Path(folder).as_posix(), config.name, window)


@dataclass
class Reconciled:
    """The register after a run, and the run's leads marked against it."""

    register: gpd.GeoDataFrame  # every row: the earlier ones (updated where seen again) and the new ones
    leads: gpd.GeoDataFrame  # every lead of the run, with status, register_id and register_note
    raised: np.ndarray  # False for the leads left out (rejected and not grown)
    counts: dict[str, int]


def empty_register(crs: str) -> gpd.GeoDataFrame:
    """A register without rows, with every column."""
    return gpd.GeoDataFrame({c: pd.Series(dtype=t) for c, t in REGISTER_SCHEMA.items()},
                            geometry=gpd.GeoSeries([], crs=crs), crs=crs)


def _with_schema(register: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The register's columns in their types, as read back from what QGIS or GDAL left: NULL text
    becomes "" (and a list value loses stray spaces), a missing column is added; columns of the
    user's own are kept."""
    reg = register.copy()
    for col, dtype in REGISTER_SCHEMA.items():
        if col not in reg:
            reg[col] = "" if dtype == "object" else 0 if dtype == "int64" else np.nan
        elif dtype == "object":
            text = pd.Series(["" if pd.isna(v) else str(v) for v in reg[col]], index=reg.index, dtype=object)
            reg[col] = text.str.strip() if col in ("status", "review_outcome") else text
        else:
            reg[col] = pd.to_numeric(reg[col], errors="coerce")
    reg["runs_seen"] = reg.runs_seen.fillna(0).astype("int64")
    return reg[[*REGISTER_SCHEMA, *[c for c in reg.columns if c not in REGISTER_SCHEMA]]].reset_index(drop=True)


def _family_match(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Categories of one family: the same, or either one `other` (a change a later run classifies)."""
    return (a == b) | (a == OTHER_ID) | (b == OTHER_ID)


def match_leads(register: gpd.GeoDataFrame, leads: gpd.GeoDataFrame) -> np.ndarray:
    """For each lead, the position of the registered lead it continues, -1 where none.

    The same id wins; else the overlap of the same family with the highest IoU that passes
    `MIN_IOU` or covers more than `MIN_SMALLER_SHARE` of the smaller polygon. Several leads may
    continue one registered lead (a change that split).
    """
    rows = np.full(len(leads), -1)
    if not len(register) or not len(leads):
        return rows
    reg = shapely.make_valid(register.geometry.to_crs(EQUAL_AREA_CRS).to_numpy())
    new = leads.geometry.to_crs(EQUAL_AREA_CRS).to_numpy()
    li, ri = shapely.STRtree(reg).query(new, predicate="intersects")
    inter = shapely.area(shapely.intersection(new[li], reg[ri]))
    a_new, a_reg = shapely.area(new[li]), shapely.area(reg[ri])
    iou = inter / np.maximum(a_new + a_reg - inter, 1e-9)
    share = inter / np.maximum(np.minimum(a_new, a_reg), 1e-9)
    ok = _family_match(leads.category.to_numpy()[li], register.category.to_numpy()[ri]) & (
        (iou >= MIN_IOU) | (share > MIN_SMALLER_SHARE))
    best = pd.DataFrame({"lead": li[ok], "row": ri[ok], "iou": iou[ok]}).sort_values(
        ["lead", "iou"], ascending=[True, False], kind="stable").drop_duplicates("lead")
    rows[best.lead.to_numpy()] = best.row.to_numpy()
    by_id = {i: r for r, ids in enumerate(register.last_lead_ids) for i in str(ids).split(",") if i}
    by_id.update({i: r for r, i in enumerate(register.register_id)})
    same = np.array([by_id.get(i, -1) for i in leads.lead_id], dtype=int)
    return np.where(same >= 0, same, rows)


def _reviews_noted(register: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """A reviewed lead's status is 已核查, and the area it had when its review was first seen is kept
    (for the regrowth rule); a new review date or outcome takes the area again."""
    reg = register.copy()
    outcome = reg.review_outcome.to_numpy()
    reg.loc[outcome != "", "status"] = REVIEWED
    key = reg.review_outcome + "|" + reg.review_date
    fresh = (outcome != "") & (reg.review_area_for != key).to_numpy()
    reg.loc[fresh, "review_area_m2"] = reg.area_m2[fresh]
    reg.loc[fresh, "review_area_for"] = key[fresh]
    return reg


def _notes(reg: gpd.GeoDataFrame, rows: np.ndarray, grown: np.ndarray, total: np.ndarray, again: np.ndarray
           ) -> list[str]:
    """What the register says about each lead, for the run's `register_note` column; nothing for a
    lead first issued by this same run (resumed or merged again), as on its first issue."""
    notes = []
    for row, is_grown in zip(rows, grown, strict=True):
        if row < 0 or (again[row] and not reg.review_outcome.iloc[row]):
            notes.append("")
            continue
        r = reg.iloc[row]
        text = f"registered {r.register_id}, first seen in {r.first_run} ({r.first_window})"
        if r.review_outcome:
            text += f"; reviewed {r.review_outcome} by {r.reviewer or '?'} on {r.review_date or '?'}"
            text += f": {r.review_note}" if r.review_note else ""
        if is_grown:
            text += (f"; grown to {total[row]:.0f} m² from {r.review_area_m2:.0f} m² when reviewed "
                     f"(> {REGROWTH:g}×): raised again")
        notes.append(text)
    return notes


def reconcile(register: gpd.GeoDataFrame, leads: gpd.GeoDataFrame, stamp: RunStamp) -> Reconciled:
    """Mark a run's leads against the register, and the register after the run.

    `register` has the columns of `REGISTER_SCHEMA` (any CRS); `leads` those of the leads layer.
    Reviewer fields are carried over untouched, except that a lead with an outcome is 已核查.
    """
    reg = _reviews_noted(_with_schema(register))
    rows = match_leads(reg, leads)
    seen = rows >= 0
    area = leads.area_m2.to_numpy(dtype=float)
    total = np.bincount(rows[seen], weights=area[seen], minlength=len(reg))
    rejected = (reg.review_outcome == REJECTED).to_numpy()
    grown_row = rejected & (total > REGROWTH * reg.review_area_m2.fillna(np.inf).to_numpy())
    status = reg.status.to_numpy()
    again = (status == NEW) & (reg.first_run == stamp.run).to_numpy()  # the issuing run, done again
    row_status = np.where(np.isin(status, (HANDED_OUT, REVIEWED)), status, np.where(again, NEW, PERSISTING))

    def per_lead(values: np.ndarray, unmatched: object) -> np.ndarray:
        """A register row's value for each lead; `unmatched` for a lead that continues none (row -1)."""
        return np.append(values.astype(object), [unmatched])[rows]

    raised = ~per_lead(rejected & ~grown_row, False).astype(bool)
    grown = per_lead(grown_row, False).astype(bool)
    marked = leads.assign(status=per_lead(row_status, NEW),
                          register_id=np.where(seen, per_lead(reg.register_id.to_numpy(), ""), leads.lead_id),
                          register_note=_notes(reg, rows, grown, total, again))
    in_crs = leads.geometry.to_crs(reg.crs)
    updated = reg.copy()
    for row, part in pd.Series(np.arange(len(leads))[seen]).groupby(rows[seen]):
        biggest = part.to_numpy()[np.argmax(area[part.to_numpy()])]
        updated.loc[row, ["status", "area_m2", "last_window", "last_lead_ids", "lon", "lat", "last_result"]] = [
            row_status[row], total[row], stamp.window, ",".join(leads.lead_id.to_numpy()[part.to_numpy()]),
            leads.lon.iloc[biggest], leads.lat.iloc[biggest], RAISED if raised[biggest] else LEFT_OUT]
        updated.loc[row, "runs_seen"] += int(updated.last_run[row] != stamp.run)
        updated.loc[row, "last_run"] = stamp.run
        updated.loc[row, updated.geometry.name] = shapely.union_all(in_crs.to_numpy()[part.to_numpy()])
    new = leads[~seen]
    added = gpd.GeoDataFrame({
        "register_id": new.lead_id, "category": new.category, "category_zh": new.category_zh, "status": NEW,
        **dict.fromkeys(REVIEWER_FIELDS[1:], ""), "area_m2": new.area_m2, "first_area_m2": new.area_m2,
        "review_area_m2": np.nan, "review_area_for": "", "first_run": stamp.run, "first_window": stamp.window,
        "last_run": stamp.run, "last_window": stamp.window, "runs_seen": 1, "last_lead_ids": new.lead_id,
        "last_result": RAISED, "lon": new.lon, "lat": new.lat}, geometry=in_crs[~seen], crs=reg.crs)
    register_after = gpd.GeoDataFrame(pd.concat([updated, _with_schema(added)], ignore_index=True), crs=reg.crs)
    shown = marked.status.to_numpy()[raised]
    counts = {"leads_new": int((shown == NEW).sum()), "leads_persisting": int((shown == PERSISTING).sum()),
              "leads_handed_out": int((shown == HANDED_OUT).sum()), "leads_reviewed": int((shown == REVIEWED).sum()),
              "leads_suppressed": int((~raised).sum()), "leads_regrown": int(grown.sum())}
    return Reconciled(register_after, marked, raised, counts)


def read_register(path: Path, crs: str) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """The register and its table of runs; empty ones (in `crs`) where the file does not exist yet."""
    path = Path(path)
    no_runs = pd.DataFrame({c: pd.Series(dtype=t) for c, t in RUNS_SCHEMA.items()})
    if not path.exists():
        return empty_register(crs), no_runs
    try:
        layers = dict(pyogrio.list_layers(path))
        if LAYER not in layers:
            raise InputError(path, None, f"has no '{LAYER}' layer, so it is not an eoleads lead register",
                             "set `register` in the configuration to the register's GeoPackage (or to a new file)")
        register = _with_schema(pyogrio.read_dataframe(path, layer=LAYER))
        runs = pyogrio.read_dataframe(path, layer=RUNS_LAYER) if RUNS_LAYER in layers else no_runs
    except pyogrio.errors.DataSourceError as exc:
        raise InputError(path, None, f"cannot be read as a GeoPackage ({exc})",
                         f"restore it from {backup_path(path).name} beside it (the version before the last run "
                         "wrote it), or move it away to start a new register") from None
    for col, allowed in (("status", STATUSES), ("review_outcome", OUTCOMES)):
        bad = register[~register[col].isin(("", *allowed))]
        if len(bad):
            raise InputError(path, col, f"{len(bad)} row(s) hold a value that is not one of {', '.join(allowed)}, "
                             f"e.g. {bad.register_id.iloc[0]}: {bad[col].iloc[0]!r}", _VALUE_FIX)
    return register, runs


def backup_path(path: Path) -> Path:
    """Where the register's previous version is kept."""
    return Path(path).with_name(f"{Path(path).stem}.previous{Path(path).suffix}")


def _refuse_if_open(path: Path) -> None:
    """Replacing a GeoPackage that a program holds open with a write-ahead log would hand the new
    file that program's log: refuse instead. QGIS keeps `<file>-wal` beside a GeoPackage it has open."""
    for suffix in ("-wal", "-journal"):
        side = Path(f"{path}{suffix}")
        if side.exists():
            raise InputError(path, None, f"is open in another program (QGIS?) or was left half-written: {side.name} "
                             "is beside it",
                             "save your edits in QGIS and remove the register layer (or close the project), then "
                             "run the same command again: the finished cells are kept. If no program has it open, "
                             "open it in QGIS once and close it, which writes the pending changes into it")


def _sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a GeoPackage, with what its write-ahead log holds, in rollback-journal mode.

    The source is opened for writing although nothing is written to it: a read-only connection to
    a file QGIS left in write-ahead-log mode leaves an empty `-wal` behind, which would then read
    as the file being open elsewhere.
    """
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")


@contextmanager
def _locked(path: Path, wait_s: float) -> Iterator[None]:
    """The register to this process: runs finishing together write it one after the other."""
    lock = FileLock(f"{path}.lock")
    with storage_errors(path):
        try:
            lock.acquire(timeout=wait_s)
        except Timeout:
            raise InputError(path, None, f"another eoleads run has held the register for {wait_s:g} s "
                             f"({path.name}.lock)", "wait for that run to finish, then run the same command "
                             "again: the finished cells are kept") from None
    try:
        yield
    finally:
        lock.release()


def _write(path: Path, register: gpd.GeoDataFrame, runs: pd.DataFrame) -> None:
    """Replace the register whole, keeping the version it replaces and any layer or style of the user's."""
    existed = path.exists()
    if existed:
        with atomic_path(backup_path(path)) as tmp:
            _sqlite_copy(path, tmp)
    with atomic_path(path) as tmp:
        if existed:
            _sqlite_copy(path, tmp)
        pyogrio.write_dataframe(register, tmp, layer=LAYER, driver="GPKG", geometry_type="MultiPolygon",
                                promote_to_multi=True)
        pyogrio.write_dataframe(runs, tmp, layer=RUNS_LAYER, driver="GPKG")
        styled = "layer_styles" in dict(pyogrio.list_layers(tmp))
        if not styled or LAYER not in set(pyogrio.read_dataframe(tmp, layer="layer_styles").f_table_name):
            # written once: a style the user saves into the register later stays
            pyogrio.write_dataframe(layer_styles({LAYER: register_style_qml()}), tmp, layer="layer_styles",
                                    driver="GPKG", append=styled)


def register_style_qml() -> str:
    """The register's QGIS style: coloured by status, drop-down lists for status and outcome, a
    calendar for the review date, and the fields a run writes shown read-only."""
    return value_map_style_qml(
        "status", {NEW: (215, 25, 28), PERSISTING: (253, 174, 97), HANDED_OUT: (44, 123, 182),
                   REVIEWED: (150, 150, 150)},
        {"status": STATUSES, "review_outcome": OUTCOMES}, date_fields=("review_date",),
        read_only=[c for c in REGISTER_SCHEMA if c not in REVIEWER_FIELDS])


@dataclass
class RegisterCheck:
    """A run's leads held against the register: what the run writes now, and the update it records
    (with `commit`) once its outputs are written."""

    path: Path
    stamp: RunStamp
    crs: str
    all_leads: gpd.GeoDataFrame  # every lead, those left out included: the register follows them too
    leads: gpd.GeoDataFrame  # the leads the run hands out, marked
    counts: dict[str, int]
    notes: list[str]

    @classmethod
    def against(cls, path: Path, leads: gpd.GeoDataFrame, stamp: RunStamp, crs: str) -> RegisterCheck:
        """Hold `leads` against the register at `path` (a new one is made in `crs`)."""
        path = Path(path)
        _refuse_if_open(path)
        register, _ = read_register(path, crs)
        done = reconcile(register, leads, stamp)
        c = done.counts
        notes = [f"register {path}: {c['leads_new']} new (新增), {c['leads_persisting']} seen in earlier runs "
                 f"(持续), {c['leads_handed_out']} already handed out (已下发), {c['leads_reviewed']} reviewed "
                 "(已核查)"]
        if c["leads_suppressed"]:
            left_out = done.leads.register_id[~done.raised].tolist()
            notes.append(f"{c['leads_suppressed']} lead(s) left out: a reviewer found them not real ({REJECTED}) and "
                         f"the change has not grown beyond {REGROWTH:g}× the area reviewed ({', '.join(left_out[:5])}"
                         f"{' ...' if len(left_out) > 5 else ''}); they stay in the register")
        if c["leads_regrown"]:
            notes.append(f"{c['leads_regrown']} lead(s) rejected earlier ({REJECTED}) are raised again: the change "
                         f"grew beyond {REGROWTH:g}× the area reviewed (see register_note)")
        shown = done.leads[done.raised].reset_index(drop=True)
        return cls(path, stamp, crs, leads, shown, c, notes)

    def commit(self, wait_s: float = LOCK_WAIT_S) -> None:
        """Record the run in the register, against the register as it is now (edited in QGIS, or
        written by another run since the check): nobody's changes are lost."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path, wait_s):
            _refuse_if_open(self.path)
            register, runs = read_register(self.path, self.crs)
            done = reconcile(register, self.all_leads, self.stamp)
            row = {"run": self.stamp.run, "name": self.stamp.name, "monitoring_window": self.stamp.window,
                   "finished": self.stamp.finished, "leads": int(done.raised.sum()), **done.counts}
            _write(self.path, done.register, pd.concat([runs, pd.DataFrame([row])], ignore_index=True))


def check_register(leads: gpd.GeoDataFrame, config: RunConfig) -> RegisterCheck:
    """Mark a run's leads against the configuration's register (which must be set) and leave out
    the rejected ones that did not grow; nothing is written until `commit`."""
    path = Path(config.lead_register)
    return RegisterCheck.against(path, leads, RunStamp.of(config, path), config.output_crs)


def _existing_register(path: Path) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """A register the user names on the command line: one that is not there is an error, not an empty one."""
    if not Path(path).exists():
        raise InputError(path, None, "no register here", "give the register's GeoPackage (by default "
                         "register.gpkg in the folder that holds the run folders, e.g. runs/register.gpkg)")
    return read_register(Path(path), EQUAL_AREA_CRS)


def describe_register(path: Path, latest: int = 5) -> str:
    """The register's state for the command line: leads by status and category, review outcomes,
    what the latest runs did."""
    register, runs = _existing_register(path)
    lines = [f"register {path}: {len(register)} lead(s)"]
    if len(register):
        table = pd.crosstab(register.category, pd.Categorical(register.status, STATUSES), margins=True,
                            margins_name="all", dropna=False, colnames=["status"])
        lines += ["", "leads by category and status:", table.to_string()]
        reviewed = register[register.review_outcome != ""]
        lines += ["", "review outcomes: " + (", ".join(f"{k} {v}" for k, v in
                                                      reviewed.review_outcome.value_counts().items()) or "none yet")]
    if len(runs):
        lines += ["", f"latest runs (of {len(runs)}):", runs.tail(latest).to_string(index=False)]
    return "\n".join(lines)


def export_register(path: Path, out: Path) -> Path:
    """The register as a table without geometry: an Excel workbook (.xlsx), or CSV with a byte-order
    mark so that Excel reads the Chinese (.csv)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise InputError(out, None, "the register is exported as .xlsx or .csv", "name the export file *.xlsx or *.csv")
    register, _ = _existing_register(path)
    table = pd.DataFrame(register.drop(columns="geometry"))
    if suffix == ".csv":
        write_text_atomic(out, "\ufeff" + table.to_csv(index=False))
    else:
        write_workbook(out, table, LAYER)
    return out
