"""Report outputs: JSON and its schema, PNG charts, one self-contained HTML page, a terminal table.

Theory of operation: everything here reads a finished, frozen ``SimulationReport`` and only
presents it; the figures themselves are computed by the accounting. Rules:

- Charts are drawn on ``Figure`` objects bound to an explicit Agg canvas, never through pyplot:
  no GUI backend is ever chosen, no global figure registry keeps figures alive in a long-running
  service, and importing this module leaves the host's matplotlib backend alone.
- Every string that comes from a report is untrusted (policy names are typed by engineers,
  street names come from council files): ``html.escape`` for HTML, rich ``Text`` (no markup)
  for the terminal, ``$`` escaped for matplotlib's mathtext.
- The HTML page carries everything inline (charts as ``data:`` URIs, CSS in ``<style>``, no
  scripts, no links) because planners open and forward it on machines without internet access.
- File names are fixed, and chart names derive only from the report, so a rerun of the same
  report writes the same files.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from domain.errors import StreetlightError, ValidationIssue
from simulation.results import (
    REPORT_SCHEMA_VERSION,
    Heatmap,
    PolicyFigures,
    SimulationReport,
)

JSON_NAME = "report.json"
SCHEMA_NAME = "report.schema.json"
HTML_NAME = "report.html"
CHARTS_DIR = "charts"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Streets listed per policy in the HTML page; a town has hundreds, the top ones carry the story.
TOP_STREETS = 20

_DPI = 100
_AXIS_LABEL_CHARS = 28
# Candidate spacings for heat-map time ticks: round clock intervals read better than bin indices.
_TICK_STEPS_S = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)
_MAX_TIME_TICKS = 12
_MAX_LAMP_TICKS = 40

PathLike = str | os.PathLike[str]


class ReportFileError(StreetlightError, ValueError):
    """A report file cannot be read back; ``issues`` lists every problem, each located."""

    def __init__(self, path: Path, issues: Sequence[ValidationIssue]) -> None:
        self.path = path
        self.issues = list(issues)
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        super().__init__(
            f"{path} is not a valid simulation report ({len(self.issues)} problem(s)):\n{lines}"
        )


# --- JSON --------------------------------------------------------------------------------------


def write_json(report: SimulationReport, path: PathLike) -> Path:
    """Write ``report`` as indented JSON (UTF-8) and return the path.

    Raises ``ValueError`` if a number is NaN or infinite: pydantic writes those as ``null``, which
    no float field accepts, so the file could never be read back.
    """
    bad = _non_finite(report.model_dump(), "")
    if bad:
        raise ValueError(
            "report has numbers JSON cannot carry (NaN or infinite): "
            + ", ".join(bad[:10])
            + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
            + "; give a finite value (such as 0.0 for a share whose base is zero) before writing"
        )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return out


def read_json(path: PathLike) -> SimulationReport:
    """Read a report written by ``write_json``.

    Raises ``ReportFileError`` naming each problem by its place in the document (for example
    ``policies[1].energy_kwh: Input should be a valid number``).
    """
    src = Path(path)
    try:
        text = src.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ReportFileError(src, [ValidationIssue("file", f"cannot be read: {err}")]) from err
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno}"
        raise ReportFileError(src, [ValidationIssue(where, f"not JSON: {err.msg}")]) from err
    # A newer writer may add fields this reader forbids; say so instead of listing each field.
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if isinstance(version, int) and version != REPORT_SCHEMA_VERSION:
        message = (
            f"the file is schema version {version}; this reader reads version "
            f"{REPORT_SCHEMA_VERSION}: use the matching version of streetlight"
        )
        raise ReportFileError(src, [ValidationIssue("schema_version", message)])
    try:
        return SimulationReport.model_validate(raw)
    except ValidationError as err:
        issues = [_issue(e["loc"], e["msg"], e["type"], e.get("input")) for e in err.errors()]
        raise ReportFileError(src, issues) from err


def write_schema(path: PathLike) -> Path:
    """Write the JSON schema of ``SimulationReport`` (draft 2020-12, as pydantic emits it)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    schema = SimulationReport.model_json_schema()
    out.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def _non_finite(value: Any, where: str) -> list[str]:
    if isinstance(value, float):
        return [] if math.isfinite(value) else [f"{where or '(report)'} = {value}"]
    if isinstance(value, dict):
        return [
            found
            for key, item in value.items()
            for found in _non_finite(item, f"{where}.{key}" if where else str(key))
        ]
    if isinstance(value, list):
        return [
            found for i, item in enumerate(value) for found in _non_finite(item, f"{where}[{i}]")
        ]
    return []


def _issue(loc: tuple[int | str, ...], msg: str, kind: str, given: object) -> ValidationIssue:
    where = ""
    for part in loc:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else part)
    message = msg
    if kind == "extra_forbidden":
        message += " (a field this version of the report does not have: check its spelling)"
    elif kind != "missing" and not isinstance(given, dict | list):
        # The offending value helps find it in a large file; containers would flood the message.
        shown = repr(given)
        message += f" (got {shown[:60] + '...' if len(shown) > 60 else shown})"
    return ValidationIssue(where or "(whole document)", message)


# --- charts ------------------------------------------------------------------------------------


def render_charts(report: SimulationReport, out_dir: PathLike) -> dict[str, Path]:
    """Draw the report's charts as PNG files in ``out_dir`` and return them by name.

    Names (and files ``<name>.png``), in this order: ``comparison`` (energy, cost, CO2 and
    savings per policy), ``energy_by_hour``, ``compliance``, then one
    ``heatmap_<NN>_<policy>_<night>`` per entry of ``report.heatmaps`` (``NN`` its index, the
    rest reduced to lower-case letters, digits and dashes). Raises ``ValueError`` if per-hour
    lists do not match ``hour_labels`` or a heat map is not a lamps x bins rectangle.
    """
    # Everything is checked before anything is drawn, so a bad report leaves no partial charts.
    _check_hourly(report)
    heatmaps = [
        (hm, _heatmap_levels(hm), _parse_local_clock(hm.first_bin_local)) for hm in report.heatmaps
    ]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    charts: dict[str, Path] = {}
    charts["comparison"] = _save(_comparison_figure(report), out / "comparison.png")
    charts["energy_by_hour"] = _save(_energy_by_hour_figure(report), out / "energy_by_hour.png")
    charts["compliance"] = _save(_compliance_figure(report), out / "compliance.png")
    for index, (heatmap, levels, start) in enumerate(heatmaps):
        name = f"heatmap_{index:02d}_{_slug(heatmap.policy)}_{_slug(heatmap.night)}"
        figure = _heatmap_figure(heatmap, levels, start, report.tz)
        charts[name] = _save(figure, out / f"{name}.png")
    return charts


def _new_figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)  # binds the Agg (raster, headless) canvas; no display is ever needed
    return fig


def _save(fig: Figure, path: Path) -> Path:
    # No "Software" text chunk: it names the matplotlib version, so the bytes would change on
    # every upgrade, and it carries a URL we would rather not embed in a page meant to be offline.
    fig.savefig(path, format="png", dpi=_DPI, metadata={"Software": None})
    return path


def _mpl(text: str) -> str:
    """``text`` as matplotlib shows it literally: no mathtext, and not hidden from legends."""
    escaped = text.replace("$", r"\$")
    # Legends skip labels starting with "_"; a policy may legitimately be named that way.
    return " " + escaped if escaped.startswith("_") else escaped


def _short(text: str, limit: int = _AXIS_LABEL_CHARS) -> str:
    return _mpl(text if len(text) <= limit else text[: limit - 1] + "…")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "x"


def _colour(index: int) -> str:
    # The same policy keeps the same colour in every chart of the report.
    return f"C{index % 10}"


def _policy_axis(ax: Axes, policies: Sequence[PolicyFigures]) -> np.ndarray[Any, Any]:
    x = np.arange(len(policies), dtype=np.float64)
    rotate = len(policies) > 3 or any(len(p.policy) > 12 for p in policies)
    ax.set_xticks(
        x,
        [_short(p.policy) for p in policies],
        rotation=20 if rotate else 0,
        ha="right" if rotate else "center",
    )
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return x


def _policy_bars(
    ax: Axes, policies: Sequence[PolicyFigures], values: Sequence[float], fmt: str
) -> None:
    x = _policy_axis(ax, policies)
    bars = ax.bar(x, values, color=[_colour(i) for i in range(len(policies))], width=0.6)
    ax.bar_label(bars, labels=[fmt.format(v) for v in values], padding=2, fontsize=8)
    ax.margins(y=0.15)


def _comparison_figure(report: SimulationReport) -> Figure:
    policies = report.policies
    fig = _new_figure(11.0, 8.0)
    axes = fig.subplot_mosaic([["energy", "cost"], ["co2", "saving"]])
    fig.suptitle(
        _mpl(f"Policies compared: {report.scenario}, {len(report.nights)} night(s)"),
        fontsize=13,
    )

    energy = axes["energy"]
    _policy_bars(energy, policies, [p.energy_kwh for p in policies], "{:,.1f}")
    energy.axhline(
        report.all_night_energy_kwh, color="0.3", linestyle="--", label="all-night reference"
    )
    energy.legend(loc="lower right", fontsize=8)
    energy.set_title("Energy")
    energy.set_ylabel("energy (kWh)")

    cost = axes["cost"]
    _policy_bars(cost, policies, [p.cost for p in policies], "{:,.2f}")
    cost.set_title("Electricity cost")
    cost.set_ylabel(_mpl(f"cost ({report.currency})"))

    co2 = axes["co2"]
    _policy_bars(co2, policies, [p.co2_kg for p in policies], "{:,.1f}")
    co2.set_title(f"CO2 (grid factor for {report.carbon_factor_year})")
    co2.set_ylabel("CO2 (kg)")

    saving = axes["saving"]
    x = _policy_axis(saving, policies)
    vs_all = [p.saving_vs_all_night_frac * 100.0 for p in policies]
    vs_current = [
        math.nan if p.saving_vs_current_frac is None else p.saving_vs_current_frac * 100.0
        for p in policies
    ]
    bars_all = saving.bar(x - 0.2, vs_all, 0.4, color="0.35", label="vs all-night")
    current = f"vs current ({_short(report.current_policy)})" if report.current_policy else ""
    bars_cur = saving.bar(x + 0.2, vs_current, 0.4, color="C9", label=current or "vs current")
    saving.bar_label(bars_all, labels=[f"{v:.1f}" for v in vs_all], padding=2, fontsize=8)
    saving.bar_label(
        bars_cur,
        labels=["n/a" if math.isnan(v) else f"{v:.1f}" for v in vs_current],
        padding=2,
        fontsize=8,
    )
    saving.axhline(0.0, color="0.2", linewidth=0.8)
    saving.margins(y=0.15)
    saving.legend(fontsize=8)
    saving.set_title("Energy saving")
    saving.set_ylabel("saving (% of reference energy)")
    return fig


def _check_hourly(report: SimulationReport) -> None:
    hours = len(report.hour_labels)
    for p in report.policies:
        for field, values in (
            ("energy_by_hour_kwh", p.energy_by_hour_kwh),
            ("below_required_share_by_hour", p.below_required_share_by_hour),
        ):
            if len(values) != hours:
                raise ValueError(
                    f"policy {p.policy!r}: {field} has {len(values)} entries but hour_labels "
                    f"has {hours}; give one entry per labelled hour"
                )


def _energy_by_hour_figure(report: SimulationReport) -> Figure:
    hours = report.hour_labels
    fig = _new_figure(min(16.0, max(8.0, 3.0 + 0.6 * len(hours))), 5.0)
    ax = fig.add_subplot()
    x = np.arange(len(hours), dtype=np.float64)
    width = 0.8 / max(1, len(report.policies))
    for i, p in enumerate(report.policies):
        offset = (i - (len(report.policies) - 1) / 2.0) * width
        ax.bar(x + offset, p.energy_by_hour_kwh, width, color=_colour(i), label=_short(p.policy))
    ax.set_xticks(x, [_mpl(h) for h in hours])
    ax.set_xlabel(_mpl(f"local clock hour ({report.tz})"))
    ax.set_ylabel("energy (kWh)")
    ax.set_title(
        _mpl(f"Energy by hour of the night, summed over {len(report.nights)} night(s)"),
    )
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if report.policies:
        ax.legend(title="policy", fontsize=8)
    return fig


def _compliance_figure(report: SimulationReport) -> Figure:
    policies = report.policies
    hours = report.hour_labels
    fig = _new_figure(11.0, 8.0)
    axes = fig.subplot_mosaic([["share", "users"], ["by_hour", "by_hour"]])
    fig.suptitle(_mpl(f"Lighting compliance seen by road users: {report.scenario}"), fontsize=13)

    share = axes["share"]
    values = [p.compliance.below_required_share * 100.0 for p in policies]
    _policy_bars(share, policies, values, "{:.1f}")
    share.set_title("Time under a lamp below its required level")
    share.set_ylabel("share of road-user time (%)")

    users = axes["users"]
    _policy_bars(
        users, policies, [float(p.compliance.users_before_boost) for p in policies], "{:,.0f}"
    )
    users.set_title("Users who reached a lamp before its boost")
    users.set_ylabel("road users")

    by_hour = axes["by_hour"]
    x = np.arange(len(hours), dtype=np.float64)
    for i, p in enumerate(policies):
        by_hour.plot(
            x,
            [v * 100.0 for v in p.below_required_share_by_hour],
            marker="o",
            color=_colour(i),
            label=_short(p.policy),
        )
    by_hour.set_xticks(x, [_mpl(h) for h in hours])
    by_hour.set_xlabel(_mpl(f"local clock hour ({report.tz})"))
    by_hour.set_ylabel("below required (% of user time)")
    by_hour.set_title("Below the required level, by hour of the night")
    by_hour.grid(alpha=0.3)
    if policies:
        by_hour.legend(title="policy", fontsize=8)
    return fig


def _parse_local_clock(text: str) -> datetime:
    """``first_bin_local`` as a datetime: ISO 8601 date-time, or a bare ``HH:MM[:SS]``."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    try:
        # Only the clock matters for tick labels; any date will do.
        return datetime.combine(date(2000, 1, 1), time.fromisoformat(text))
    except ValueError as err:
        raise ValueError(
            f"heat map first_bin_local {text!r} is not a local clock time; "
            "write ISO 8601 such as '2024-11-05T16:30:00' or '16:30'"
        ) from err


def _heatmap_levels(heatmap: Heatmap) -> np.ndarray[Any, np.dtype[np.float64]]:
    where = f"heat map for policy {heatmap.policy!r}, night {heatmap.night!r}"
    rows = heatmap.level_frac
    if len(rows) != len(heatmap.lamp_ids) or not rows:
        raise ValueError(
            f"{where}: level_frac has {len(rows)} rows but lamp_ids has "
            f"{len(heatmap.lamp_ids)}; give one row per lamp, at least one lamp"
        )
    widths = {len(row) for row in rows}
    if len(widths) != 1 or 0 in widths:
        raise ValueError(
            f"{where}: level_frac rows have lengths {sorted(widths)}; "
            "every lamp needs the same, non-zero number of time bins"
        )
    if not heatmap.bin_s > 0.0:
        raise ValueError(f"{where}: bin_s must be > 0 seconds, got {heatmap.bin_s}")
    return np.asarray(rows, dtype=np.float64)


def _heatmap_figure(
    heatmap: Heatmap, levels: np.ndarray[Any, np.dtype[np.float64]], start: datetime, tz: str
) -> Figure:
    n_lamps, n_bins = levels.shape
    span_s = n_bins * heatmap.bin_s

    fig = _new_figure(11.0, min(12.0, max(3.5, 1.8 + 0.28 * n_lamps)))
    ax = fig.add_subplot()
    # x in seconds since the first bin's start, so ticks can sit on round clock times.
    image = ax.imshow(
        levels,
        aspect="auto",
        interpolation="nearest",
        cmap="viridis",
        vmin=0.0,
        vmax=1.0,
        extent=(0.0, span_s, n_lamps - 0.5, -0.5),
    )
    colourbar = fig.colorbar(image, ax=ax, pad=0.01)
    colourbar.set_label("level (fraction of full output)")

    step_s = next((s for s in _TICK_STEPS_S if span_s / s <= _MAX_TIME_TICKS), _TICK_STEPS_S[-1])
    clock_s = start.hour * 3600 + start.minute * 60 + start.second + start.microsecond / 1e6
    ticks_s = np.arange((-clock_s) % step_s, span_s + 1e-9, step_s)
    ax.set_xticks(
        ticks_s, [(start + timedelta(seconds=float(t))).strftime("%H:%M") for t in ticks_s]
    )
    ax.set_xlabel(_mpl(f"local time ({tz}); bins of {heatmap.bin_s:g} s"))

    every = math.ceil(n_lamps / _MAX_LAMP_TICKS)
    rows = range(0, n_lamps, every)
    ax.set_yticks(list(rows), [_short(heatmap.lamp_ids[i], 24) for i in rows], fontsize=8)
    ax.set_ylabel("lamp")
    ax.set_title(_mpl(f"Lamp levels: {heatmap.policy}, night of {heatmap.night}"))
    return fig


# --- HTML --------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #1d232a;
       max-width: 1240px; margin: 1.5rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #cfd6de; }
h3 { font-size: 1.05rem; margin-top: 1.4rem; }
.lede { color: #4a5561; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.88rem; }
th, td { padding: 0.28rem 0.6rem; border-bottom: 1px solid #e3e7eb; text-align: left;
         vertical-align: top; }
th { background: #f2f4f6; font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.current td { background: #fff6d8; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 0.25rem 1.2rem; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
figure { margin: 1.2rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e7eb; }
figcaption { font-size: 0.85rem; color: #4a5561; }
.note { font-size: 0.85rem; color: #4a5561; }
"""

_CHART_CAPTIONS = {
    "comparison": (
        "Energy, cost and CO2 of each policy over all nights, and its energy saving against "
        "the all-night reference and against the current policy (n/a where there is none). "
        "The dashed line on the energy panel is the all-night reference."
    ),
    "energy_by_hour": (
        "Energy used in each hour of the night window, summed over the nights. Where bars "
        "fall below the all-night policy's, that policy is dimming or switching off."
    ),
    "compliance": (
        "Top left: share of road-user time spent under a lamp below the level its lighting "
        "class required (lower is better). Top right: road users who reached a lamp before it "
        "had brightened to its boost (presence policies only). Bottom: the share by hour."
    ),
}


def render_html(
    report: SimulationReport, path: PathLike, charts: Mapping[str, Path] | None = None
) -> Path:
    """Write one self-contained HTML page for ``report`` and return its path.

    ``charts`` are PNG files to embed, by name, in the order given (``render_charts``'s output);
    when omitted the charts are drawn into a temporary directory and embedded from there.
    Raises ``ValueError`` if a chart file is not a PNG.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if charts is None:
        with tempfile.TemporaryDirectory(prefix="streetlight-charts-") as tmp:
            figures = _figures_html(report, render_charts(report, tmp))
    else:
        figures = _figures_html(report, charts)
    out.write_text(_page(report, figures), encoding="utf-8")
    return out


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _kwh(value: float) -> str:
    return f"{value:,.1f}"


def _money(value: float) -> str:
    return f"{value:,.2f}"


def _kg(value: float) -> str:
    return f"{value:,.1f}"


def _pct(frac: float | None) -> str:
    """A fraction as a percentage number (the unit goes in the column header)."""
    return "—" if frac is None else f"{frac * 100.0:.1f}"


def _count(value: int) -> str:
    return f"{value:,d}"


def _hours(value: float) -> str:
    return f"{value:,.1f}"


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    numeric: set[int],
    row_classes: Sequence[str] | None = None,
) -> str:
    """An HTML table; every header and cell is escaped here, so no caller can forget to."""

    def cell(tag: str, col: int, text: str) -> str:
        cls = ' class="num"' if col in numeric else ""
        return f"<{tag}{cls}>{_esc(text)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        cls = row_classes[r] if row_classes else ""
        attr = f' class="{_esc(cls)}"' if cls else ""
        body.append(f"<tr{attr}>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figures_html(report: SimulationReport, charts: Mapping[str, Path]) -> str:
    parts = []
    for name, chart_path in charts.items():
        data = Path(chart_path).read_bytes()
        if not data.startswith(PNG_SIGNATURE):
            raise ValueError(
                f"chart {name!r} ({chart_path}) is not a PNG; pass the files render_charts wrote"
            )
        caption = _chart_caption(report, name)
        encoded = base64.b64encode(data).decode("ascii")
        parts.append(
            f'<figure><img src="data:image/png;base64,{encoded}" alt="{_esc(caption)}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>"
        )
    return "\n".join(parts)


def _chart_caption(report: SimulationReport, name: str) -> str:
    if name in _CHART_CAPTIONS:
        return _CHART_CAPTIONS[name]
    match = re.fullmatch(r"heatmap_(\d+)_.*", name)
    if match and int(match.group(1)) < len(report.heatmaps):
        hm = report.heatmaps[int(match.group(1))]
        return (
            f"Levels of {len(hm.lamp_ids)} sampled lamps (rows) through the night of {hm.night} "
            f"under policy {hm.policy}, in bins of {hm.bin_s:g} s: dark is off or deeply "
            "dimmed, yellow is full output."
        )
    return name


def _page(report: SimulationReport, figures: str) -> str:
    title = f"Simulation report: {report.scenario}"
    lede = (
        f"{len(report.policies)} policies over {len(report.nights)} night(s), "
        f"{_count(report.lamps)} lamps on {_count(report.streets)} streets."
    )
    sections = [
        f"<h1>{_esc(title)}</h1>",
        f'<p class="lede">{_esc(lede)}</p>',
        "<h2>Scenario</h2>",
        _facts_html(report),
        "<h2>Policies compared</h2>",
        _policies_html(report),
        "<h2>Charts</h2>",
        figures or '<p class="note">No charts.</p>',
        "<h2>Per night</h2>",
        _nights_html(report),
        f"<h2>Streets using the most energy (top {TOP_STREETS} per policy)</h2>",
        _streets_html(report),
        "<h2>Demand data notes</h2>",
        _notes_html(report),
        "<h2>Run time</h2>",
        _timing_html(report),
    ]
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def _facts_html(report: SimulationReport) -> str:
    facts = [
        ("Scenario", report.scenario),
        ("Lamps", _count(report.lamps)),
        ("Streets", _count(report.streets)),
        ("Nights", f"{len(report.nights)}: {', '.join(report.nights)}"),
        ("Time zone", report.tz),
        ("Tariff", f"{report.tariff_per_kwh:g} {report.currency} per kWh"),
        (
            "Carbon factor",
            f"{report.carbon_kg_per_kwh:g} kg CO2 per kWh (factor for {report.carbon_factor_year})",
        ),
        ("All-night reference energy", f"{_kwh(report.all_night_energy_kwh)} kWh"),
        ("Current policy", report.current_policy or "none given (no saving vs current)"),
        ("Random seed", str(report.seed)),
        ("Report schema version", str(report.schema_version)),
    ]
    items = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in facts)
    return f'<dl class="facts">{items}</dl>'


def _policies_html(report: SimulationReport) -> str:
    headers = [
        "policy",
        "version",
        "energy (kWh)",
        f"cost ({report.currency})",
        "CO2 (kg)",
        "saving vs all-night (%)",
        "saving vs current (%)",
        "below required (% of user time)",
        "users before boost",
        "road users",
        "dark (user-s)",
        "commands",
        "switch-ons",
        "burning hours (h)",
    ]
    rows = []
    classes = []
    for p in report.policies:
        is_current = p.policy == report.current_policy
        rows.append(
            [
                p.policy + (" (current)" if is_current else ""),
                str(p.policy_version),
                _kwh(p.energy_kwh),
                _money(p.cost),
                _kg(p.co2_kg),
                _pct(p.saving_vs_all_night_frac),
                _pct(p.saving_vs_current_frac),
                _pct(p.compliance.below_required_share),
                _count(p.compliance.users_before_boost),
                _count(p.compliance.road_users),
                f"{p.compliance.dark_user_seconds:,.0f}",
                _count(p.commands),
                _count(p.switch_ons),
                _hours(p.burning_hours),
            ]
        )
        classes.append("current" if is_current else "")
    note = (
        '<p class="note">Totals over all nights. Savings are shares of the reference energy; '
        "a negative saving means the policy used more. Burning hours are lamp-hours lit.</p>"
    )
    return _table(headers, rows, set(range(1, len(headers))), classes) + note


def _nights_html(report: SimulationReport) -> str:
    headers = [
        "night",
        "policy",
        "energy (kWh)",
        f"cost ({report.currency})",
        "CO2 (kg)",
        "below required (% of user time)",
        "commands",
    ]
    rows = [
        [
            n.night,
            n.policy,
            _kwh(n.energy_kwh),
            _money(n.cost),
            _kg(n.co2_kg),
            _pct(n.below_required_share),
            _count(n.commands),
        ]
        for n in report.per_night
    ]
    return _table(headers, rows, {2, 3, 4, 5, 6})


def _streets_html(report: SimulationReport) -> str:
    headers = ["street", "lamps", "energy (kWh)", "below required (% of user time)"]
    parts = []
    for p in report.policies:
        # Ties broken by name so the listing is stable between runs.
        ranked = sorted(p.per_street, key=lambda s: (-s.energy_kwh, s.street))[:TOP_STREETS]
        rows = [
            [s.street, _count(s.lamps), _kwh(s.energy_kwh), _pct(s.below_required_share)]
            for s in ranked
        ]
        shown = f"{len(ranked)} of {len(p.per_street)} streets"
        parts.append(f"<h3>{_esc(p.policy)} <small>({_esc(shown)})</small></h3>")
        parts.append(_table(headers, rows, {1, 2, 3}))
    return "\n".join(parts) or '<p class="note">No policies.</p>'


def _notes_html(report: SimulationReport) -> str:
    if not report.demand_notes:
        return '<p class="note">No gaps or bad values were found in the count sources.</p>'
    items = "".join(f"<li>{_esc(note)}</li>" for note in report.demand_notes)
    return f"<ul>{items}</ul>"


def _timing_html(report: SimulationReport) -> str:
    share = "—" if report.wall_s <= 0.0 else f"{report.kernel_s / report.wall_s * 100.0:.1f}"
    rows = [
        ["wall time (s)", f"{report.wall_s:,.2f}"],
        ["in the dimming kernels (s)", f"{report.kernel_s:,.2f}"],
        [
            "everything else: loading, accounting, Python (s)",
            f"{report.wall_s - report.kernel_s:,.2f}",
        ],
        ["kernel share of wall time (%)", share],
    ]
    return _table(["", "value"], rows, {1})


# --- everything ---------------------------------------------------------------------------------


def write_all(report: SimulationReport, out_dir: PathLike) -> dict[str, Path]:
    """Write every output of ``report`` into ``out_dir`` and return the paths by name.

    ``json`` (``report.json``), ``schema`` (``report.schema.json``), ``html`` (``report.html``)
    and each chart under its ``render_charts`` name (``charts/<name>.png``). Charts of an earlier
    run with more heat maps are not removed: give each run its own directory.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # JSON first: if the report cannot be written faithfully, nothing else should pretend it was.
    paths = {"json": write_json(report, out / JSON_NAME), "schema": write_schema(out / SCHEMA_NAME)}
    charts = render_charts(report, out / CHARTS_DIR)
    paths["html"] = render_html(report, out / HTML_NAME, charts)
    return {**paths, **charts}


# --- terminal ----------------------------------------------------------------------------------


def print_comparison(report: SimulationReport, console: Console) -> None:
    """Print the policies side by side as a rich table.

    Names are passed as ``Text``, so brackets in a policy name print as typed instead of being
    read as rich markup.
    """
    table = Table(
        title=Text(f"Policies: {report.scenario}, {len(report.nights)} night(s)"),
        caption=Text(
            f"all-night reference {_kwh(report.all_night_energy_kwh)} kWh; current policy: "
            f"{report.current_policy or 'none given'}"
        ),
    )
    table.add_column("policy", overflow="fold", min_width=12)
    for header in (
        "energy (kWh)",
        "saving vs all-night (%)",
        "saving vs current (%)",
        f"cost ({report.currency})",
        "CO2 (kg)",
        "below required (%)",
        "users before boost",
        "commands",
    ):
        table.add_column(Text(header), justify="right")
    for p in report.policies:
        is_current = p.policy == report.current_policy
        table.add_row(
            Text(
                p.policy + (" (current)" if is_current else ""), style="bold" if is_current else ""
            ),
            _kwh(p.energy_kwh),
            _pct(p.saving_vs_all_night_frac),
            _pct(p.saving_vs_current_frac),
            _money(p.cost),
            _kg(p.co2_kg),
            _pct(p.compliance.below_required_share),
            _count(p.compliance.users_before_boost),
            _count(p.commands),
        )
    console.print(table)
