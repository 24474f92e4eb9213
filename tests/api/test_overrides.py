"""Overrides with expiry and cancellation, what the controller reads, alarms and gateways."""

from __future__ import annotations

import pytest

from api.db import (
    active_overrides,
    inventory_lamps,
    lamp_gateways,
    record_alarm,
    record_gateway_status,
)
from controller.policy import OverrideTable
from tests.api.conftest import Api, assert_problem, make_group

S = 1_000_000_000


def _override(api: Api, **body: object) -> dict[str, object]:
    response = api.client.post("/api/v1/overrides", json=body, headers=api.north.engineer)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _levels(api: Api, at_ns: int) -> dict[str, float | None]:
    """Levels the controller would apply at ``at_ns``, from what the store hands it now."""
    with api.app.state.ctx.sessions() as session:
        lamps = inventory_lamps(session, "north")
        overrides = active_overrides(session, "north", api.clock())
    table = OverrideTable(
        [lamp.lamp_id for lamp in lamps], [lamp.group for lamp in lamps], overrides
    )
    levels = table.apply(at_ns).tolist()
    return {
        lamp.lamp_id: (None if level != level else round(level, 3))
        for lamp, level in zip(lamps, levels, strict=True)
    }


def test_override_runs_until_its_expiry(api: Api) -> None:
    make_group(api, api.north, "g", ["L1", "L2"])
    made = _override(api, lamp_id="L1", level_frac=0.3, duration_s=600, reason="road works")
    assert made["state"] == "active"
    assert made["expires_ns"] == api.clock() + 600 * S
    assert _levels(api, api.clock()) == {"L1": 0.3, "L2": None}
    api.clock.advance(599)
    listed = api.client.get("/api/v1/overrides", headers=api.north.viewer).json()
    assert [o["id"] for o in listed["items"]] == [made["id"]]
    api.clock.advance(1)
    assert api.client.get("/api/v1/overrides", headers=api.north.viewer).json()["total"] == 0
    expired = api.client.get(
        "/api/v1/overrides", params={"state": "expired"}, headers=api.north.viewer
    ).json()
    assert [o["state"] for o in expired["items"]] == ["expired"]
    assert _levels(api, api.clock()) == {"L1": None, "L2": None}
    with api.app.state.ctx.sessions() as session:
        assert active_overrides(session, "north", api.clock()) == []


def test_group_override_pending_then_active_and_latest_wins(api: Api) -> None:
    group_id = make_group(api, api.north, "g", ["L1", "L2"])
    start = api.clock() + 60 * S
    group = _override(
        api, group_id=group_id, level_frac=1.0, starts_ns=start, expires_ns=start + 3600 * S
    )
    assert (group["state"], group["group_name"]) == ("pending", "g")
    api.clock.advance(30)
    lamp = _override(api, lamp_id="L2", level_frac=0.5, duration_s=120)
    assert _levels(api, api.clock()) == {"L1": None, "L2": 0.5}
    api.clock.advance(60)
    # The group override started after the lamp override was issued, but was issued before it:
    # the lamp override is the latest on L2.
    assert _levels(api, api.clock()) == {"L1": 1.0, "L2": 0.5}
    api.clock.advance(100)
    # The lamp override expired; the older group override does not come back on L2 (TALQ).
    assert _levels(api, api.clock()) == {"L1": 1.0, "L2": None}
    states = {
        o["id"]: o["state"]
        for o in api.client.get(
            "/api/v1/overrides", params={"state": "all"}, headers=api.north.viewer
        ).json()["items"]
    }
    assert states == {group["id"]: "active", lamp["id"]: "expired"}


def test_cancel_ends_an_override_and_is_audited(api: Api) -> None:
    make_group(api, api.north, "g", ["L1"])
    made = _override(api, lamp_id="L1", level_frac=0.2)
    assert made["expires_ns"] is None
    api.clock.advance(10)
    cancelled = api.client.delete(
        f"/api/v1/overrides/{made['id']}", headers=api.north.engineer
    ).json()
    assert (cancelled["state"], cancelled["cancelled_by"]) == ("cancelled", "user:north-engineer")
    assert cancelled["expires_ns"] == api.clock()
    assert _levels(api, api.clock()) == {"L1": None}
    assert_problem(
        api.client.delete(f"/api/v1/overrides/{made['id']}", headers=api.north.engineer),
        409,
        "the override has already ended (cancelled)",
    )
    audit = api.client.get(
        "/api/v1/audit", params={"target": "lamp:L1"}, headers=api.north.viewer
    ).json()
    assert [(e["action"], e["actor"]) for e in audit["items"]][:2] == [
        ("override.cancel", "user:north-engineer"),
        ("override.create", "user:north-engineer"),
    ]
    assert audit["items"][1]["detail"]["level_frac"] == 0.2


def test_cancelled_pending_override_never_hides_an_older_one(api: Api) -> None:
    make_group(api, api.north, "g", ["L1"])
    _override(api, lamp_id="L1", level_frac=0.4, duration_s=3600)
    pending = _override(api, lamp_id="L1", level_frac=0.9, starts_ns=api.clock() + 600 * S)
    assert _levels(api, api.clock()) == {"L1": None}  # the newer one already replaced it
    api.client.delete(f"/api/v1/overrides/{pending['id']}", headers=api.north.engineer)
    assert _levels(api, api.clock()) == {"L1": 0.4}


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"level_frac": 0.5},
            [{"where": "body", "message": "give exactly one of lamp_id and group_id"}],
        ),
        (
            {"lamp_id": "L1", "level_frac": 0.5, "duration_s": 5, "expires_ns": 10**18},
            [{"where": "body.duration_s", "message": "give expires_ns or duration_s, not both"}],
        ),
    ],
)
def test_bad_overrides(api: Api, body: dict[str, object], errors: list[dict[str, str]]) -> None:
    assert_problem(
        api.client.post("/api/v1/overrides", json=body, headers=api.north.engineer),
        422,
        "the override is invalid",
        errors,
    )


def test_override_ending_before_it_starts(api: Api) -> None:
    make_group(api, api.north, "g", ["L1"])
    assert_problem(
        api.client.post(
            "/api/v1/overrides",
            json={"lamp_id": "L1", "level_frac": 0.5, "expires_ns": api.clock() - 1},
            headers=api.north.engineer,
        ),
        422,
        "the override would end before it starts",
        [
            {
                "where": "body.expires_ns",
                "message": f"{api.clock() - 1} is not after the start {api.clock()}; an override "
                "must last some time (omit expiry for none)",
            }
        ],
    )


def test_level_out_of_range(api: Api) -> None:
    body = assert_problem(
        api.client.post(
            "/api/v1/overrides",
            json={"lamp_id": "L1", "level_frac": 1.5},
            headers=api.north.engineer,
        ),
        422,
        "the request is invalid (1 problem(s))",
    )
    assert body["errors"] == [
        {"where": "body.level_frac", "message": "Input should be less than or equal to 1"}
    ]


def test_alarms_and_gateways_recorded_by_the_composition_root(api: Api) -> None:
    make_group(api, api.north, "g", ["L1"])
    api.client.patch("/api/v1/lamps/L1", json={"gateway_id": "gw-1"}, headers=api.north.engineer)
    now = api.clock()
    with api.app.state.ctx.sessions() as session:
        record_gateway_status(session, "north", "gw-1", "online", now - 10 * S, {"queue": 0})
        record_gateway_status(session, "north", "gw-1", "offline", now - 20 * S)  # late, older
        record_alarm(
            session,
            "north",
            alarm_id="a1",
            kind="day_burner",
            started_ns=now - 5 * S,
            lamp_id="L1",
            detail="lit at noon",
        )
        record_alarm(
            session,
            "north",
            alarm_id="a1",
            kind="day_burner",
            started_ns=now - 5 * S,
            lamp_id="L1",
            detail="lit at noon",
        )
        record_alarm(
            session,
            "north",
            alarm_id="a2",
            kind="unreachable",
            started_ns=now - 9 * S,
            ended_ns=now - 1 * S,
            gateway_id="gw-1",
        )
        with pytest.raises(
            ValueError, match="alarm 'a3' names neither a lamp nor a gateway; give one"
        ):
            record_alarm(session, "north", alarm_id="a3", kind="cycling", started_ns=now)
        session.commit()
        assert lamp_gateways(session, "north") == {"L1": "gw-1"}
    gateway = api.client.get("/api/v1/gateways/gw-1", headers=api.north.viewer).json()
    assert gateway == {
        "gateway_id": "gw-1",
        "status": "online",
        "last_seen_ns": now - 10 * S,
        "online": True,
        "lamps": 1,
        "detail": {"queue": 0},
    }
    api.clock.advance(301)
    assert (
        api.client.get("/api/v1/gateways", headers=api.north.viewer).json()["items"][0]["online"]
        is False
    )
    open_alarms = api.client.get("/api/v1/alarms", headers=api.north.viewer).json()
    assert [(a["alarm_id"], a["kind"], a["open"]) for a in open_alarms["items"]] == [
        ("a1", "day_burner", True)
    ]
    every = api.client.get(
        "/api/v1/alarms", params={"state": "all"}, headers=api.north.viewer
    ).json()
    assert every["total"] == 2
    with api.app.state.ctx.sessions() as session:
        record_alarm(
            session,
            "north",
            alarm_id="a1",
            kind="day_burner",
            started_ns=now - 5 * S,
            ended_ns=now,
            lamp_id="L1",
        )
        session.commit()
    assert api.client.get("/api/v1/alarms", headers=api.north.viewer).json()["total"] == 0
