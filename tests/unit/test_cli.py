"""The streetlight command line: help, clear errors with exit code 2, and real outputs."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from streetlight.cli import app

SAMPLES = Path(__file__).resolve().parents[2] / "streetlight" / "samples"
runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("simulate", "sun", "import", "validate", "night"):
        assert command in result.output


def test_validate_accepts_the_samples_and_lists_problems(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["validate", str(SAMPLES / "policy_part_night.yaml")])
    assert ok.exit_code == 0 and "valid" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\nname: x\nversion: 1\ncalendar: []\nprofiles: {}\n")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "invalid" in result.output


def test_sun_reports_polar_night_without_a_traceback() -> None:
    result = runner.invoke(app, ["sun", "--lat", "69.65", "--lon", "18.96", "--date", "2026-12-21"])
    assert result.exit_code == 0
    assert "polar_night" in result.output
    bad = runner.invoke(app, ["sun", "--lat", "95", "--lon", "0"])
    assert bad.exit_code == 2 and "error:" in bad.output


def test_import_reports_bad_rows_as_json(tmp_path: Path) -> None:
    csv = tmp_path / "lamps.csv"
    csv.write_text("longitude,latitude,watts\n-2.5,51.4,70\nabc,51.4,70\n-2.6,51.5,250/85\n")
    result = runner.invoke(
        app, ["import", str(csv), "--wattage", "watts", "--council", "test", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["rows_read"] == 3 and report["rows_imported"] == 2
    assert report["bad_rows"][0]["row"] == 3
    missing = runner.invoke(app, ["import", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2 and "error:" in missing.output


def test_simulate_writes_the_report(tmp_path: Path) -> None:
    scenario = yaml.safe_load((SAMPLES / "scenario_sample_town.yaml").read_text())
    scenario["inventory"]["sample_town"] = {"streets": 2, "lamps_per_street": 8}
    scenario["policies"] = [{"file": str(SAMPLES / p["file"])} for p in scenario["policies"]]
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    out = tmp_path / "out"
    result = runner.invoke(app, ["simulate", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert [p["policy"] for p in report["policies"]] == [
        "all-night-class-step",
        "residential-part-night",
        "estate-presence-adaptive",
    ]
    assert (out / "report.html").stat().st_size > 10_000
    assert "residential" in result.output  # the comparison table (names fold on narrow terminals)
    assert "saving" in result.output
