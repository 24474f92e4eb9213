"""Live status, series and the energy and compliance reports, read from a real
EmbeddedHistorian that the test writes readings into."""

from __future__ import annotations

import datetime as dt

from api.db import record_alarm
from domain.records import Reading, ReadingKind
from tests.api.conftest import Api, assert_problem, lamp_body, make_group, make_policy

UTC = dt.UTC


def ns(text: str) -> int:
    """UTC epoch ns of an ISO time (London is on GMT in early March 2026)."""
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 10**9


def _write(api: Api, *rows: tuple[str, ReadingKind, float, str]) -> None:
    api.historian.write([Reading(lamp, kind, value, ns(at)) for lamp, kind, value, at in rows])


def _seed(api: Api) -> int:
    group_id = make_group(api, api.north, "g", ["L1", "L2"])
    api.client.post("/api/v1/lamps", json=lamp_body("L9"), headers=api.north.engineer)
    policy_id = make_policy(api, api.north)
    activated = api.client.post(
        f"/api/v1/policies/{policy_id}/versions/1/activate",
        json={"group_id": group_id},
        headers=api.north.engineer,
    )
    assert activated.status_code == 201
    L, P, E, W, S = (
        ReadingKind.LEVEL_FRAC,
        ReadingKind.PRESENCE,
        ReadingKind.ENERGY_WH,
        ReadingKind.POWER_W,
        ReadingKind.STATUS,
    )
    _write(
        api,
        ("L1", E, 1000.0, "2026-03-01T18:00"),
        ("L1", L, 0.3, "2026-03-01T20:00"),
        ("L1", P, 1.0, "2026-03-01T20:05"),
        ("L1", P, 1.0, "2026-03-01T20:30"),
        ("L1", L, 0.8, "2026-03-01T21:00"),
        ("L1", W, 28.5, "2026-03-01T21:00"),
        ("L1", P, 1.0, "2026-03-01T21:10"),
        ("L1", E, 1100.0, "2026-03-01T23:00"),
        ("L1", P, 1.0, "2026-03-01T23:30"),
        ("L1", L, 0.0, "2026-03-02T02:00"),
        ("L1", P, 1.0, "2026-03-02T02:10"),
        ("L1", S, 5.0, "2026-03-02T02:00"),
        ("L1", E, 1150.0, "2026-03-02T06:00"),
        ("L1", E, 1200.0, "2026-03-02T20:00"),
        ("L2", E, 500.0, "2026-03-01T18:00"),
        ("L2", E, 530.0, "2026-03-01T22:00"),
        ("L2", P, 1.0, "2026-03-01T22:00"),
        ("L9", E, 10.0, "2026-03-01T18:00"),
        ("L9", E, 12.5, "2026-03-01T19:00"),
    )
    return group_id


def test_live_status_joins_telemetry_overrides_and_alarms(api: Api) -> None:
    group_id = _seed(api)
    api.client.post(
        "/api/v1/overrides",
        json={"group_id": group_id, "level_frac": 0.9},
        headers=api.north.engineer,
    )
    with api.app.state.ctx.sessions() as session:
        record_alarm(
            session,
            "north",
            alarm_id="x1",
            kind="lamp_failure",
            started_ns=api.clock(),
            lamp_id="L1",
        )
        session.commit()
    page = api.client.get(
        "/api/v1/live/lamps", params={"group_id": group_id}, headers=api.north.viewer
    ).json()
    assert page["total"] == 2
    l1, l2 = page["items"]
    assert l1 == {
        "lamp_id": "L1",
        "group_name": "g",
        "gateway_id": "",
        "level_frac": 0.0,
        "power_w": 28.5,
        "energy_wh": 1200.0,
        "status": 5,
        "status_flags": ["lamp_failure", "comms_fault"],
        "time_ns": ns("2026-03-02T20:00"),
        "override_level_frac": 0.9,
        "open_alarms": ["lamp_failure"],
    }
    assert (l2["level_frac"], l2["energy_wh"], l2["override_level_frac"], l2["open_alarms"]) == (
        None,
        530.0,
        0.9,
        [],
    )
    single = api.client.get("/api/v1/live/lamps/L9", headers=api.north.viewer).json()
    assert (single["override_level_frac"], single["energy_wh"]) == (None, 12.5)


def test_series_of_one_lamp(api: Api) -> None:
    _seed(api)
    response = api.client.get(
        "/api/v1/live/lamps/L1/series",
        params={
            "kind": "level_frac",
            "start_ns": ns("2026-03-01T00:00"),
            "end_ns": ns("2026-03-02T00:00"),
        },
        headers=api.north.viewer,
    )
    assert response.json() == [[ns("2026-03-01T20:00"), 0.3], [ns("2026-03-01T21:00"), 0.8]]
    assert_problem(
        api.client.get(
            "/api/v1/live/lamps/L1/series",
            params={"kind": "level_frac", "start_ns": 10, "end_ns": 5},
            headers=api.north.viewer,
        ),
        422,
        "the time range is empty",
        [{"where": "query.end_ns", "message": "5 is before start_ns 10"}],
    )


def test_energy_report_by_day_and_group(api: Api) -> None:
    group_id = _seed(api)
    report = api.client.get(
        "/api/v1/reports/energy",
        params={"first_day": "2026-03-01", "last_day": "2026-03-02"},
        headers=api.north.viewer,
    ).json()
    assert report["tz"] == "Europe/London"
    rows = [
        (r["day"], r["group_name"], r["lamps"], r["lamps_reporting"], round(r["energy_kwh"], 6))
        for r in report["rows"]
    ]
    assert rows == [
        ("2026-03-01", "g", 2, 2, 0.13),
        ("2026-03-01", None, 1, 1, 0.0025),
        ("2026-03-02", "g", 2, 1, 0.05),
        ("2026-03-02", None, 1, 0, 0.0),
    ]
    only = api.client.get(
        "/api/v1/reports/energy",
        params={"first_day": "2026-03-02", "last_day": "2026-03-02", "group_id": group_id},
        headers=api.north.viewer,
    ).json()
    assert [(r["group_id"], round(r["energy_kwh"], 6)) for r in only["rows"]] == [(group_id, 0.05)]


def test_compliance_report_judges_detections_at_lit_lamps_against_the_floor(api: Api) -> None:
    group_id = _seed(api)
    report = api.client.get(
        "/api/v1/reports/compliance",
        params={"first_day": "2026-03-01", "last_day": "2026-03-02", "group_id": group_id},
        headers=api.north.viewer,
    ).json()
    first, second = report["rows"]
    # 2026-03-01: five detections; 20:05 and 20:30 at level 0.3 (below P4's floor 0.4), 21:10
    # at 0.8; 23:30 has only a 2.5 h old level, L2 at 22:00 none: three judged.
    assert (first["presence_readings"], first["judged"], first["below_floor"]) == (5, 3, 2)
    assert first["below_floor_share"] == 2 / 3
    assert (first["policy_id"], first["version"]) == (1, 1)
    # 2026-03-02: one detection at a switched-off lamp: not judged.
    assert (second["presence_readings"], second["judged"], second["below_floor_share"]) == (
        1,
        0,
        None,
    )


def test_report_period_is_checked(api: Api) -> None:
    assert_problem(
        api.client.get(
            "/api/v1/reports/energy",
            params={"first_day": "2026-03-02", "last_day": "2026-03-01"},
            headers=api.north.viewer,
        ),
        422,
        "the report period is invalid",
        [{"where": "query.last_day", "message": "2026-03-01 is before first_day 2026-03-02"}],
    )
    assert_problem(
        api.client.get(
            "/api/v1/reports/compliance",
            params={"first_day": "2026-01-01", "last_day": "2026-12-31"},
            headers=api.north.viewer,
        ),
        422,
        "the report period is invalid",
        [
            {
                "where": "query.last_day",
                "message": "the report may cover at most 92 days; shorten it",
            }
        ],
    )
