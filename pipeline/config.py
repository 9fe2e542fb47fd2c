"""The run configuration: one YAML or TOML file, validated before any work starts.

Every field is documented in docs/configuration.md. Relative paths are resolved against the
folder of the configuration file, so a run folder can be moved with its configuration.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from detectors import DEFAULT_MODEL
from detectors.categories import CATEGORY_IDS, PermitType, Zone
from pipeline.detection.tiling import TILING, Tiling
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

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


Source = Annotated[LocalSource | SimulatedSource, Field(discriminator="type")]


class PermitColumns(_Strict):
    """Which column of the permit file holds each normalised field."""

    permit_id: str = "permit_id"
    permit_type: str | None = "permit_type"
    holder: str | None = "holder"
    valid_from: str = "valid_from"
    valid_to: str = "valid_to"
    reclaim_by: str | None = "reclaim_by"


class PermitLayer(_Strict):
    """One permit file (approvals with boundaries and dates) and how to read it."""

    path: Path
    layer: str | None = None
    columns: PermitColumns = PermitColumns()
    type_values: dict[str, PermitType] = Field(
        default_factory=dict, description="value in the file -> normalised permit type")
    default_type: PermitType | None = Field(
        default=None, description="type of every permit, for a layer of one type without a type column")


class ZoneLayer(_Strict):
    """A context-zone file deciding where categories apply."""

    path: Path
    layer: str | None = None
    zone: Zone | None = Field(default=None, description="the zone of every feature in the layer")
    column: str | None = Field(default=None, description="column naming each feature's zone")
    values: dict[str, Zone] = Field(default_factory=dict, description="value in the file -> zone")

    @model_validator(mode="after")
    def _one_way(self) -> ZoneLayer:
        if (self.zone is None) == (self.column is None):
            raise ValueError("give either 'zone' (one zone for the whole layer) or 'column'")
        return self


class GridConfig(_Strict):
    """Processing cells: square, aligned to the UTM grid of their zone."""

    cell_size_px: int = Field(512, ge=64, le=4096)
    resolution_m: float = Field(10.0, gt=0)
    margin_px: int = Field(32, ge=0, le=512, description="halo read around each cell")


class DetectionConfig(_Strict):
    """Which detector runs and how its input is tiled."""

    detector: str = Field(DEFAULT_MODEL, description="'baseline', a model in weights/ (by name), "
                          "or a path to a model card (.json)")
    tile_size: int = Field(TILING.tile_size, ge=32, le=2048)
    tile_overlap: int = Field(TILING.overlap, ge=0)
    batch_size: int = Field(TILING.batch_size, ge=1)
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


class RunConfig(_Strict):
    """Everything one run needs; `eoleads run CONFIG` reads it."""

    name: str = Field(min_length=1)
    aoi: list[Path] = Field(min_length=1)
    windows: Windows
    source: Source
    categories: list[CategoryId] = Field(default_factory=lambda: list(CATEGORY_IDS), min_length=1)  # type: ignore[valid-type]
    permits: list[PermitLayer] = Field(default_factory=list)
    zones: list[ZoneLayer] = Field(default_factory=list)
    output: Path
    output_crs: str = "EPSG:4490"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    evidence: bool = Field(True, description="write before/after images per lead and an overview map")
    grid: GridConfig = GridConfig()
    detection: DetectionConfig = DetectionConfig()

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
        for layer in [*data.permits, *data.zones]:
            layer.path = fix(layer.path)
        if isinstance(data.source, LocalSource):
            data.source.paths = [p if Path(p).is_absolute() else os.path.normpath(base / p) for p in data.source.paths]
        else:
            data.source.folder = fix(data.source.folder)
        if data.detection.detector.endswith(".json"):  # a model card given by path
            data.detection.detector = str(fix(Path(data.detection.detector)))
        data._base = base
        return data

    #: What the finished cells depend on. Permits, the output CRS and evidence only enter when
    #: the cells are merged, which every run does afresh, so changing them needs no --fresh.
    CELL_FIELDS: ClassVar[set[str]] = {"aoi", "windows", "source", "categories", "zones", "grid", "detection"}

    def fingerprint(self, weights_sha256: str) -> str:
        """A hash of everything the finished cells depend on; a run folder keeps to one fingerprint.

        Paths count relative to the configuration's folder, so a project folder that is moved
        with its configuration keeps its fingerprint and its finished cells. A model counts by
        the hash of its weights (`weights_sha256`, given by the caller that loaded it), not only by its name.
        """
        text = json.dumps(self.model_dump(mode="json", include=self.CELL_FIELDS), sort_keys=True)
        if self._base is not None:
            text = text.replace(json.dumps(str(self._base) + os.sep)[1:-1], "<config folder>/")
        text += weights_sha256  # retrained weights under the same name change the cells
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        # drop the discriminator pydantic inserts into the path (source.local.paths -> source.paths)
        parts = [str(p) for i, p in enumerate(e["loc"])
                 if not (i > 0 and e["loc"][i - 1] == "source" and p in ("local", "simulated"))]
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


def load_config(path: Path) -> RunConfig:
    """Read a YAML (.yaml/.yml) or TOML (.toml) run configuration."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(path, None, "file not found", "check the path, or run `eoleads demo` for an example")
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise ConfigError(path, None, f"cannot be read as a UTF-8 text file ({exc.__class__.__name__})",
                          "save the configuration as UTF-8 (QGIS and most editors can), and give a file, "
                          "not a folder") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, None, f"not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {exc}",
                          "fix the syntax at the position given") from None
    if not isinstance(data, dict):
        raise ConfigError(path, None, "the file does not hold a mapping of fields",
                          "start from the example in docs/configuration.md")
    return parse_config(data, path)
