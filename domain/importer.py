"""Import council street-light inventories (CSV, GeoJSON) into :class:`InventoryArrays`.

Theory of operation
-------------------
1. A :class:`ColumnMapping` says which column holds what; it is checked once, when built.
2. The file is read into one list of strings per mapped column. Only a file that cannot be read
   at all (missing, undecodable, not CSV/GeoJSON, lacking a mapped column) raises
   :class:`~domain.errors.InventoryError`.
3. Every row is judged; a row with any problem becomes one :class:`BadRow` listing all its
   problems joined by ``"; "``. Good rows are always kept.
4. Coordinates are parsed and reprojected to WGS84 a whole column at a time (one pyproj call,
   ``always_xy=True``), never row by row, so a 50,000-lamp file imports in a fraction of a second.
   Positions a projection cannot hold (pyproj would silently wrap or clamp them) are caught by
   projecting the result back and comparing.
5. Without street names, streets are derived from geometry: lamps are chained into runs
   (:func:`domain.neighbours.street_runs`, named ``run-<n>``) and ordered along them. Named
   streets are ordered along their principal axis (:func:`domain.neighbours.order_along_axis`).

Row numbers in reports are what a person opening the file sees. CSV: the spreadsheet row, so the
header is row 1 and the first data row is row 2 (a quoted field spanning lines is still one row;
blank lines keep their number but are otherwise skipped). GeoJSON: the feature's 1-based position
in ``features``. Generated lamp ids use the same number: ``<id_prefix>-<row>``.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import yaml
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from domain.errors import InventoryError, ValidationIssue
from domain.inventory import CLASS_ORDER, InventoryArrays
from domain.neighbours import (
    DEFAULT_RUN_LINK_M,
    DEFAULT_RUN_MAX_TURN_DEG,
    local_xy_m,
    order_along_axis,
    street_runs,
)
from domain.records import DimmingCurve, LightingClass
from domain.wattage import MAX_POLE_POWER_W, WattageStatus, parse_wattage

FloatArray = npt.NDArray[np.float64]

#: Version of the mapping-file format; a file may state it as ``schema_version``.
MAPPING_SCHEMA_VERSION = 1

_WGS84 = CRS.from_epsg(4326)

_REQUIRED_STR_KEYS = (
    "council_id",
    "id_prefix",
    "x_column",
    "y_column",
    "source_crs",
    "encoding",
    "delimiter",
)
_OPTIONAL_COLUMN_KEYS = (
    "id_column",
    "wattage_column",
    "lamp_type_column",
    "class_column",
    "street_column",
    "group_column",
)
_FLOAT_KEYS = ("default_power_w", "standby_power_w", "street_link_m", "street_max_turn_deg")
_BOOL_KEYS = ("missing_wattage_is_error",)


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """How one council's inventory file maps onto lamp records.

    Column keys name columns (CSV) or feature properties (GeoJSON); ``None`` means the file has
    no such column. ``x_column``/``y_column`` hold longitude/latitude for a geographic
    ``source_crs`` or easting/northing for a projected one (GeoJSON takes positions from the
    geometry instead). Without ``id_column`` ids are ``<id_prefix>-<row>``, the prefix defaulting
    to ``council_id`` (or ``lamp``). ``default_power_w`` stands in for a missing wattage unless
    ``missing_wattage_is_error``. ``street_link_m`` and ``street_max_turn_deg`` tune street runs
    derived from geometry. ``encoding`` defaults to ``utf-8-sig``, which reads plain UTF-8 and
    also drops the byte-order mark some council exports (Champaign) begin with.
    """

    council_id: str = ""
    id_column: str | None = None
    id_prefix: str = ""
    x_column: str = "longitude"
    y_column: str = "latitude"
    source_crs: str = "EPSG:4326"
    wattage_column: str | None = None
    # A placeholder so that an inventory without wattages (Bristol) still simulates; set it to
    # the council's typical lantern when known.
    default_power_w: float = 100.0
    missing_wattage_is_error: bool = False
    lamp_type_column: str | None = None
    class_column: str | None = None
    default_class: LightingClass = LightingClass.P4
    street_column: str | None = None
    group_column: str | None = None
    standby_power_w: float = 0.5
    dimming_curve: DimmingCurve = DimmingCurve.DALI
    encoding: str = "utf-8-sig"
    delimiter: str = ","
    street_link_m: float = DEFAULT_RUN_LINK_M
    street_max_turn_deg: float = DEFAULT_RUN_MAX_TURN_DEG

    def __post_init__(self) -> None:
        issues = self._type_issues()
        if not issues:
            issues = self._value_issues()
        if issues:
            lines = "\n".join(f"  - {issue}" for issue in issues)
            raise InventoryError(f"column mapping is invalid ({len(issues)} problem(s)):\n{lines}")

    def _type_issues(self) -> list[ValidationIssue]:
        issues: list[ValidationIssue] = []
        for key in _REQUIRED_STR_KEYS:
            if not isinstance(getattr(self, key), str):
                issues.append(ValidationIssue(key, f"must be a string, got {getattr(self, key)!r}"))
        for key in _OPTIONAL_COLUMN_KEYS:
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                issues.append(ValidationIssue(key, f"must be a column name or null, got {value!r}"))
        for key in _FLOAT_KEYS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                issues.append(ValidationIssue(key, f"must be a number, got {value!r}"))
            else:
                object.__setattr__(self, key, float(value))
        for key in _BOOL_KEYS:
            if not isinstance(getattr(self, key), bool):
                issues.append(
                    ValidationIssue(key, f"must be true or false, got {getattr(self, key)!r}")
                )
        # Enums arrive as plain strings from mapping files; accept any letter case.
        for key, enum_type in (("default_class", LightingClass), ("dimming_curve", DimmingCurve)):
            value = getattr(self, key)
            if isinstance(value, enum_type):
                continue
            allowed = ", ".join(member.value for member in enum_type)
            try:
                converted = _enum_by_value(enum_type, value)
            except ValueError:
                issues.append(ValidationIssue(key, f"must be one of {allowed}; got {value!r}"))
            else:
                object.__setattr__(self, key, converted)
        return issues

    def _value_issues(self) -> list[ValidationIssue]:
        issues: list[ValidationIssue] = []
        for key in ("x_column", "y_column", *_OPTIONAL_COLUMN_KEYS):
            value = getattr(self, key)
            if value is not None and not value.strip():
                issues.append(
                    ValidationIssue(key, "must name a column; leave it out if there is none")
                )
        if self.x_column == self.y_column:
            issues.append(
                ValidationIssue("y_column", f"must differ from x_column ({self.x_column!r})")
            )
        if not 0.0 < self.default_power_w <= MAX_POLE_POWER_W:
            issues.append(
                ValidationIssue(
                    "default_power_w",
                    f"must be within (0, {MAX_POLE_POWER_W:g}] W, got {self.default_power_w!r}",
                )
            )
        if not (math.isfinite(self.standby_power_w) and self.standby_power_w >= 0.0):
            issues.append(
                ValidationIssue("standby_power_w", f"must be >= 0 W, got {self.standby_power_w!r}")
            )
        if not (math.isfinite(self.street_link_m) and self.street_link_m > 0.0):
            issues.append(
                ValidationIssue("street_link_m", f"must be > 0 m, got {self.street_link_m!r}")
            )
        if not 0.0 < self.street_max_turn_deg <= 180.0:
            issues.append(
                ValidationIssue(
                    "street_max_turn_deg",
                    f"must be within (0, 180] degrees, got {self.street_max_turn_deg!r}",
                )
            )
        if len(self.delimiter) != 1 or self.delimiter in '\r\n"':
            issues.append(
                ValidationIssue(
                    "delimiter", f"must be one character such as ',' or ';', got {self.delimiter!r}"
                )
            )
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            issues.append(
                ValidationIssue(
                    "encoding",
                    f"{self.encoding!r} is not a known text encoding; try 'utf-8-sig' or 'cp1252'",
                )
            )
        try:
            _crs(self.source_crs)
        except CRSError:
            issues.append(
                ValidationIssue(
                    "source_crs",
                    f"{self.source_crs!r} is not a CRS pyproj knows; "
                    "use e.g. 'EPSG:4326' or 'EPSG:3857'",
                )
            )
        return issues

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "column mapping") -> ColumnMapping:
        """Build from a plain mapping (a parsed YAML/JSON document); unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"schema_version"})
        if unknown:
            raise InventoryError(
                f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"known keys are {', '.join(sorted(known))}"
            )
        version = data.get("schema_version", MAPPING_SCHEMA_VERSION)
        if version != MAPPING_SCHEMA_VERSION:
            raise InventoryError(
                f"{source}: schema_version {version!r} is not supported; this version reads "
                f"schema_version {MAPPING_SCHEMA_VERSION}"
            )
        options = {key: value for key, value in data.items() if key != "schema_version"}
        try:
            return cls(**options)
        except InventoryError as err:
            raise InventoryError(f"{source}: {err}") from err

    @classmethod
    def from_file(cls, path: str | Path) -> ColumnMapping:
        """Load a YAML (or JSON, by a ``.json`` suffix) mapping file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as err:
            raise InventoryError(f"cannot read column mapping file {path}: {err.strerror}") from err
        try:
            data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as err:
            raise InventoryError(
                f"column mapping file {path} is not valid YAML/JSON: {err}"
            ) from err
        if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
            raise InventoryError(
                f"column mapping file {path} must hold one mapping of key: value pairs, "
                f"got {type(data).__name__}"
            )
        return cls.from_dict(data, source=str(path))

    @property
    def effective_id_prefix(self) -> str:
        return self.id_prefix or self.council_id or "lamp"


def _enum_by_value(enum_type: type[LightingClass] | type[DimmingCurve], value: object) -> Any:
    if not isinstance(value, str):
        raise ValueError(value)
    for member in enum_type:
        if member.value.lower() == value.strip().lower():
            return member
    raise ValueError(value)


@functools.lru_cache(maxsize=64)
def _crs(source_crs: str) -> CRS:
    return CRS.from_user_input(source_crs)


@functools.lru_cache(maxsize=64)
def _to_wgs84(source_crs: str) -> Transformer | None:
    """A transformer to WGS84 lon/lat, or None when the source already is WGS84."""
    crs = _crs(source_crs)
    if crs.equals(_WGS84, ignore_axis_order=True):
        return None
    return Transformer.from_crs(crs, _WGS84, always_xy=True)


class BadRow(NamedTuple):
    """A row that was not imported. ``row_number`` follows the module's numbering rules."""

    row_number: int
    reason: str


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did. ``rows_imported + len(bad_rows) == rows_read`` always holds.

    ``wattage_missing`` counts data rows with no wattage (blank or a placeholder such as
    ``Not Specified``), whether ``default_power_w`` was used or the row was refused.
    ``duplicate_ids`` lists each id that occurred on more than one row; the first row keeps it
    and the later ones are bad rows. ``row_numbering`` says how row numbers count.
    """

    source: str
    rows_read: int
    rows_imported: int
    bad_rows: tuple[BadRow, ...]
    wattage_missing: int
    duplicate_ids: tuple[str, ...]
    streets_derived: bool
    row_numbering: str

    def issues(self) -> list[ValidationIssue]:
        """Bad rows in the project's common issue form (``where`` is ``row 17``)."""
        unit = "feature" if self.row_numbering.startswith("feature") else "row"
        return [ValidationIssue(f"{unit} {bad.row_number}", bad.reason) for bad in self.bad_rows]


_CSV_NUMBERING = "spreadsheet row: the header is row 1, the first data row is row 2"
_GEOJSON_NUMBERING = "feature position in 'features', the first feature is 1"


@dataclass(slots=True)
class _Table:
    """A file read into per-row strings and float coordinates, before rows are judged."""

    row_numbers: list[int]
    columns: dict[str, list[str]]
    x: FloatArray
    y: FloatArray
    problems: dict[int, list[str]] = field(default_factory=dict)
    # Rows with nothing to judge (a GeoJSON entry that is not a Feature): one reason is enough,
    # and later checks would only add noise such as "empty lamp id".
    unreadable: set[int] = field(default_factory=set)

    def add_problem(self, position: int, reason: str) -> None:
        if position not in self.unreadable:
            self.problems.setdefault(position, []).append(reason)


def _mapped_property_columns(mapping: ColumnMapping) -> dict[str, str]:
    """Mapping key -> column for every mapped non-coordinate column."""
    return {
        key: getattr(mapping, key)
        for key in _OPTIONAL_COLUMN_KEYS
        if getattr(mapping, key) is not None
    }


def _missing_columns_error(
    path: Path, missing: dict[str, str], available: Sequence[str], plural: str
) -> InventoryError:
    named = ", ".join(f"{column!r} (mapping key {key})" for key, column in missing.items())
    listed = ", ".join(repr(name) for name in available) or "none"
    return InventoryError(
        f"{path} lacks the mapped {plural} {named}; available {plural}: {listed}. "
        "Fix the column mapping or the file."
    )


def _axis_labels(mapping: ColumnMapping) -> tuple[str, str]:
    return ("longitude", "latitude") if _crs(mapping.source_crs).is_geographic else ("x", "y")


def _parse_coordinates(values: list[str], column: str, label: str, table: _Table) -> FloatArray:
    """Parse a column of coordinate strings; unusable ones become NaN plus a row problem."""
    reported: set[int] = set()
    try:
        # Fast path: numpy parses the whole column at C speed when every value is a number.
        parsed = np.array(values, dtype=np.float64)
    except ValueError:
        parsed = np.full(len(values), np.nan)
        for position, value in enumerate(values):
            text = value.strip()
            try:
                parsed[position] = float(text)
            except ValueError:
                reported.add(position)
                if text:
                    table.add_problem(
                        position, f"{label} {text!r} in column {column!r} is not a number"
                    )
                else:
                    table.add_problem(position, f"missing {label} in column {column!r}")
    # "nan" and "inf" parse as floats but are no more a position than a blank.
    for position in np.flatnonzero(~np.isfinite(parsed)).tolist():
        if position not in reported:
            text = values[position].strip()
            table.add_problem(
                position, f"{label} {text!r} in column {column!r} is not a finite number"
            )
    return parsed


def _read_csv(path: Path, mapping: ColumnMapping) -> _Table:
    try:
        text = path.read_text(encoding=mapping.encoding, errors="strict")
        # The csv module accepts NUL characters, but real CSV never holds them: they mean a
        # binary file (a spreadsheet workbook) or UTF-16 text read with the wrong encoding.
        if "\x00" in text:
            raise InventoryError(
                f"{path} contains NUL characters, so it is not CSV text: it may be a binary file "
                f"or UTF-16; save it as UTF-8 CSV or set 'encoding' in the column mapping"
            )
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=mapping.delimiter)
        header = next(reader, None)
        records = list(reader)
    except FileNotFoundError as err:
        raise InventoryError(f"inventory file {path} does not exist") from err
    except IsADirectoryError as err:
        raise InventoryError(f"inventory path {path} is a directory, not a file") from err
    except UnicodeDecodeError as err:
        raise InventoryError(
            f"{path} is not {mapping.encoding} text (byte {err.start}: {err.reason}); "
            "set 'encoding' in the column mapping, e.g. 'cp1252'"
        ) from err
    except csv.Error as err:
        raise InventoryError(f"{path} is not a readable CSV file ({err})") from err
    if header is None:
        raise InventoryError(f"{path} is empty; expected a header row naming the columns")

    names = [name.strip() for name in header]
    wanted = {"x_column": mapping.x_column, "y_column": mapping.y_column}
    wanted.update(_mapped_property_columns(mapping))
    missing = {key: column for key, column in wanted.items() if column not in names}
    if missing:
        raise _missing_columns_error(path, missing, names, "columns")
    position_of = {name: names.index(name) for name in set(wanted.values())}

    width = len(names)
    row_numbers: list[int] = []
    rows: list[list[str]] = []
    structural: dict[int, list[str]] = {}
    for offset, record in enumerate(records):
        if not record:
            continue  # a blank line: keeps its number, is not a data row
        # Trailing empty cells are a common export quirk; text beyond the header is not.
        if len(record) < width or any(cell.strip() for cell in record[width:]):
            structural[len(rows)] = [f"row has {len(record)} fields but the header has {width}"]
            record = (record + [""] * width)[:width]
        row_numbers.append(offset + 2)
        rows.append(record)

    columns = {name: [row[index] for row in rows] for name, index in position_of.items()}
    table = _Table(row_numbers, columns, np.empty(0), np.empty(0), structural)
    x_label, y_label = _axis_labels(mapping)
    table.x = _parse_coordinates(columns[mapping.x_column], mapping.x_column, x_label, table)
    table.y = _parse_coordinates(columns[mapping.y_column], mapping.y_column, y_label, table)
    return table


def _property_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a numeric id 17.0 should read as "17"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _read_geojson(path: Path, mapping: ColumnMapping) -> _Table:
    try:
        with path.open(encoding=mapping.encoding) as handle:
            document = json.load(handle)
    except FileNotFoundError as err:
        raise InventoryError(f"inventory file {path} does not exist") from err
    except IsADirectoryError as err:
        raise InventoryError(f"inventory path {path} is a directory, not a file") from err
    except UnicodeDecodeError as err:
        raise InventoryError(
            f"{path} is not {mapping.encoding} text (byte {err.start}: {err.reason}); "
            "set 'encoding' in the column mapping"
        ) from err
    except json.JSONDecodeError as err:
        raise InventoryError(
            f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from err
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        found = document.get("type") if isinstance(document, dict) else type(document).__name__
        raise InventoryError(f"{path} must be a GeoJSON FeatureCollection, got {found!r}")
    features = document.get("features")
    if not isinstance(features, list):
        raise InventoryError(f"{path}: 'features' must be a list of GeoJSON Feature objects")

    wanted = _mapped_property_columns(mapping)
    seen: dict[str, None] = {}
    for feature in features:
        if isinstance(feature, dict) and isinstance(feature.get("properties"), dict):
            seen.update(dict.fromkeys(feature["properties"]))
    missing = {key: column for key, column in wanted.items() if column not in seen}
    if missing:
        raise _missing_columns_error(path, missing, list(seen), "properties")

    n = len(features)
    columns: dict[str, list[str]] = {column: [""] * n for column in set(wanted.values())}
    x = np.full(n, np.nan)
    y = np.full(n, np.nan)
    table = _Table(list(range(1, n + 1)), columns, x, y)
    for position, feature in enumerate(features):
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            table.add_problem(position, "not a GeoJSON Feature object")
            table.unreadable.add(position)
            continue
        properties = feature.get("properties") or {}
        if isinstance(properties, dict):
            for column in columns:
                columns[column][position] = _property_text(properties.get(column))
        geometry = feature.get("geometry")
        if not isinstance(geometry, dict):
            table.add_problem(position, "feature has no geometry")
            continue
        if geometry.get("type") != "Point":
            table.add_problem(
                position, f"geometry type {geometry.get('type')!r} is not supported; expected Point"
            )
            continue
        coordinates = geometry.get("coordinates")
        if (
            not isinstance(coordinates, list)
            or len(coordinates) < 2
            or not all(
                isinstance(c, int | float) and not isinstance(c, bool) for c in coordinates[:2]
            )
        ):
            table.add_problem(
                position, f"Point coordinates must be [x, y] numbers, got {coordinates!r}"
            )
            continue
        x[position], y[position] = float(coordinates[0]), float(coordinates[1])
        if not (math.isfinite(x[position]) and math.isfinite(y[position])):
            table.add_problem(position, f"Point coordinates must be finite, got {coordinates!r}")
    return table


def _check_positions(table: _Table, mapping: ColumnMapping) -> tuple[FloatArray, FloatArray]:
    """Reproject to WGS84 and record rows whose position is unusable."""
    finite = np.isfinite(table.x) & np.isfinite(table.y)
    lon = np.full(len(table.x), np.nan)
    lat = np.full(len(table.x), np.nan)
    transformer = _to_wgs84(mapping.source_crs)
    if transformer is None:
        lon[finite], lat[finite] = table.x[finite], table.y[finite]
    elif finite.any():
        lon[finite], lat[finite] = transformer.transform(table.x[finite], table.y[finite])

    placeholder = finite & (((table.x == 0.0) & (table.y == 0.0)) | ((lon == 0.0) & (lat == 0.0)))
    unprojected = finite & ~placeholder & ~(np.isfinite(lon) & np.isfinite(lat))
    if transformer is not None:
        # Projections wrap or clamp positions outside their domain (Web Mercator folds x beyond
        # the antimeridian back onto the globe), which would hide garbage behind valid lon/lat.
        # Projecting back and comparing catches it.
        usable = np.flatnonzero(finite & ~placeholder & ~unprojected)
        back_x, back_y = transformer.transform(lon[usable], lat[usable], direction="INVERSE")
        drifted = ~(
            np.isclose(back_x, table.x[usable], rtol=1e-7, atol=1e-6)
            & np.isclose(back_y, table.y[usable], rtol=1e-7, atol=1e-6)
        )
        unprojected[usable[drifted]] = True
    bad_lon = finite & ~placeholder & ~unprojected & ((lon < -180.0) | (lon > 180.0))
    bad_lat = finite & ~placeholder & ~unprojected & ((lat < -90.0) | (lat > 90.0))
    hint = f"check x_column/y_column are not swapped and source_crs ({mapping.source_crs}) is right"
    for position in np.flatnonzero(placeholder).tolist():
        table.add_problem(position, "position is (0, 0), a placeholder for an unknown location")
    for position in np.flatnonzero(unprojected).tolist():
        table.add_problem(
            position,
            f"({table.x[position]:g}, {table.y[position]:g}) is outside what "
            f"{mapping.source_crs} can represent, so it cannot be reprojected to WGS84; "
            "check the values and source_crs",
        )
    for position in np.flatnonzero(bad_lon).tolist():
        table.add_problem(position, f"longitude {lon[position]:.6g} is outside [-180, 180]; {hint}")
    for position in np.flatnonzero(bad_lat).tolist():
        table.add_problem(position, f"latitude {lat[position]:.6g} is outside [-90, 90]; {hint}")
    return lon, lat


def _lamp_ids(table: _Table, mapping: ColumnMapping) -> tuple[list[str], list[str]]:
    """Each row's lamp id, and the ids seen on more than one row (first occurrence keeps it)."""
    if mapping.id_column is None:
        prefix = mapping.effective_id_prefix
        return [f"{prefix}-{number}" for number in table.row_numbers], []
    ids = [value.strip() for value in table.columns[mapping.id_column]]
    first_row: dict[str, int] = {}
    duplicates: dict[str, None] = {}
    for position, lamp_id in enumerate(ids):
        if not lamp_id:
            table.add_problem(position, f"empty lamp id in column {mapping.id_column!r}")
            continue
        first = first_row.setdefault(lamp_id, table.row_numbers[position])
        if first != table.row_numbers[position]:
            duplicates[lamp_id] = None
            table.add_problem(position, f"duplicate lamp id {lamp_id!r} (first on row {first})")
    return ids, list(duplicates)


def _power_and_type(table: _Table, mapping: ColumnMapping) -> tuple[FloatArray, list[str], int]:
    """Rated power per row, lamp type per row, and how many rows had no wattage."""
    n = len(table.row_numbers)
    types = (
        [value.strip() for value in table.columns[mapping.lamp_type_column]]
        if mapping.lamp_type_column is not None
        else [""] * n
    )
    power_w = np.full(n, mapping.default_power_w)
    if mapping.wattage_column is None:
        return power_w, types, 0
    column = mapping.wattage_column
    missing = 0
    # Councils repeat a handful of values thousands of times; parse each distinct one once.
    parses = {text: parse_wattage(text) for text in set(table.columns[column])}
    for position, text in enumerate(table.columns[column]):
        parsed = parses[text]
        if parsed.status is WattageStatus.OK and parsed.power_w is not None:
            power_w[position] = parsed.power_w
            if not types[position]:
                types[position] = parsed.lamp_type_hint
        elif parsed.status is WattageStatus.MISSING:
            if position in table.unreadable:
                continue  # not a lamp record at all, so not a lamp without a wattage
            missing += 1
            if mapping.missing_wattage_is_error:
                table.add_problem(
                    position, f"no wattage in column {column!r} (missing_wattage_is_error is set)"
                )
        else:
            table.add_problem(position, f"wattage in column {column!r}: {parsed.reason}")
    return power_w, types, missing


def _class_index(table: _Table, mapping: ColumnMapping) -> npt.NDArray[np.int32]:
    default = CLASS_ORDER.index(mapping.default_class)
    n = len(table.row_numbers)
    if mapping.class_column is None:
        return np.full(n, default, dtype=np.int32)
    by_name = {cls.value: index for index, cls in enumerate(CLASS_ORDER)}
    result = np.full(n, default, dtype=np.int32)
    for position, value in enumerate(table.columns[mapping.class_column]):
        text = value.strip().upper()
        if not text:
            continue
        if text in by_name:
            result[position] = by_name[text]
        else:
            table.add_problem(
                position,
                f"lighting class {value.strip()!r} in column {mapping.class_column!r} is not an "
                "EN 13201 class (M1-M6, C0-C5, P1-P6)",
            )
    return result


def _streets(
    lon: FloatArray, lat: FloatArray, names: list[str] | None, mapping: ColumnMapping
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], tuple[str, ...]]:
    """Street index, order on street and street names for the kept lamps."""
    n = len(lon)
    if n == 0:
        return np.empty(0, np.int32), np.empty(0, np.int32), ()
    x_m, y_m = local_xy_m(lon, lat)
    street_index = np.zeros(n, dtype=np.int32)
    order = np.zeros(n, dtype=np.int32)
    street_names: list[str] = []
    unnamed = (
        np.arange(n) if names is None else np.flatnonzero(np.array([not name for name in names]))
    )
    if names is not None:
        named = np.flatnonzero(np.array([bool(name) for name in names]))
        if len(named):
            unique, inverse = np.unique(np.array([names[i] for i in named]), return_inverse=True)
            street_names.extend(str(name) for name in unique)
            street_index[named] = inverse
            order[named] = order_along_axis(x_m[named], y_m[named], inverse)
    if len(unnamed):
        runs, run_order = street_runs(
            x_m[unnamed],
            y_m[unnamed],
            link_m=mapping.street_link_m,
            max_turn_deg=mapping.street_max_turn_deg,
        )
        offset = len(street_names)
        street_names.extend(f"run-{k}" for k in range(int(runs.max()) + 1))
        street_index[unnamed] = runs + offset
        order[unnamed] = run_order
    return street_index, order, tuple(street_names)


def _build(
    table: _Table, mapping: ColumnMapping, path: Path, numbering: str
) -> tuple[InventoryArrays, ImportReport]:
    n = len(table.row_numbers)
    lon, lat = _check_positions(table, mapping)
    ids, duplicates = _lamp_ids(table, mapping)
    power_w, lamp_types, wattage_missing = _power_and_type(table, mapping)
    class_index = _class_index(table, mapping)

    keep = np.ones(n, dtype=np.bool_)
    if table.problems:
        keep[list(table.problems)] = False
    kept = np.flatnonzero(keep)
    kept_list = kept.tolist()

    def column(key: str | None) -> list[str] | None:
        if key is None:
            return None
        values = table.columns[key]
        return [values[i].strip() for i in kept_list]

    street_names_in = column(mapping.street_column)
    street_index, order, street_names = _streets(lon[kept], lat[kept], street_names_in, mapping)
    groups = column(mapping.group_column)
    inventory = InventoryArrays(
        lamp_id=np.array([ids[i] for i in kept_list], dtype=np.str_),
        council_id=mapping.council_id,
        lon_deg=lon[kept],
        lat_deg=lat[kept],
        rated_power_w=power_w[kept],
        standby_power_w=np.full(len(kept), mapping.standby_power_w),
        class_index=class_index[kept],
        street_index=street_index,
        order_on_street=order,
        street_names=street_names,
        driver_index=np.zeros(len(kept), dtype=np.int32),
        driver_curves=("default",),
        dali=np.full(len(kept), mapping.dimming_curve is DimmingCurve.DALI),
        group=np.array(groups if groups is not None else [""] * len(kept), dtype=np.str_),
        lamp_type=np.array([lamp_types[i] for i in kept_list], dtype=np.str_),
    )
    bad_rows = tuple(
        BadRow(table.row_numbers[position], "; ".join(reasons))
        for position, reasons in sorted(table.problems.items())
    )
    report = ImportReport(
        source=str(path),
        rows_read=n,
        rows_imported=len(kept),
        bad_rows=bad_rows,
        wattage_missing=wattage_missing,
        duplicate_ids=tuple(duplicates),
        streets_derived=street_names_in is None or not all(street_names_in),
        row_numbering=numbering,
    )
    return inventory, report


def import_csv(path: str | Path, mapping: ColumnMapping) -> tuple[InventoryArrays, ImportReport]:
    """Import a CSV inventory; bad rows are reported, not raised (see the module docstring)."""
    path = Path(path)
    return _build(_read_csv(path, mapping), mapping, path, _CSV_NUMBERING)


def import_geojson(
    path: str | Path, mapping: ColumnMapping
) -> tuple[InventoryArrays, ImportReport]:
    """Import a GeoJSON FeatureCollection of Point features; properties act as columns."""
    path = Path(path)
    return _build(_read_geojson(path, mapping), mapping, path, _GEOJSON_NUMBERING)


def import_inventory(
    path: str | Path, mapping: ColumnMapping
) -> tuple[InventoryArrays, ImportReport]:
    """Import by file suffix: ``.geojson``/``.json`` as GeoJSON, anything else as CSV."""
    path = Path(path)
    if path.suffix.lower() in (".geojson", ".json"):
        return import_geojson(path, mapping)
    return import_csv(path, mapping)
