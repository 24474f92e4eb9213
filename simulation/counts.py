"""Hourly pedestrian and vehicle counts from open data, on one UTC hourly grid.

Theory of operation
-------------------
Every loader reads its file into one flat list of *observations* (site, local date, local hour,
count, spreadsheet row), judging each cell as it goes, and hands them to one assembler that puts
them on a contiguous UTC hourly grid. The grid runs from the first to the last hour any site has;
``counts[site, hour]`` is NaN wherever there is no usable count, and never silently 0.

What the loaders report (:class:`CountReport`) instead of raising:

* *bad values*: a cell that is not a whole number >= 0, a date or hour that cannot be read, a
  row with too few fields, a count at a local hour that does not exist. The count becomes NaN
  (a row with an unreadable date or hour is dropped, since it cannot be placed); every other row
  is kept. Only a file that cannot be read at all raises :class:`CountFileError`.
* *gaps*: runs of hours for which a site has no row, or a row holding the file's documented
  "missing" marker (Melbourne's ``-1`` and ``undefined``). Bad values are NaN too but are listed
  as bad values, not gaps.
* *duplicates*: two or more rows for one site and UTC hour. Identical values keep one row
  (I-94 repeats an hour once per weather description); differing values make the hour NaN.

Local time to UTC (all three sources record local wall-clock hours)
-------------------------------------------------------------------
Conversion goes through :mod:`zoneinfo`, once per distinct local date, not once per row.

* Spring forward: the local hour that does not exist (01:00 in London, 02:00 in Chicago) has no
  UTC hour. Its row is dropped; a nonzero count there is reported as a bad value. The UTC grid has
  no hole: the hours either side are consecutive UTC hours.
* Fall back: one local hour occurs twice but the files hold one row for it. ``ambiguous="split"``
  spreads the count evenly over both UTC hours; ``"first"`` assigns it to the first occurrence
  (summer time) and leaves the second a gap. Leeds defaults to ``split`` because its repeated
  01:00 reads about twice its neighbours in most years (the cameras summed both hours), I-94 to
  ``first`` because its 01:00 reads like one hour.

Row numbers are what a person opening the file sees (as in :mod:`domain.importer`): the header is
row 1 and the first data row is row 2; a blank line keeps its number but is not a data row.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import operator
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from domain.errors import StreetlightError, ValidationIssue

F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]

Kind = Literal["footfall", "traffic"]
AmbiguousHour = Literal["split", "first"]

NS_PER_S = 1_000_000_000
NS_PER_H = 3600 * NS_PER_S
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
ROW_NUMBERING = "spreadsheet row: the header is row 1, the first data row is row 2"

#: Leeds ``LocationName`` -> camera name in ``leeds_footfall_camera_locations.csv`` (by hand,
#: as the data README asks: the two files spell the sites differently).
LEEDS_CAMERA_NAMES: dict[str, str] = {
    "Briggate": "Briggate",
    "BriggateAtMcDs": "Briggate at McDonalds",
    "Headrow": "Headrow",
    "DortmundSq": "Dortmund Square",
    "AlbionStNorth": "Albion Street North",
    "AlbionStSouth": "Albion Street South",
    "CommercialStLush": "Commercial Street at Lush",
    "CommercialStBarratts": "Commercial Street at Barratts",
}

#: The README says dd/mm/yyyy, but about a fifth of the rows (Nov 2014 onwards, interleaved)
#: use ISO dates or dd-Mon-yy; all three agree with the file's ``NewDate`` column.
LEEDS_DATE_FORMATS = ("%d/%m/%Y", "%Y-%m-%d", "%d-%b-%y")
MELBOURNE_MISSING = frozenset({"-1", "undefined"})
I94_SITE = "I-94 ATR 301 westbound"


class CountFileError(StreetlightError, ValueError):
    """A count file cannot be read at all (bad values are reported, not raised)."""


# --- report ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BadValue:
    """One unusable cell. ``column`` is the file's column; ``site`` is empty if unknown."""

    row: int
    column: str
    site: str
    raw: str
    reason: str


@dataclass(frozen=True, slots=True)
class Gap:
    """A run of hours without a count for ``site``: the first and last missing hour starts."""

    site: str
    first_missing_ns: int
    last_missing_ns: int

    @property
    def n_hours(self) -> int:
        return (self.last_missing_ns - self.first_missing_ns) // NS_PER_H + 1


@dataclass(frozen=True, slots=True)
class DuplicateHour:
    """Several rows for one site and UTC hour; ``conflicting`` means their counts differed
    and the hour was set to NaN (otherwise the first row was kept)."""

    site: str
    hour_start_ns: int
    rows: tuple[int, ...]
    conflicting: bool


@dataclass(frozen=True, slots=True)
class CountReport:
    """What a load found. ``dst_notes`` say how clock changes were resolved."""

    source: str = ""
    rows_read: int = 0
    bad_values: tuple[BadValue, ...] = ()
    gaps: tuple[Gap, ...] = ()
    duplicates: tuple[DuplicateHour, ...] = ()
    dst_notes: tuple[str, ...] = ()
    row_numbering: str = ROW_NUMBERING

    @property
    def missing_hours(self) -> int:
        return sum(gap.n_hours for gap in self.gaps)

    def issues(self) -> list[ValidationIssue]:
        """Bad values in the project's common issue form (``where`` is ``row 17``)."""
        return [
            ValidationIssue(
                f"row {bad.row}",
                f"{bad.column + ' ' if bad.column else ''}{bad.raw!r}: {bad.reason}",
            )
            for bad in self.bad_values
        ]

    def summary(self) -> str:
        conflicting = sum(d.conflicting for d in self.duplicates)
        lines = [
            f"{self.source}: {self.rows_read} rows read, {len(self.bad_values)} bad values, "
            f"{len(self.gaps)} gaps ({self.missing_hours} site-hours), "
            f"{len(self.duplicates)} duplicate hours ({conflicting} conflicting)",
            *self.dst_notes,
        ]
        return "\n".join(lines)


# --- local time --------------------------------------------------------------------------------

_NORMAL, _NONEXISTENT, _AMBIGUOUS = 0, 1, 2


def zone_info(tz: str) -> ZoneInfo:
    """The :class:`ZoneInfo` for an IANA name, with an error that says what to pass."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(
            f"unknown time zone {tz!r}; give an IANA name such as 'Europe/London'"
        ) from err


def _offset_s(day: dt.date, hour: int, fold: int, zone: ZoneInfo) -> int:
    offset = dt.datetime(day.year, day.month, day.day, hour, fold=fold, tzinfo=zone).utcoffset()
    if offset is None:  # pragma: no cover - a ZoneInfo always answers
        raise ValueError(f"time zone {zone.key!r} gives no UTC offset for {day} {hour:02d}:00")
    return round(offset.total_seconds())


def local_hours_to_utc_ns(
    day_ordinal: npt.ArrayLike, hour: npt.ArrayLike, tz: str
) -> tuple[I64, I8]:
    """UTC epoch ns of local (date, whole hour) pairs, and a status per pair.

    ``day_ordinal`` is :meth:`datetime.date.toordinal`. Status 0 = normal, 1 = the local hour
    does not exist (clocks went forward), 2 = it occurs twice; the time returned for status 2 is
    the first occurrence (PEP 495 ``fold=0``). Zone lookups happen once per distinct date, and
    only transition days are resolved hour by hour.
    """
    zone = zone_info(tz)
    days_in = np.asarray(day_ordinal, dtype=np.int64)
    hours_in = np.asarray(hour, dtype=np.int64)
    if days_in.shape != hours_in.shape:
        raise ValueError("day_ordinal and hour must have the same shape")
    if hours_in.size and (hours_in.min() < 0 or hours_in.max() > 23):
        raise ValueError("hour must be a whole local hour in 0..23")
    days, inverse = np.unique(days_in, return_inverse=True)
    utc_s = np.empty((len(days), 24), dtype=np.int64)
    status = np.zeros((len(days), 24), dtype=np.int8)
    hour_s = np.arange(24, dtype=np.int64) * 3600
    for i, ordinal in enumerate(days.tolist()):
        day = dt.date.fromordinal(ordinal)
        naive_s = (ordinal - _EPOCH_ORDINAL) * 86400
        # One offset at both ends of the day under both folds means no transition that day
        # (zones change offset at most once a day).
        corners = {_offset_s(day, h, f, zone) for h in (0, 23) for f in (0, 1)}
        if len(corners) == 1:
            utc_s[i] = naive_s + hour_s - corners.pop()
            continue
        for h in range(24):
            first, second = _offset_s(day, h, 0, zone), _offset_s(day, h, 1, zone)
            utc_s[i, h] = naive_s + h * 3600 - first
            if first > second:
                status[i, h] = _AMBIGUOUS  # offset drops: the hour repeats
            elif first < second:
                status[i, h] = _NONEXISTENT  # offset rises: the hour is skipped
    flat = inverse.reshape(-1) * 24 + hours_in.reshape(-1)
    return (
        (utc_s.reshape(-1)[flat] * NS_PER_S).reshape(days_in.shape),
        status.reshape(-1)[flat].reshape(days_in.shape),
    )


def local_hour_of(utc_ns: npt.ArrayLike, tz: str) -> I8:
    """Local wall-clock hour (0..23) at each UTC epoch-ns instant."""
    zone = zone_info(tz)
    t_ns = np.asarray(utc_ns, dtype=np.int64)
    if t_ns.size == 0:
        return np.zeros(t_ns.shape, dtype=np.int8)
    t_s = np.floor_divide(t_ns, NS_PER_S)
    day = np.floor_divide(t_s, 86400)
    days, inverse = np.unique(day, return_inverse=True)
    inverse = inverse.reshape(-1)
    offset_s = np.empty(len(days), dtype=np.int64)
    varies = np.zeros(len(days), dtype=np.bool_)
    for i, d in enumerate(days.tolist()):
        start = dt.datetime.fromtimestamp(d * 86400, dt.UTC)
        at_start = start.astimezone(zone).utcoffset()
        at_end = (start + dt.timedelta(seconds=86399)).astimezone(zone).utcoffset()
        offset_s[i] = round(at_start.total_seconds()) if at_start is not None else 0
        varies[i] = at_start != at_end
    local_s = t_s.reshape(-1) + offset_s[inverse]
    for position in np.flatnonzero(varies[inverse]).tolist():
        instant = dt.datetime.fromtimestamp(int(t_s.reshape(-1)[position]), dt.UTC)
        offset = instant.astimezone(zone).utcoffset()
        local_s[position] = t_s.reshape(-1)[position] + (
            round(offset.total_seconds()) if offset is not None else 0
        )
    return (np.floor_divide(np.mod(local_s, 86400), 3600).astype(np.int8)).reshape(t_ns.shape)


def _as_ns(value: int | np.integer | dt.datetime, name: str) -> int:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware (or UTC epoch ns), got {value!r}")
        delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return (delta.days * 86400 + delta.seconds) * NS_PER_S + delta.microseconds * 1000
    return int(value)


# --- the counts --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class HourlyCounts:
    """Hourly counts of ``kind`` at ``sites`` on a contiguous UTC hourly grid.

    ``hour_start_ns[h]`` is the start of hour ``h`` (UTC epoch ns, strictly increasing by one
    hour); ``counts[s, h]`` people or vehicles at site ``s`` in that hour, NaN when unknown.
    ``tz`` is the IANA zone of the sites, used for local hours. Arrays are made read-only.
    """

    sites: tuple[str, ...]
    hour_start_ns: I64
    counts: F64
    kind: Kind
    tz: str
    report: CountReport = field(default_factory=CountReport)

    def __post_init__(self) -> None:
        if self.kind not in ("footfall", "traffic"):
            raise ValueError(f"kind must be 'footfall' or 'traffic', got {self.kind!r}")
        zone_info(self.tz)
        if len(set(self.sites)) != len(self.sites):
            raise ValueError("site names must be unique")
        hours = np.asarray(self.hour_start_ns)
        counts = np.asarray(self.counts)
        if hours.dtype != np.int64 or hours.ndim != 1:
            raise ValueError("hour_start_ns must be a 1-D int64 array (UTC epoch ns)")
        if counts.dtype != np.float64 or counts.shape != (len(self.sites), len(hours)):
            raise ValueError(
                f"counts must be float64 [site={len(self.sites)}, hour={len(hours)}], "
                f"got {counts.dtype} {counts.shape}"
            )
        if len(hours) > 1 and np.any(np.diff(hours) != NS_PER_H):
            raise ValueError(
                "hour_start_ns must be a contiguous hourly grid (each hour 3600 s after the "
                "last); mark missing hours with NaN counts instead of leaving them out"
            )
        if np.any(np.isinf(counts)) or np.any(counts < 0):
            raise ValueError("counts must be >= 0 and finite, or NaN for unknown")
        for name, array in (("hour_start_ns", hours), ("counts", counts)):
            view = array.view()
            view.flags.writeable = False
            object.__setattr__(self, name, view)

    @property
    def n_sites(self) -> int:
        return len(self.sites)

    @property
    def n_hours(self) -> int:
        return len(self.hour_start_ns)

    @cached_property
    def local_hour(self) -> I8:
        """Local wall-clock hour (0..23) of each hour's start in ``tz``."""
        return local_hour_of(self.hour_start_ns, self.tz)

    def _replace(self, sites: tuple[str, ...], hours: I64, counts: F64) -> HourlyCounts:
        return HourlyCounts(sites, hours, counts, self.kind, self.tz, self.report)

    def site_index(self, name: str) -> int:
        try:
            return self.sites.index(name)
        except ValueError:
            raise KeyError(
                f"no site {name!r}; the sites are {', '.join(map(repr, self.sites))}"
            ) from None

    def site(self, name: str) -> HourlyCounts:
        """The counts of one site (same grid)."""
        i = self.site_index(name)
        return self._replace((name,), self.hour_start_ns, self.counts[i : i + 1])

    def window(
        self, start: int | np.integer | dt.datetime, end: int | np.integer | dt.datetime
    ) -> HourlyCounts:
        """Hours in ``[start, end)``, UTC epoch ns or aware datetimes on this grid's hours.

        Hours outside the loaded data come back as NaN, so the result always spans exactly
        ``[start, end)``.
        """
        start_ns, end_ns = _as_ns(start, "start"), _as_ns(end, "end")
        anchor = int(self.hour_start_ns[0]) % NS_PER_H if self.n_hours else 0
        for name, t in (("start", start_ns), ("end", end_ns)):
            if (t - anchor) % NS_PER_H:
                raise ValueError(
                    f"{name} {t} is not on this grid's hours (they start "
                    f"{anchor // NS_PER_S} s past each UTC hour)"
                )
        if end_ns < start_ns:
            raise ValueError(f"end {end_ns} is before start {start_ns}")
        hours = np.arange(start_ns, end_ns, NS_PER_H, dtype=np.int64)
        counts = np.full((self.n_sites, len(hours)), np.nan)
        if self.n_hours and len(hours):
            src = (hours - int(self.hour_start_ns[0])) // NS_PER_H
            inside = (src >= 0) & (src < self.n_hours)
            counts[:, inside] = self.counts[:, src[inside]]
        return self._replace(self.sites, hours, counts)

    def night(
        self, night_date: dt.date, *, start_hour: int = 16, end_hour: int = 10
    ) -> HourlyCounts:
        """The night starting on ``night_date``: local ``start_hour``:00 to ``end_hour``:00 the
        next day (end exclusive), 18 hours by default (17 or 19 across a clock change)."""
        if not (0 <= start_hour <= 23 and 0 <= end_hour <= 23):
            raise ValueError("start_hour and end_hour must be local hours in 0..23")
        zone = zone_info(self.tz)
        next_day = night_date + dt.timedelta(days=1)
        start = dt.datetime(
            night_date.year, night_date.month, night_date.day, start_hour, tzinfo=zone
        )
        end = dt.datetime(next_day.year, next_day.month, next_day.day, end_hour, tzinfo=zone)
        return self.window(start, end)

    def profile_by_hour(self) -> F64:
        """``[site, 24]`` median count by local hour, ignoring NaN (NaN if a site has none)."""
        out = np.full((self.n_sites, 24), np.nan)
        for h in range(24):
            columns = self.counts[:, self.local_hour == h]
            if columns.shape[1]:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN sites stay NaN
                    out[:, h] = np.nanmedian(columns, axis=1)
        return out

    def pooled_profile_by_hour(self) -> F64:
        """``[24]`` median over every site-hour at each local hour, ignoring NaN."""
        out = np.full(24, np.nan)
        for h in range(24):
            values = self.counts[:, self.local_hour == h]
            values = values[~np.isnan(values)]
            if values.size:
                out[h] = float(np.median(values))
        return out


# --- reading files -----------------------------------------------------------------------------

_BOM = b"\xef\xbb\xbf"
#: Cells wider than this send the file to the csv-module path (the fast path pads every cell).
_FAST_MAX_CELL_BYTES = 256


@dataclass(frozen=True, slots=True)
class _Column:
    """A column as codes into its distinct cells, so each distinct cell is parsed only once."""

    codes: I64
    distinct: list[str]

    def raw(self, i: int) -> str:
        return self.distinct[int(self.codes[i])]


@dataclass(slots=True)
class _Rows:
    """The wanted columns of the rows that have them, with spreadsheet row numbers."""

    header: list[str]
    row: I64
    columns: list[_Column]
    rows_read: int
    bad: list[BadValue]


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except FileNotFoundError as err:
        raise CountFileError(f"count file {path} does not exist") from err
    except IsADirectoryError as err:
        raise CountFileError(f"count path {path} is a directory, not a file") from err
    except (gzip.BadGzipFile, EOFError, OSError) as err:
        raise CountFileError(f"{path} cannot be read or un-gzipped ({err})") from err
    return data[len(_BOM) :] if data.startswith(_BOM) else data


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CountFileError(
            f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8 CSV"
        ) from err


def _factorize(values: Sequence[str]) -> _Column:
    distinct = list(dict.fromkeys(values))
    index = {value: i for i, value in enumerate(distinct)}
    codes = np.fromiter(map(index.__getitem__, values), dtype=np.int64, count=len(values))
    return _Column(codes, distinct)


def _short_row(number: int, text: str, n_fields: int, n_header: int) -> BadValue:
    return BadValue(
        number,
        "",
        "",
        text[:80],
        f"row has {n_fields} fields but the header has {n_header}; the row was skipped",
    )


def _bytes_column(buf: npt.NDArray[np.uint8], start: I64, end: I64, path: Path) -> _Column:
    """Cells ``buf[start:end]`` factorized without making a Python string per row."""
    width = end - start
    # Pad cells to whole 8-byte words: cells of up to 8 bytes then factorize as integers.
    padded = max(8, -(-int(width.max()) // 8) * 8) if len(width) else 8
    chars = np.zeros((len(start), padded), dtype=np.uint8)
    last = len(buf) - 1
    for k in range(padded):
        inside = k < width
        if not inside.any():
            break
        chars[:, k] = np.where(inside, buf[np.minimum(start + k, last)], 0)
    cells = chars.view(np.uint64 if padded == 8 else f"S{padded}").reshape(-1)
    _, first_seen, codes = np.unique(cells, return_index=True, return_inverse=True)
    # Distinct cells in order of first appearance (sites keep the file's order).
    order = np.argsort(first_seen, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    texts = [_decode(chars[first_seen[i]].tobytes().rstrip(b"\x00"), path) for i in order.tolist()]
    return _Column(rank[codes.reshape(-1)], texts)


def _fast_rows(data: bytes, positions: list[int], n_header: int, path: Path) -> _Rows | None:
    """Split lines and fields with numpy; None when quoting makes that unsafe.

    Safe when no line has a quote before the end of the last wanted field and every line has
    an even number of quotes (so no quoted field spans lines). Leeds quotes only a later column.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    newline = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], newline + 1)).astype(np.int64)
    ends = np.concatenate((newline, [len(buf)])).astype(np.int64)
    ends -= (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13)
    line_number = np.arange(1, len(starts) + 1, dtype=np.int64)
    body = np.flatnonzero(ends > starts)
    body = body[body > 0]  # the header is line 1; blank lines are not data rows
    starts, ends, line_number = starts[body], ends[body], line_number[body]
    # A sentinel comma past the end keeps every lookup in bounds.
    commas = np.append(np.flatnonzero(buf == 44), len(buf)).astype(np.int64)
    first_comma = np.searchsorted(commas, starts)
    n_fields = np.searchsorted(commas, ends) - first_comma + 1
    last = max(positions)
    last_end = np.where(
        n_fields > last + 1, commas[np.minimum(first_comma + last, len(commas) - 1)], ends
    )
    quotes = np.flatnonzero(buf == 34)
    if len(quotes):
        first_quote = np.searchsorted(quotes, starts)
        n_quotes = np.searchsorted(quotes, ends) - first_quote
        quote_at = np.where(n_quotes > 0, quotes[np.minimum(first_quote, len(quotes) - 1)], ends)
        if np.any(n_quotes % 2) or np.any(quote_at < last_end):
            return None
    ok = n_fields > last
    bad = [
        _short_row(
            int(line_number[i]),
            _decode(data[starts[i] : ends[i]], path),
            int(n_fields[i]),
            n_header,
        )
        for i in np.flatnonzero(~ok).tolist()
    ]
    starts, ends, first_comma, n_fields = starts[ok], ends[ok], first_comma[ok], n_fields[ok]
    columns = []
    for p in positions:
        cell_start = starts if p == 0 else commas[first_comma + p - 1] + 1
        cell_end = np.where(
            n_fields > p + 1, commas[np.minimum(first_comma + p, len(commas) - 1)], ends
        )
        if len(cell_end) and int((cell_end - cell_start).max()) > _FAST_MAX_CELL_BYTES:
            return None
        columns.append(_bytes_column(buf, cell_start, cell_end, path))
    return _Rows([], line_number[ok], columns, len(body), bad)


def _csv_rows(text: str, positions: list[int], n_header: int) -> _Rows:
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader, None)
    need = max(positions) + 1
    getter = operator.itemgetter(*positions)
    kept: list[tuple[str, ...]] = []
    numbers: list[int] = []
    bad: list[BadValue] = []
    rows_read = 0
    for number, record in enumerate(reader, start=2):
        if not record:
            continue  # a blank line keeps its number but is not a data row
        rows_read += 1
        if len(record) < need:
            bad.append(_short_row(number, ",".join(record), len(record), n_header))
            continue
        numbers.append(number)
        picked = getter(record)
        kept.append(picked if isinstance(picked, tuple) else (picked,))
    columns = (
        [list(column) for column in zip(*kept, strict=True)] if kept else [[] for _ in positions]
    )
    return _Rows(
        [], np.asarray(numbers, dtype=np.int64), [_factorize(c) for c in columns], rows_read, bad
    )


def _read_rows(path: Path, wanted: Sequence[str] | None) -> _Rows:
    """Read the ``wanted`` columns (all if None). Short rows are bad values, not errors."""
    data = _read_bytes(path)
    line_end = data.find(b"\n")
    first_line = (data if line_end < 0 else data[:line_end]).rstrip(b"\r")
    header = [name.strip() for name in next(csv.reader([_decode(first_line, path)]), [])]
    if not any(header):
        raise CountFileError(f"{path} is empty; expected a header row naming the columns")
    names = header if wanted is None else list(wanted)
    missing = [name for name in names if name not in header]
    if missing:
        raise CountFileError(
            f"{path} lacks the column(s) {', '.join(map(repr, missing))}; it has "
            f"{', '.join(map(repr, header))}. Is this the right loader for the file?"
        )
    positions = [header.index(name) for name in names]
    rows = _fast_rows(data, positions, len(header), path)
    if rows is None:
        try:
            rows = _csv_rows(_decode(data, path), positions, len(header))
        except csv.Error as err:
            raise CountFileError(f"{path} is not a readable CSV file ({err})") from err
    rows.header = header
    return rows


_OK, _MISSING, _BAD = 0, 1, 2


def _judge_count(text: str, missing: frozenset[str]) -> tuple[float, int, str]:
    cell = text.strip()
    if cell in missing:
        return np.nan, _MISSING, ""
    if not cell:
        return np.nan, _BAD, "empty count; give a whole number >= 0"
    try:
        value = float(cell)
    except ValueError:
        return np.nan, _BAD, "count is not a number; give a whole number >= 0"
    if not np.isfinite(value):
        return np.nan, _BAD, "count is not a finite number; give a whole number >= 0"
    if value < 0:
        marker = f" (only {', '.join(sorted(missing))} mean missing here)" if missing else ""
        return np.nan, _BAD, f"negative count{marker}; counts are whole numbers >= 0"
    if value != round(value):
        return np.nan, _BAD, "count is not a whole number of people or vehicles"
    return value, _OK, ""


def _parse_counts(column: _Column, missing: frozenset[str]) -> tuple[F64, I8, list[str]]:
    """Per cell: value (NaN unless usable) and state (_OK/_MISSING/_BAD); per distinct cell:
    the reason it is bad."""
    judged = [_judge_count(text, missing) for text in column.distinct]
    values = np.array([j[0] for j in judged], dtype=np.float64).reshape(-1)
    states = np.array([j[1] for j in judged], dtype=np.int8).reshape(-1)
    return values[column.codes], states[column.codes], [j[2] for j in judged]


def _parse_dates(column: _Column, formats: Sequence[str]) -> I64:
    """Date ordinals, -1 where no format fits."""
    ordinals = np.full(len(column.distinct), -1, dtype=np.int64)
    for i, text in enumerate(column.distinct):
        for fmt in formats:
            try:
                ordinals[i] = dt.datetime.strptime(text.strip(), fmt).toordinal()
                break
            except ValueError:
                continue
    return ordinals[column.codes]


def _parse_hours(column: _Column) -> I64:
    """Whole hours 0..23, -1 where the cell is anything else."""
    hours = np.full(len(column.distinct), -1, dtype=np.int64)
    for i, text in enumerate(column.distinct):
        cell = text.strip()
        if cell.isdigit() and 0 <= int(cell) <= 23:
            hours[i] = int(cell)
    return hours[column.codes]


@dataclass(slots=True)
class _Observations:
    """One count per (row, site): the assembler's input."""

    site: I64
    day: I64
    hour: I64
    value: F64
    missing: B
    row: I64


def _assemble(
    obs: _Observations,
    sites: Sequence[str],
    *,
    kind: Kind,
    tz: str,
    ambiguous: AmbiguousHour,
    source: str,
    rows_read: int,
    bad: list[BadValue],
    value_column: str | None,
) -> HourlyCounts:
    """Place observations on the UTC hourly grid; see the module docstring for the rules."""
    if ambiguous not in ("split", "first"):
        raise ValueError(f"ambiguous must be 'split' or 'first', got {ambiguous!r}")
    if len(obs.site) == 0:
        raise CountFileError(f"{source} has no usable rows ({len(bad)} bad values)")
    utc_ns, status = local_hours_to_utc_ns(obs.day, obs.hour, tz)
    notes: list[str] = []

    def column_of(site: int) -> str:
        return value_column if value_column is not None else sites[site]

    skipped = status == _NONEXISTENT
    if skipped.any():
        lost = np.flatnonzero(skipped & ~np.isnan(obs.value) & (obs.value != 0))
        for i in lost.tolist():
            day = dt.date.fromordinal(int(obs.day[i]))
            bad.append(
                BadValue(
                    int(obs.row[i]),
                    column_of(int(obs.site[i])),
                    sites[int(obs.site[i])],
                    f"{obs.value[i]:g}",
                    f"local time {day} {int(obs.hour[i]):02d}:00 does not exist in {tz} "
                    "(clocks went forward), so the count cannot be placed and was dropped",
                )
            )
        notes.append(
            f"{int(skipped.sum())} rows at local hours that do not exist (clocks went forward) "
            f"dropped, {len(lost)} of them nonzero (listed as bad values)"
        )
    keep = ~skipped
    site, row = obs.site[keep], obs.row[keep]
    value, missing, t_ns = obs.value[keep], obs.missing[keep], utc_ns[keep]
    repeated = status[keep] == _AMBIGUOUS
    if repeated.any():
        n_repeated = int(repeated.sum())
        if ambiguous == "split":
            value = value.copy()
            value[repeated] /= 2.0
            site = np.concatenate((site, site[repeated]))
            row = np.concatenate((row, row[repeated]))
            value = np.concatenate((value, value[repeated]))
            missing = np.concatenate((missing, missing[repeated]))
            t_ns = np.concatenate((t_ns, t_ns[repeated] + NS_PER_H))
            notes.append(
                f"{n_repeated} rows at a repeated local hour (clocks went back) split evenly "
                "over its two UTC hours"
            )
        else:
            notes.append(
                f"{n_repeated} rows at a repeated local hour (clocks went back) assigned to its "
                "first occurrence; the second is a gap"
            )

    first_ns = int(t_ns.min())
    hour_index = (t_ns - first_ns) // NS_PER_H
    n_hours = int(hour_index.max()) + 1
    key = site * n_hours + hour_index
    order = np.lexsort((row, key))
    sorted_key = key[order]
    repeat = np.zeros(len(order), dtype=np.bool_)
    repeat[1:] = sorted_key[1:] == sorted_key[:-1]
    duplicates: list[DuplicateHour] = []
    value = value.copy()
    if repeat.any():
        group_start = np.flatnonzero(~repeat)
        sizes = np.diff(np.append(group_start, len(order)))
        for start, size in zip(
            group_start[sizes > 1].tolist(), sizes[sizes > 1].tolist(), strict=True
        ):
            members = order[start : start + size]
            vals = value[members]
            same = bool(np.all(missing[members] == missing[members[0]])) and (
                bool(np.all(np.isnan(vals))) or bool(np.all(vals == vals[0]))
            )
            if not same:
                value[members[0]] = np.nan
                missing[members[0]] = False
            duplicates.append(
                DuplicateHour(
                    sites[int(site[members[0]])],
                    first_ns + int(hour_index[members[0]]) * NS_PER_H,
                    tuple(sorted(set(row[members].tolist()))),
                    not same,
                )
            )
    first = order[~repeat]
    counts = np.full((len(sites), n_hours), np.nan)
    present = np.zeros((len(sites), n_hours), dtype=np.bool_)
    counts[site[first], hour_index[first]] = value[first]
    present[site[first], hour_index[first]] = ~missing[first]
    hours = first_ns + np.arange(n_hours, dtype=np.int64) * NS_PER_H

    gaps: list[Gap] = []
    for s, name in enumerate(sites):
        edges = np.diff(np.concatenate(([0], (~present[s]).astype(np.int8), [0])))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1) - 1
        gaps.extend(
            Gap(name, int(hours[a]), int(hours[b]))
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
        )
    bad.sort(key=lambda b: (b.row, b.column))
    report = CountReport(
        source=source,
        rows_read=rows_read,
        bad_values=tuple(bad),
        gaps=tuple(gaps),
        duplicates=tuple(duplicates),
        dst_notes=tuple(notes),
    )
    return HourlyCounts(tuple(sites), hours, counts, kind, tz, report)


def _row_problems(
    rows: _Rows,
    checks: Sequence[tuple[str, _Column, B, str]],
    site_names: Sequence[str],
    site: I64,
) -> B:
    """Report each failed check as a bad value; True for rows that can be placed."""
    ok = np.ones(len(rows.row), dtype=np.bool_)
    for column, cells, failed, reason in checks:
        for i in np.flatnonzero(failed).tolist():
            name = site_names[int(site[i])] if site[i] >= 0 else ""
            rows.bad.append(BadValue(int(rows.row[i]), column, name, cells.raw(i), reason))
        ok &= ~failed
    return ok


def _report_bad_counts(
    rows: _Rows,
    column: str,
    cells: _Column,
    parsed: tuple[F64, I8, list[str]],
    site_name: str | Sequence[str],
    site: I64 | None,
    placed: B,
) -> None:
    """Bad values for unusable counts in rows that can be placed."""
    reasons = parsed[2]
    for i in np.flatnonzero((parsed[1] == _BAD) & placed).tolist():
        name = site_name if isinstance(site_name, str) or site is None else site_name[int(site[i])]
        rows.bad.append(
            BadValue(
                int(rows.row[i]), column, str(name), cells.raw(i), reasons[int(cells.codes[i])]
            )
        )


_SKIPPED = "; the row was skipped"


def load_leeds_footfall(
    path_gz: str | Path, *, tz: str = "Europe/London", ambiguous: AmbiguousHour = "split"
) -> HourlyCounts:
    """Leeds city-centre footfall cameras (long format, one row per site and local hour).

    Reads ``Date`` (dd/mm/yyyy, also the ISO and dd-Mon-yy forms the file mixes in), ``Hour``
    (0-23 local), ``LocationName`` and ``InCount`` (people in the hour); gzip or plain CSV.
    Sites keep the file's names in order of first appearance (see :data:`LEEDS_CAMERA_NAMES`).
    """
    path = Path(path_gz)
    rows = _read_rows(path, ("Date", "Hour", "LocationName", "InCount"))
    date_cells, hour_cells, site_cells, count_cells = rows.columns
    stripped = [name.strip() for name in site_cells.distinct]
    names = list(dict.fromkeys(name for name in stripped if name))
    site_of_distinct = np.array(
        [names.index(name) if name else -1 for name in stripped], dtype=np.int64
    ).reshape(-1)
    site = site_of_distinct[site_cells.codes]
    day = _parse_dates(date_cells, LEEDS_DATE_FORMATS)
    hour = _parse_hours(hour_cells)
    placed = _row_problems(
        rows,
        (
            (
                "Date",
                date_cells,
                day < 0,
                "date is not dd/mm/yyyy (nor yyyy-mm-dd or dd-Mon-yy)" + _SKIPPED,
            ),
            ("Hour", hour_cells, hour < 0, "hour is not a whole hour 0..23" + _SKIPPED),
            ("LocationName", site_cells, site < 0, "no site name" + _SKIPPED),
        ),
        names,
        site,
    )
    parsed = _parse_counts(count_cells, frozenset())
    _report_bad_counts(rows, "InCount", count_cells, parsed, names, site, placed)
    values, states = parsed[0], parsed[1]
    obs = _Observations(
        site[placed],
        day[placed],
        hour[placed],
        values[placed],
        states[placed] == _MISSING,
        rows.row[placed],
    )
    return _assemble(
        obs,
        names,
        kind="footfall",
        tz=tz,
        ambiguous=ambiguous,
        source=str(path),
        rows_read=rows.rows_read,
        bad=rows.bad,
        value_column="InCount",
    )


def load_melbourne_pedestrian(
    path: str | Path, *, tz: str = "Australia/Melbourne", ambiguous: AmbiguousHour = "split"
) -> HourlyCounts:
    """City of Melbourne Pedestrian Counting System, wide format.

    ``Date`` (dd/mm/yyyy) and ``Hour`` (0-23 local), then one column of people per hour for each
    sensor, named by its description. ``-1`` and ``undefined`` mean missing (gaps, not bad
    values). Sites are the sensor columns in file order.
    """
    path = Path(path)
    rows = _read_rows(path, None)
    for position, expected in enumerate(("Date", "Hour")):
        if len(rows.header) <= position or rows.header[position] != expected:
            raise CountFileError(
                f"{path}: column {position + 1} must be {expected!r} (Melbourne wide format: "
                f"Date, Hour, then one column per sensor); the header is {rows.header}"
            )
    names = rows.header[2:]
    if not names:
        raise CountFileError(f"{path} has no sensor columns after Date and Hour")
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise CountFileError(f"{path} names sensor column(s) {twice} more than once")
    date_cells, hour_cells = rows.columns[0], rows.columns[1]
    day = _parse_dates(date_cells, ("%d/%m/%Y",))
    hour = _parse_hours(hour_cells)
    no_site = np.full(len(rows.row), -1, dtype=np.int64)
    placed = _row_problems(
        rows,
        (
            ("Date", date_cells, day < 0, "date is not dd/mm/yyyy" + _SKIPPED),
            ("Hour", hour_cells, hour < 0, "hour is not a whole hour 0..23" + _SKIPPED),
        ),
        names,
        no_site,
    )
    values: list[F64] = []
    missing: list[B] = []
    for name, cells in zip(names, rows.columns[2:], strict=True):
        parsed = _parse_counts(cells, MELBOURNE_MISSING)
        _report_bad_counts(rows, name, cells, parsed, name, None, placed)
        values.append(parsed[0][placed])
        missing.append(parsed[1][placed] == _MISSING)
    n_placed, n_sites = int(placed.sum()), len(names)
    obs = _Observations(
        np.repeat(np.arange(n_sites, dtype=np.int64), n_placed),
        np.tile(day[placed], n_sites),
        np.tile(hour[placed], n_sites),
        np.concatenate(values),
        np.concatenate(missing),
        np.tile(rows.row[placed], n_sites),
    )
    return _assemble(
        obs,
        names,
        kind="footfall",
        tz=tz,
        ambiguous=ambiguous,
        source=str(path),
        rows_read=rows.rows_read,
        bad=rows.bad,
        value_column=None,
    )


def _parse_iso_hours(column: _Column) -> tuple[I64, I64, list[str]]:
    """``YYYY-MM-DD HH:00:00`` cells to (date ordinal, hour), -1 where unusable; and a reason
    per distinct cell."""
    day = np.full(len(column.distinct), -1, dtype=np.int64)
    hour = np.full(len(column.distinct), -1, dtype=np.int64)
    reasons = [""] * len(column.distinct)
    for i, text in enumerate(column.distinct):
        cell = text.strip()
        try:
            # fromisoformat is C-fast but lenient, so the shape is checked first.
            if len(cell) != 19 or cell[10] != " ":
                raise ValueError(cell)
            stamp = dt.datetime.fromisoformat(cell)
        except ValueError:
            reasons[i] = "date_time is not 'YYYY-MM-DD HH:MM:SS'" + _SKIPPED
            continue
        if stamp.minute or stamp.second:
            reasons[i] = "date_time is not on the hour" + _SKIPPED
            continue
        day[i], hour[i] = stamp.toordinal(), stamp.hour
    return day[column.codes], hour[column.codes], reasons


def load_i94_traffic(
    path: str | Path, *, tz: str = "America/Chicago", ambiguous: AmbiguousHour = "first"
) -> HourlyCounts:
    """UCI Metro Interstate Traffic Volume: westbound I-94 vehicles per hour at MnDOT ATR 301.

    Reads ``date_time`` (local wall-clock time, hourly) and ``traffic_volume`` (vehicles in the
    hour). Rows repeat an hour once per weather description; identical repeats collapse to one
    (listed as duplicates), so the grid holds one count per distinct timestamp. One site,
    :data:`I94_SITE`.
    """
    path = Path(path)
    rows = _read_rows(path, ("date_time", "traffic_volume"))
    stamp_cells, count_cells = rows.columns
    day, hour, stamp_reasons = _parse_iso_hours(stamp_cells)
    unusable = day < 0
    for i in np.flatnonzero(unusable).tolist():
        rows.bad.append(
            BadValue(
                int(rows.row[i]),
                "date_time",
                I94_SITE,
                stamp_cells.raw(i),
                stamp_reasons[int(stamp_cells.codes[i])],
            )
        )
    placed = ~unusable
    parsed = _parse_counts(count_cells, frozenset())
    _report_bad_counts(rows, "traffic_volume", count_cells, parsed, I94_SITE, None, placed)
    site = np.zeros(len(rows.row), dtype=np.int64)
    obs = _Observations(
        site[placed],
        day[placed],
        hour[placed],
        parsed[0][placed],
        parsed[1][placed] == _MISSING,
        rows.row[placed],
    )
    return _assemble(
        obs,
        [I94_SITE],
        kind="traffic",
        tz=tz,
        ambiguous=ambiguous,
        source=str(path),
        rows_read=rows.rows_read,
        bad=rows.bad,
        value_column="traffic_volume",
    )
