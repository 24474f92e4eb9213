"""Report outputs: JSON round trip, schema, PNG charts, the offline HTML page, the rich table."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from rich.console import Console

from simulation.report import (
    HTML_NAME,
    JSON_NAME,
    PNG_SIGNATURE,
    SCHEMA_NAME,
    ReportFileError,
    print_comparison,
    read_json,
    render_charts,
    render_html,
    write_all,
    write_json,
)
from simulation.results import (
    Compliance,
    Heatmap,
    NightFigures,
    PolicyFigures,
    SimulationReport,
    StreetFigures,
)

HOURS = [f"{h:02d}:00" for h in (*range(16, 24), *range(0, 8))]
NIGHTS = ["2024-11-05", "2024-11-06"]
STREETS = [f"Street {i:02d}" for i in range(1, 26)]
HOSTILE = "<script>alert(1)</script>"
# Unbalanced mathtext: matplotlib raises on it unless the '$' are escaped.
DOLLARS = r"cheap $\frac night"


def _policy(name: str, version: int, scale: float, share: float, users: int) -> PolicyFigures:
    """One policy whose totals are consistent with its per-hour and per-street figures."""
    by_hour = [round(40.0 * scale * (1.0 if h < 8 else 0.8), 3) for h in range(len(HOURS))]
    energy = sum(by_hour)
    all_night = 40.0 * len(HOURS)
    weights = np.arange(1, len(STREETS) + 1, dtype=np.float64)
    return PolicyFigures(
        policy=name,
        policy_version=version,
        energy_kwh=energy,
        cost=energy * 0.245,
        co2_kg=energy * 0.20705,
        saving_vs_all_night_frac=1.0 - energy / all_night,
        saving_vs_current_frac=None if name == "all-night" else 1.0 - scale,
        compliance=Compliance(
            road_users=1840,
            user_seconds=96_000.0,
            below_required_user_seconds=96_000.0 * share,
            below_required_share=share,
            users_before_boost=users,
            dark_user_seconds=0.0,
        ),
        commands=int(1200 * scale),
        switch_ons=480,
        burning_hours=4800.0 * scale,
        energy_by_hour_kwh=by_hour,
        below_required_share_by_hour=[share * (1.5 if h > 8 else 0.5) for h in range(len(HOURS))],
        # Energy grows with the street number, so the top 20 are Street 06 .. Street 25.
        per_street=[
            StreetFigures(
                street=street,
                lamps=10 + i,
                energy_kwh=energy * w / weights.sum(),
                below_required_share=share,
            )
            for i, (street, w) in enumerate(zip(STREETS, weights, strict=True))
        ],
    )


def _report(
    names: tuple[str, str, str] = ("all-night", "part-night 00-05", "presence 30 %"),
) -> SimulationReport:
    policies = [
        _policy(names[0], 1, 1.0, 0.0, 0),
        _policy(names[1], 3, 0.78, 0.062, 0),
        _policy(names[2], 2, 0.55, 0.018, 37),
    ]
    per_night = [
        NightFigures(
            night=night,
            policy=p.policy,
            energy_kwh=p.energy_kwh / 2.0,
            cost=p.cost / 2.0,
            co2_kg=p.co2_kg / 2.0,
            below_required_share=p.compliance.below_required_share,
            commands=p.commands // 2,
        )
        for night in NIGHTS
        for p in policies
    ]
    rng = np.random.default_rng(7)
    heatmaps = [
        Heatmap(
            policy=policies[2].policy,
            night=NIGHTS[0],
            lamp_ids=[f"LDS-{i:05d}" for i in range(6)],
            bin_s=1800.0,
            first_bin_local="2024-11-05T16:30:00",
            level_frac=np.round(rng.uniform(0.3, 1.0, (6, 28)), 3).tolist(),
        ),
        Heatmap(
            policy=policies[1].policy,
            night=NIGHTS[1],
            lamp_ids=[f"LDS-{i:05d}" for i in range(4)],
            bin_s=900.0,
            first_bin_local="16:45",
            level_frac=[[1.0] * 30 + [0.0] * 20 + [1.0] * 6 for _ in range(4)],
        ),
    ]
    return SimulationReport(
        scenario="Leeds city centre, early November",
        seed=20241105,
        lamps=sum(s.lamps for s in policies[0].per_street),
        streets=len(STREETS),
        tz="Europe/London",
        nights=NIGHTS,
        hour_labels=HOURS,
        tariff_per_kwh=0.245,
        currency="GBP",
        carbon_kg_per_kwh=0.20705,
        carbon_factor_year=2024,
        current_policy=policies[1].policy,
        all_night_energy_kwh=40.0 * len(HOURS),
        policies=policies,
        per_night=per_night,
        heatmaps=heatmaps,
        demand_notes=[
            "Albion Street North: 3 h gap on 2024-11-05 (sensor offline), filled with the profile"
        ],
        wall_s=12.5,
        kernel_s=3.25,
    )


EXPECTED_CHARTS = {
    "comparison",
    "energy_by_hour",
    "compliance",
    "heatmap_00_presence-30_2024-11-05",
    "heatmap_01_part-night-00-05_2024-11-06",
}


@pytest.fixture(scope="module")
def report() -> SimulationReport:
    return _report()


@pytest.fixture(scope="module")
def written(report: SimulationReport, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_all(report, tmp_path_factory.mktemp("report"))


def test_write_all_names_every_file(written: dict[str, Path]) -> None:
    assert set(written) == {"json", "schema", "html"} | EXPECTED_CHARTS
    out = written["json"].parent
    assert written["json"] == out / JSON_NAME
    assert written["schema"] == out / SCHEMA_NAME
    assert written["html"] == out / HTML_NAME
    assert {p.name for p in (out / "charts").iterdir()} == {f"{n}.png" for n in EXPECTED_CHARTS}


def test_json_round_trips(report: SimulationReport, written: dict[str, Path]) -> None:
    assert read_json(written["json"]) == report
    assert json.loads(written["json"].read_text())["scenario"] == report.scenario


def test_schema_is_json_with_the_report_fields(written: dict[str, Path]) -> None:
    schema = json.loads(written["schema"].read_text())
    assert "properties" in schema
    assert {"policies", "heatmaps", "hour_labels", "schema_version"} <= set(schema["properties"])


def test_charts_are_decodable_pngs(written: dict[str, Path]) -> None:
    for name in EXPECTED_CHARTS:
        path = written[name]
        assert path.read_bytes()[:8] == PNG_SIGNATURE, name
        pixels = imread(path)
        height, width = pixels.shape[:2]
        assert 600 <= width <= 2000, (name, width)
        assert 250 <= height <= 1500, (name, height)
        assert pixels.std() > 0.01, f"{name} is blank"


def test_charts_are_reproducible(
    report: SimulationReport, written: dict[str, Path], tmp_path: Path
) -> None:
    again = render_charts(report, tmp_path)
    assert again["comparison"].read_bytes() == written["comparison"].read_bytes()


def test_html_is_self_contained(written: dict[str, Path]) -> None:
    page = written["html"].read_text(encoding="utf-8")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:[a-z]+:)?//""", page, re.IGNORECASE)
    assert "url(" not in page
    assert "<script" not in page
    assert "<link" not in page
    images = re.findall(r"<img\b[^>]*>", page)
    assert len(images) == len(EXPECTED_CHARTS)
    for tag in images:
        match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', tag)
        assert match, tag[:80]
        assert base64.b64decode(match.group(1))[:8] == PNG_SIGNATURE


def test_html_shows_the_figures(report: SimulationReport, written: dict[str, Path]) -> None:
    page = written["html"].read_text(encoding="utf-8")
    for p in report.policies:
        assert p.policy in page
        assert f"{p.energy_kwh:,.1f}" in page
        assert f"{p.cost:,.2f}" in page
        assert f"{p.saving_vs_all_night_frac * 100:.1f}" in page
    assert "cost (GBP)" in page
    assert "part-night 00-05 (current)" in page
    assert "0.20705 kg CO2 per kWh (factor for 2024)" in page
    assert "Europe/London" in page and "20241105" in page
    for night in NIGHTS:
        assert night in page
    assert "Albion Street North: 3 h gap" in page
    assert "12.50" in page and "3.25" in page and "26.0" in page  # kernel share of wall time
    # Top 20 streets by energy: Street 06 .. Street 25 listed, the five smallest not.
    assert "Street 06" in page and "Street 25" in page
    assert all(f"Street {i:02d}" not in page for i in range(1, 6))
    assert page.count("20 of 25 streets") == 3


def test_hostile_text_is_escaped(tmp_path: Path) -> None:
    report = _report(("all-night", HOSTILE, DOLLARS))
    report = report.model_copy(update={"demand_notes": ['<img src="http://evil.example/x">']})
    paths = write_all(report, tmp_path)
    page = paths["html"].read_text(encoding="utf-8")
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=&quot;http://evil.example/x&quot;&gt;" in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*https?:""", page)
    assert DOLLARS in page  # and its chart labels drew: mathtext would have raised on it
    assert "heatmap_00_cheap-frac-night_2024-11-05" in paths


def test_render_html_draws_its_own_charts(report: SimulationReport, tmp_path: Path) -> None:
    page = render_html(report, tmp_path / "only.html").read_text(encoding="utf-8")
    assert page.count('<img src="data:image/png;base64,') == len(EXPECTED_CHARTS)
    assert list(tmp_path.iterdir()) == [tmp_path / "only.html"]


def test_render_html_refuses_a_chart_that_is_not_png(
    report: SimulationReport, tmp_path: Path
) -> None:
    fake = tmp_path / "fake.png"
    fake.write_text("<svg/>")
    with pytest.raises(ValueError, match=r"'fake' .* is not a PNG"):
        render_html(report, tmp_path / "r.html", {"fake": fake})


def test_print_comparison(report: SimulationReport) -> None:
    console = Console(record=True, width=160)
    print_comparison(report, console)
    text = console.export_text()
    for p in report.policies:
        assert p.policy in text
        assert f"{p.saving_vs_all_night_frac * 100:.1f}" in text
        if p.saving_vs_current_frac is not None:
            assert f"{p.saving_vs_current_frac * 100:.1f}" in text
    assert "—" in text  # all-night has no saving vs current
    assert "cost (GBP)" in text


def test_print_comparison_prints_markup_literally() -> None:
    console = Console(record=True, width=160)
    print_comparison(_report(("[bold]all[/bold]", HOSTILE, "[red]x")), console)
    text = console.export_text()
    assert "[bold]all[/bold]" in text and "[red]x" in text


def test_read_json_says_what_is_wrong(report: SimulationReport, tmp_path: Path) -> None:
    doc = json.loads(report.model_dump_json())
    doc["policies"][1]["energy_kwh"] = "lots"
    del doc["policies"][0]["compliance"]["road_users"]
    doc["heatmaps"][0]["colour"] = "red"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ReportFileError) as caught:
        read_json(path)
    where = {issue.where: issue.message for issue in caught.value.issues}
    assert "valid number" in where["policies[1].energy_kwh"]
    assert "'lots'" in where["policies[1].energy_kwh"]
    assert "required" in where["policies[0].compliance.road_users"].lower()
    assert "heatmaps[0].colour" in where
    assert str(path) in str(caught.value)
    assert "https://" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ('{"scenario": "x",', "line 1 column 18", "not JSON"),
        ('{"schema_version": 2}', "schema_version", "version 2"),
        ("[1, 2]", "(whole document)", "valid dictionary"),
    ],
)
def test_read_json_rejects_unreadable_files(
    tmp_path: Path, text: str, where: str, message: str
) -> None:
    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(ReportFileError) as caught:
        read_json(path)
    assert caught.value.issues[0].where == where
    assert message in caught.value.issues[0].message


def test_read_json_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ReportFileError, match="cannot be read"):
        read_json(tmp_path / "absent.json")


def test_write_json_refuses_nan(report: SimulationReport, tmp_path: Path) -> None:
    policy = report.policies[2]
    broken = policy.model_copy(
        update={
            "compliance": policy.compliance.model_copy(
                update={"below_required_share": float("nan")}
            )
        }
    )
    bad = report.model_copy(update={"policies": [*report.policies[:2], broken]})
    with pytest.raises(ValueError, match=r"policies\[2\]\.compliance\.below_required_share = nan"):
        write_json(bad, tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()


def test_charts_refuse_inconsistent_lengths(report: SimulationReport, tmp_path: Path) -> None:
    short = report.model_copy(update={"hour_labels": HOURS[:-1]})
    with pytest.raises(
        ValueError, match="energy_by_hour_kwh has 16 entries but hour_labels has 15"
    ):
        render_charts(short, tmp_path)
    ragged = report.heatmaps[0].model_copy(
        update={"level_frac": [[0.5, 0.5], [0.5]] + [[0.5, 0.5]] * 4}
    )
    with pytest.raises(ValueError, match="same, non-zero number of time bins"):
        render_charts(report.model_copy(update={"heatmaps": [ragged]}), tmp_path)
    clockless = report.heatmaps[0].model_copy(update={"first_bin_local": "dusk"})
    with pytest.raises(ValueError, match="'dusk' is not a local clock time"):
        render_charts(report.model_copy(update={"heatmaps": [clockless]}), tmp_path)
