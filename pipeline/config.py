"""The run configuration: one YAML or TOML file, validated before any work starts.

Every field is documented in docs/configuration.md. Relative paths are resolved against the
folder of the configuration file, so a run folder can be moved with its configuration.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import tomllib
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from detectors import DEFAULT_MODEL
from detectors.categories import CATEGORY_IDS, PermitType, Zone
from pipeline.detection.tiling import TILING, Tiling
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from pipeline.inputs.grid import Cell, GridPlan
    from pipeline.plan import SourcePlan
    from pipeline.sources.base import ImagerySource

CategoryId = Literal[CATEGORY_IDS]  # type: ignore[valid-type]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DateRange(_Strict):
    """A date range of acquisitions composited into one image."""

    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class Windows(_Strict):
    """Baseline (earlier) and monitoring (later) windows; best the same season of two years."""

    baseline: DateRange
    monitoring: DateRange

    @model_validator(mode="after")
    def _baseline_first(self) -> Windows:
        if self.baseline.end >= self.monitoring.start:
            raise ValueError("the baseline window must end before the monitoring window starts")
        return self


class LocalSource(_Strict):
    """GeoTIFFs already on disk (an offline network, or files bought or exported elsewhere)."""

    type: Literal["local"]
    paths: list[str] = Field(min_length=1, description="files or glob patterns")
    radiometry: Literal["auto", "L2A", "L1C"] = "auto"
    bands: dict[str, int] | None = Field(
        default=None, description="band name -> 1-based band index, where files lack descriptions")

    def build(self, aoi_wgs84: BaseGeometry) -> ImagerySource:
        """The runtime source this block describes."""
        from pipeline.sources.local import LocalGeoTiffSource

        return LocalGeoTiffSource(self.paths, self.radiometry, self.bands)

    def plan(self, aoi_wgs84: BaseGeometry, cells: list[Cell], windows: Windows) -> SourcePlan:
        """Files matched and those in the windows; nothing to download."""
        from pipeline.plan import plan_files

        return plan_files("local", self.build(aoi_wgs84).acquisitions, cells, windows)


class SimulatedSource(_Strict):
    """The built-in scene simulator: Sentinel-2 L2A-like files made on first use."""

    type: Literal["simulated"]
    seed: int = 7
    folder: Path = Path("inputs")
    difficulty: Literal["demo", "held_out"] = Field(
        "demo", description="held_out: more cloud, stronger season shift, varied surfaces, changes near the unit")

    def build(self, aoi_wgs84: BaseGeometry) -> ImagerySource:
        """The runtime source: simulates the scene over the AOI on first use, then reads its files."""
        from pipeline.sources.simulated import SimulatedSource as Simulator

        return Simulator(self.folder, aoi_wgs84, self.seed, self.difficulty)

    def plan(self, aoi_wgs84: BaseGeometry, cells: list[Cell], windows: Windows) -> SourcePlan:
        """The simulated scenes in the windows (written on first run, never downloaded)."""
        from pipeline.plan import plan_simulation

        return plan_simulation(self.folder, cells, windows)


class StacSource(_Strict):
    """Sentinel-2 L2A from a STAC API or a static STAC catalog, read cell by cell through the imagery cache."""

    type: Literal["stac"]
    url: str = Field(min_length=1, description="a STAC API root, or a static catalog's JSON file (path or URL)")
    collection: str = Field("sentinel-2-l2a", min_length=1)
    max_cloud_cover: float | None = Field(default=None, ge=0, le=100, description="eo:cloud_cover, percent")
    asset_bands: dict[str, str] = Field(
        default_factory=dict, description="band -> asset key where the catalog's keys differ from Earth Search's "
        "(blue, green, red, nir, swir16, swir22, scl)")
    sign: Literal["planetary_computer"] | None = Field(
        default=None, description="sign asset URLs with the planetary-computer package")
    cache: Path | None = Field(default=None, description="imagery cache folder (default: <output>/imagery_cache)")

    @field_validator("asset_bands")
    @classmethod
    def _known_bands(cls, v: dict[str, str]) -> dict[str, str]:
        from detectors.bands import REFLECTANCE_BANDS, SCL_BAND

        unknown = sorted(set(v) - {*REFLECTANCE_BANDS, SCL_BAND})
        if unknown:
            raise ValueError(f"unknown band(s) {', '.join(unknown)}; the detectors read "
                             f"{', '.join([*REFLECTANCE_BANDS, SCL_BAND])}")
        return v

    def build(self, aoi_wgs84: BaseGeometry) -> ImagerySource:
        """The runtime source: searches the catalog once per window, reads each cell's window of each asset."""
        from pipeline.sources.stac import StacImagerySource

        return StacImagerySource(self, aoi_wgs84)

    def plan(self, aoi_wgs84: BaseGeometry, cells: list[Cell], windows: Windows) -> SourcePlan:
        """Scenes the catalog holds over the AOI in the windows, and the asset reads they need."""
        from pipeline.sources.stac import plan_stac

        return plan_stac(self, aoi_wgs84, cells, windows)


class SentinelHubSource(_Strict):
    """Sentinel-2 L2A from Sentinel Hub (Copernicus Data Space or sentinel-hub.com), fetched per cell and cached.

    Credentials come from SH_CLIENT_ID/SH_CLIENT_SECRET or a sentinelhub-py profile, never from this
    file: a run configuration is copied into the run folder and shared."""

    type: Literal["sentinelhub"]
    endpoint: Literal["cdse", "sentinel-hub"] = Field(
        "cdse", description="cdse: Copernicus Data Space (sh.dataspace.copernicus.eu); sentinel-hub: sentinel-hub.com")
    base_url: str | None = Field(default=None, description="overrides the endpoint's service URL")
    token_url: str | None = Field(default=None, description="overrides the endpoint's OAuth token URL")
    collection: str = Field("sentinel-2-l2a", min_length=1)
    max_cloud_cover: float | None = Field(default=None, ge=0, le=100, description="eo:cloud_cover, percent")
    profile: str | None = Field(default=None, description="a sentinelhub-py profile holding the credentials")
    requests_per_minute: int | None = Field(default=None, ge=1, description="the run waits to keep below it")
    processing_units_per_month: float | None = Field(
        default=None, gt=0, description="the run stops before it would spend more this month")
    attempts: int = Field(4, ge=1, le=20, description="tries per request on a server error or dropped connection")
    retry_wait_s: float = Field(5.0, ge=0, description="wait after the first failed try; tripled for each next")
    cache: Path | None = Field(default=None, description="imagery cache folder (default: <output>/imagery_cache)")

    @model_validator(mode="before")
    @classmethod
    def _no_credentials(cls, data: object) -> object:
        secrets = {"client_id", "client_secret", "sh_client_id", "sh_client_secret", "secret", "password", "token",
                   "access_token", "instance_id"}
        named = sorted(k for k in data if str(k).lower() in secrets) if isinstance(data, dict) else []
        if named:  # the values are never echoed
            raise ValueError(f"credentials ({', '.join(named)}) do not belong in the run configuration, which is "
                             "copied into the run folder; remove them and set SH_CLIENT_ID and SH_CLIENT_SECRET in "
                             "the environment, or name a sentinelhub-py profile in source.profile")
        return data

    def build(self, aoi_wgs84: BaseGeometry) -> ImagerySource:
        """The runtime source: authenticates and checks the collection before any cell is read."""
        from pipeline.sources.sentinelhub import SentinelHubImagery

        return SentinelHubImagery(self, aoi_wgs84)

    def plan(self, aoi_wgs84: BaseGeometry, cells: list[Cell], windows: Windows) -> SourcePlan:
        """Acquisitions the Catalog holds over the AOI, and the Process requests and processing units they need."""
        from pipeline.sources.sentinelhub import plan_sentinelhub

        return plan_sentinelhub(self, aoi_wgs84, cells, windows)


class ProceduralSource(_Strict):
    """Steppe-like imagery computed on request from each pixel's position: any region, no files, no
    download (region-scale runs and benchmarks; docs/region.md)."""

    type: Literal["procedural"]
    seed: int = 0
    cloud_cover: float = Field(0.05, ge=0, lt=1, description="share of each overpass under cloud")
    change_density: float = Field(0.5, ge=0, le=1, description="chance of one change per 2 km square")
    changes_from: date = Field(date(2025, 1, 1), description="overpasses from this day on show the changes")

    def build(self, aoi_wgs84: BaseGeometry) -> ImagerySource:
        """The runtime source: nothing to read or fetch until a grid is asked for."""
        from pipeline.sources.procedural import ProceduralSource as Generator

        return Generator(self.seed, self.cloud_cover, self.change_density, self.changes_from)

    def plan(self, aoi_wgs84: BaseGeometry, cells: list[Cell], windows: Windows) -> SourcePlan:
        """One computed overpass per window; nothing is read, written or downloaded."""
        from pipeline.plan import SourcePlan

        return SourcePlan("procedural", len(cells), 2, 0, 0,
                          notes=["imagery is computed cell by cell as the run asks for it; nothing is downloaded"])


Source = Annotated[LocalSource | SimulatedSource | StacSource | SentinelHubSource | ProceduralSource,
                   Field(discriminator="type")]


class PermitColumns(_Strict):
    """Which column of the permit file holds each normalised field."""

    permit_id: str = "permit_id"
    permit_type: str | None = "permit_type"
    holder: str | None = "holder"
    valid_from: str = "valid_from"
    valid_to: str = "valid_to"
    reclaim_by: str | None = "reclaim_by"


def _known_encoding(v: str | None) -> str | None:
    """The encoding itself, when Python knows it: a typo is refused before any file is read."""
    if v is not None:
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v!r} (use e.g. GBK, UTF-8)") from None
    return v


#: The text encoding of a vector file, where the file does not say it (a Shapefile without a .cpg).
Encoding = Annotated[str | None, AfterValidator(_known_encoding), Field(
    description="text encoding of the file, for a Shapefile without a .cpg (e.g. GBK)")]


class PermitLayer(_Strict):
    """One permit file (approvals with boundaries and dates) and how to read it."""

    path: Path
    layer: str | None = None
    columns: PermitColumns = PermitColumns()
    type_values: dict[str, PermitType] = Field(
        default_factory=dict, description="value in the file -> normalised permit type")
    default_type: PermitType | None = Field(
        default=None, description="type of every permit, for a layer of one type without a type column")
    date_order: Literal["DMY", "MDY", "YMD"] | None = Field(
        default=None, description="order of day, month and year in dates written with the year last (01/04/2024)")
    encoding: Encoding = None


#: A land-class code as a land survey writes it: the two digits of its first-level class, then
#: digits or letters (0301, 0301K, 05H1).
LandClassCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{2}[0-9A-Z]*$")]


class ZoneLayer(_Strict):
    """A context-zone file deciding where categories apply."""

    path: Path
    layer: str | None = None
    zone: Zone | None = Field(default=None, description="the zone of every feature in the layer")
    column: str | None = Field(default=None, description="column naming each feature's zone")
    values: dict[str, Zone] = Field(default_factory=dict, description="value in the file -> zone")
    land_survey: bool = Field(False, description="a land survey (三调) layer: zones from its land-class codes")
    code_column: str = Field("DLBM", description="land survey: the column of land-class codes")
    name_column: str = Field("DLMC", description="land survey: the column of land-class names")
    codes: dict[LandClassCode, Zone | None] = Field(  # type: ignore[valid-type]
        default_factory=dict, description="land survey: code or code prefix -> zone (null: none), over the built-ins")
    encoding: Encoding = None

    @field_validator("codes", mode="before")
    @classmethod
    def _quoted_codes(cls, v: object) -> object:
        numbers = [k for k in v if not isinstance(k, str)] if isinstance(v, dict) else []
        if numbers:  # YAML reads 0101 as the octal number 65 and 03 as 3
            raise ValueError(f"write land-class codes in quotes (\"0101\": black_soil): unquoted, YAML reads them as "
                             f"numbers without their leading zeros (here {numbers[0]!r})")
        return {k.strip().upper(): zone for k, zone in v.items()} if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _one_way(self) -> ZoneLayer:
        if [self.zone is not None, self.column is not None, self.land_survey].count(True) != 1:
            raise ValueError("give one of 'zone' (one zone for the whole layer), 'column' (the column naming each "
                             "feature's zone) or 'land_survey: true' (zones from a land survey's land-class codes)")
        survey_only = sorted({"code_column", "name_column", "codes"} & self.model_fields_set)
        if survey_only and not self.land_survey:
            raise ValueError(f"{', '.join(survey_only)} only apply with 'land_survey: true'")
        if self.values and self.column is None:
            raise ValueError("'values' only apply with 'column'")
        return self


class PriorityLayer(_Strict):
    """A reference layer whose areas raise the priority of the leads in them (nature reserves, 生态保护红线,
    永久基本农田); see docs/confidence.md."""

    path: Path
    name: str = Field(min_length=1, description="what the areas are, as the lead's priority reasons name them "
                      "(e.g. 生态保护红线)")
    weight: float = Field(1.0, gt=0, le=10, description="how much a lead in these areas gains: its priority is "
                          "multiplied by 1 + the weights of the layers it falls in")
    layer: str | None = None
    encoding: Encoding = None


class GridConfig(_Strict):
    """Processing cells: square, aligned to the UTM grid of their zone."""

    cell_size_px: int = Field(512, ge=64, le=4096)
    resolution_m: float = Field(10.0, gt=0)
    margin_px: int = Field(32, ge=0, le=512, description="halo read around each cell")


class Limits(_Strict):
    """How large a run may be: a mistyped resolution is refused before any cell is made, instead of
    filling the memory. The defaults take a whole league (Hulunbuir, ~253,000 km²) at 10 m."""

    max_cells: int = Field(100_000, ge=1)
    max_pixels: int = Field(10_000_000_000, ge=1, description="pixels per date over all cells")

    def check(self, plan: GridPlan, config_path: Path | None) -> None:
        """Refuse a grid over a limit, naming the figure, the limit and the option that raises it."""
        for field, figure, limit, what in (("max_cells", plan.cells, self.max_cells, "cells"),
                                           ("max_pixels", plan.pixels, self.max_pixels, "pixels per date")):
            if figure > limit:
                raise ConfigError(config_path, f"limits.{field}",
                                  f"more {what} than the limit of {limit:,} ({plan.summary()})",
                                  f"check grid.resolution_m ({plan.resolution:g} m), grid.cell_size_px and the AOI; "
                                  f"if a run this large is meant, raise it in the configuration: "
                                  f"limits: {{{field}: {figure}}}")


class DetectionConfig(_Strict):
    """Which detector runs and how its input is tiled."""

    detector: str = Field(DEFAULT_MODEL, description="'baseline', a model in weights/ (by name), "
                          "or a path to a model card (.json)")
    tile_size: int = Field(TILING.tile_size, ge=32, le=2048)
    tile_overlap: int = Field(TILING.overlap, ge=0)
    batch_size: int = Field(TILING.batch_size, ge=1)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="the model's arithmetic: auto (on a GPU bf16 where supported, else fp16; on the "
        "CPU fp32), bf16, fp16 or fp32 (bf16 on the CPU needs AVX-512 or AMX)")
    compile: bool = Field(False, description="compile the model with torch.compile (slow start, faster on a GPU)")
    thresholds: dict[CategoryId, Annotated[float, Field(gt=0, lt=1)]] = Field(  # type: ignore[valid-type]
        default_factory=dict, description="decision threshold per category, overriding the detector's")

    @property
    def tiling(self) -> Tiling:
        return Tiling(self.tile_size, self.tile_overlap, self.batch_size)

    @model_validator(mode="after")
    def _overlap_fits(self) -> DetectionConfig:
        if self.tile_overlap * 2 >= self.tile_size:
            raise ValueError("tile_overlap must be less than half of tile_size")
        return self


class ClusterConfig(_Strict):
    """Where the cells run (docs/region.md): in this process, on a local Dask cluster, or on an existing one."""

    workers: int | None = Field(default=None, ge=1, description="worker processes of a local cluster; unset: one "
                                "per GPU for a model on a GPU machine, else 1 (the cells run in this process)")
    scheduler: str | None = Field(default=None, min_length=1, description="address of a running Dask scheduler "
                                  "(tcp://host:8786) whose workers share the run folder; overrides workers")


class RunConfig(_Strict):
    """Everything one run needs; `eoleads run CONFIG` reads it."""

    model_config = ConfigDict(extra="forbid", serialize_by_alias=True)

    name: str = Field(min_length=1)
    aoi: list[Path] = Field(min_length=1)
    windows: Windows
    source: Source
    categories: list[CategoryId] = Field(default_factory=lambda: list(CATEGORY_IDS), min_length=1)  # type: ignore[valid-type]
    permits: list[PermitLayer] = Field(default_factory=list)
    zones: list[ZoneLayer] = Field(default_factory=list)
    priority_layers: list[PriorityLayer] = Field(default_factory=list)
    output: Path
    output_crs: str = "EPSG:4490"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    evidence: bool = Field(True, description="write before/after images per lead and an overview map")
    report: bool = Field(True, description="write the dossier: report/ (web pages and leads.pdf) and leads.xlsx")
    lead_register: Path | None = Field(  # `register` in the file: as a field name it would shadow BaseModel's
        default=None, alias="register", description="the lead register across runs (docs/register.md); unset: "
        "register.gpkg beside the run folders (in the output's parent); null: none")
    allow_partial_coverage: bool = Field(
        False, description="exit 0 although some cells had no usable imagery (they are reported either way)")
    grid: GridConfig = GridConfig()
    detection: DetectionConfig = DetectionConfig()
    limits: Limits = Limits()
    cluster: ClusterConfig = ClusterConfig()

    @field_validator("categories")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("categories are listed more than once")
        return v

    @field_validator("output_crs")
    @classmethod
    def _known_crs(cls, v: str) -> str:
        from pyproj import CRS

        try:
            CRS.from_user_input(v)
        except Exception as exc:  # pyproj raises its own CRSError with a long message
            raise ValueError(f"unknown CRS {v!r} (use e.g. EPSG:4490 or EPSG:4326)") from exc
        return v

    _base: Path | None = PrivateAttr(default=None)

    def resolved(self, base: Path) -> RunConfig:
        """A copy whose relative paths are taken relative to `base` (the configuration's folder)."""
        def fix(p: Path) -> Path:
            return p if p.is_absolute() else (base / p).resolve()

        data = self.model_copy(deep=True)
        data.aoi = [fix(p) for p in data.aoi]
        data.output = fix(data.output)
        if "lead_register" not in self.model_fields_set:
            data.lead_register = data.output.parent / "register.gpkg"
        elif data.lead_register is not None:
            data.lead_register = fix(data.lead_register)
        for layer in [*data.permits, *data.zones, *data.priority_layers]:
            layer.path = fix(layer.path)
        if isinstance(data.source, LocalSource):
            data.source.paths = [p if Path(p).is_absolute() else os.path.normpath(base / p) for p in data.source.paths]
        elif isinstance(data.source, SimulatedSource):
            data.source.folder = fix(data.source.folder)
        if isinstance(data.source, StacSource) and "://" not in data.source.url:  # a static catalog on disk
            data.source.url = str(fix(Path(data.source.url)))
        if hasattr(data.source, "cache"):
            data.source.cache = fix(data.source.cache) if data.source.cache else data.output / "imagery_cache"
        if data.detection.detector.endswith(".json"):  # a model card given by path
            data.detection.detector = str(fix(Path(data.detection.detector)))
        data._base = base
        return data

    #: What the finished cells depend on. Permits, the output CRS and evidence only enter when
    #: the cells are merged, which every run does afresh, so changing them needs no --fresh.
    CELL_FIELDS: ClassVar[set[str]] = {"aoi", "windows", "source", "categories", "zones", "grid", "detection"}
    #: How the model runs, not what it finds: changing them keeps the finished cells.
    HOW_FIELDS: ClassVar[dict] = {"detection": {"precision", "compile"}}

    def fingerprint(self, weights_sha256: str) -> str:
        """A hash of everything the finished cells depend on; a run folder keeps to one fingerprint.

        Paths count relative to the configuration's folder, so a project folder that is moved
        with its configuration keeps its fingerprint and its finished cells. A model counts by
        the hash of its weights (`weights_sha256`, given by the caller that loaded it), not only by its name.
        """
        text = json.dumps(self.model_dump(mode="json", include=self.CELL_FIELDS, exclude=self.HOW_FIELDS),
                          sort_keys=True)
        if self._base is not None:
            text = text.replace(json.dumps(str(self._base) + os.sep)[1:-1], "<config folder>/")
        text += weights_sha256  # retrained weights under the same name change the cells
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        # drop the discriminator pydantic inserts into the path (source.local.paths -> source.paths)
        parts = [str(p) for i, p in enumerate(e["loc"])
                 if not (i > 0 and e["loc"][i - 1] == "source"
                         and p in ("local", "simulated", "stac", "sentinelhub", "procedural"))]
        loc = ".".join(parts)
        lines.append(f"field '{loc}': {e['msg']}")
    return "; ".join(lines)


def parse_config(data: dict, path: Path) -> RunConfig:
    """Validate a configuration mapping, with errors naming the file and field."""
    try:
        return RunConfig.model_validate(data).resolved(path.parent.resolve())
    except ValidationError as err:
        raise ConfigError(path, None, _format(err),
                          "correct the field; every field is described in docs/configuration.md") from None


#: A run configuration is a few kilobytes nested a few levels deep. These bounds are far above any
#: real one and refuse a wrong file, a document nested thousands deep or an alias bomb at once,
#: instead of a crash or a hang.
MAX_CONFIG_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_VALUES = 100_000


def _yaml_shape_problem(text: str) -> str | None:
    """Why a YAML document is too deep or too large once its aliases are expanded, else None.

    Read from the parser's event stream, which neither builds the document nor recurses.
    """
    expanded: dict[str, int] = {}  # anchor -> values it stands for
    open_nodes: list[list] = [[None, 0]]  # [anchor, values so far] of each open collection, the document first
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_nodes) > MAX_DEPTH:
                return f"is nested more than {MAX_DEPTH} levels deep"
            open_nodes.append([event.anchor, 1])
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, size = open_nodes.pop()
        elif isinstance(event, yaml.ScalarEvent):
            anchor, size = event.anchor, 1
        elif isinstance(event, yaml.AliasEvent):
            if any(event.anchor == a for a, _ in open_nodes):
                return f"holds an alias *{event.anchor} inside the value it names"
            anchor, size = None, expanded.get(event.anchor, 1)
        else:
            continue
        if anchor:
            expanded[anchor] = size
        open_nodes[-1][1] += size
        if open_nodes[-1][1] > MAX_VALUES:
            return f"holds more than {MAX_VALUES:,} values once its aliases (*name) are expanded"
    return None


def _read_document(text: str, path: Path) -> object:
    """The YAML or TOML document of a configuration, refused if nested or expanded beyond reason."""
    kind = "TOML" if path.suffix == ".toml" else "YAML"
    try:
        problem = None if kind == "TOML" else _yaml_shape_problem(text)
        if problem is None:
            return tomllib.loads(text) if kind == "TOML" else yaml.safe_load(text)
    except RecursionError:  # tomllib recurses into nested arrays and tables
        problem = "is nested too deeply to read"
    raise ConfigError(path, None, f"the {kind} {problem}",
                      "a run configuration is a few levels deep with a few hundred values (docs/configuration.md): "
                      "check this is the file you meant, and remove the extra brackets or aliases")


def load_config(path: Path) -> RunConfig:
    """Read a YAML (.yaml/.yml) or TOML (.toml) run configuration."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(path, None, "file not found", "check the path, or run `eoleads demo` for an example")
    if path.is_file() and path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(path, None, f"{path.stat().st_size:,} bytes is too large for a run configuration "
                          f"(at most {MAX_CONFIG_BYTES:,})",
                          "give the configuration file (a few kilobytes, docs/configuration.md), not a data file")
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise ConfigError(path, None, f"cannot be read as a UTF-8 text file ({exc.__class__.__name__})",
                          "save the configuration as UTF-8 (QGIS and most editors can), and give a file, "
                          "not a folder") from None
    try:
        data = _read_document(text, path)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, None, f"not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {exc}",
                          "fix the syntax at the position given") from None
    if not isinstance(data, dict):
        raise ConfigError(path, None, "the file does not hold a mapping of fields",
                          "start from the example in docs/configuration.md")
    return parse_config(data, path)
