"""Lamp health alarms: failure, day burner, cycling, unreachable; raised once, cleared on evidence."""

from __future__ import annotations

import pytest

from controller.health import (
    Alarm,
    AlarmKind,
    AlarmScope,
    HealthConfig,
    HealthError,
    HealthMonitor,
)
from domain.inventory import InventoryArrays
from domain.records import LampCommand, Reading, ReadingKind, StatusFlag
from simulation.sample_town import sample_town

S = 1_000_000_000
#: 2026-01-01T00:00Z: night in Bristol; noon: the sun ~15 deg up.
MIDNIGHT = 1_767_225_600 * S
NOON = MIDNIGHT + 12 * 3600 * S

TOWN: InventoryArrays = sample_town(streets=2, lamps_per_street=3)  # 35-70 W, 0.5 W standby
IDS = [str(x) for x in TOWN.lamp_id]
GATEWAY = {lamp: ("gw-a" if "-00-" in lamp else "gw-b") for lamp in IDS}
A, B, C = IDS[0], IDS[1], IDS[2]  # on gw-a
D = IDS[3]  # on gw-b


def _monitor(started_ns: int = MIDNIGHT, **config: float) -> HealthMonitor:
    return HealthMonitor(TOWN, GATEWAY, config=HealthConfig(**config), started_ns=started_ns)


def power(lamp: str, watts: float, t: int) -> Reading:
    return Reading(lamp, ReadingKind.POWER_W, watts, t)


def everyone_reports(t: int, watts: float = 30.0) -> list[Reading]:
    return [power(lamp, watts, t) for lamp in IDS]


def summary(alarms: list[Alarm]) -> list[tuple[str, str, int, int | None]]:
    return [(a.source_id, a.kind.value, a.started_ns, a.ended_ns) for a in alarms]


def test_commanded_lamp_measured_dark_fails_after_the_grace_and_clears_when_lit() -> None:
    hm = _monitor()
    hm.telemetry(everyone_reports(MIDNIGHT))
    hm.commanded([LampCommand(A, 1.0, ramp_s=2.0, issued_ns=MIDNIGHT)])
    hm.telemetry([power(A, 0.6, MIDNIGHT + 10 * S)])  # standby only: the lamp is out
    assert hm.evaluate(MIDNIGHT + 309 * S) == []
    raised = hm.evaluate(MIDNIGHT + 310 * S)
    assert raised == [
        Alarm(
            alarm_id=f"lamp:{A}:lamp_failure:{MIDNIGHT + 10 * S}",
            source_id=A,
            scope=AlarmScope.LAMP,
            kind=AlarmKind.LAMP_FAILURE,
            started_ns=MIDNIGHT + 10 * S,
            ended_ns=None,
            detail="commanded lit but measured dark for over 300 s after the command's ramp",
        )
    ]
    assert hm.evaluate(MIDNIGHT + 311 * S) == []  # the same ongoing condition: nothing new
    assert hm.active() == raised
    hm.telemetry([power(A, 30.0, MIDNIGHT + 400 * S)])
    cleared = hm.evaluate(MIDNIGHT + 401 * S)
    assert summary(cleared) == [(A, "lamp_failure", MIDNIGHT + 10 * S, MIDNIGHT + 401 * S)]
    assert cleared[0].alarm_id == raised[0].alarm_id
    assert hm.active() == []


def test_a_controller_echoing_its_setpoint_does_not_hide_a_dead_lamp() -> None:
    hm = _monitor()
    hm.telemetry(everyone_reports(MIDNIGHT))
    hm.commanded([LampCommand(B, 0.5, issued_ns=MIDNIGHT)])
    hm.telemetry(
        [
            Reading(B, ReadingKind.LEVEL_FRAC, 0.5, MIDNIGHT + S),  # the setpoint, echoed
            power(B, 0.5, MIDNIGHT + S),  # but only standby power
        ]
    )
    assert summary(hm.evaluate(MIDNIGHT + 301 * S)) == [(B, "lamp_failure", MIDNIGHT + S, None)]


def test_status_bits_raise_failure_and_unreachable_until_they_clear() -> None:
    hm = _monitor()
    hm.telemetry(everyone_reports(MIDNIGHT))
    bits = StatusFlag.DRIVER_FAULT | StatusFlag.OVER_TEMPERATURE
    hm.telemetry(
        [
            Reading(A, ReadingKind.STATUS, float(bits), MIDNIGHT + S),
            Reading(C, ReadingKind.STATUS, float(StatusFlag.COMMS_FAULT | 1 << 7), MIDNIGHT + S),
        ]
    )
    raised = hm.evaluate(MIDNIGHT + 2 * S)
    assert summary(raised) == [
        (A, "lamp_failure", MIDNIGHT + S, None),
        (C, "unreachable", MIDNIGHT + S, None),
    ]
    assert [a.detail for a in raised] == [
        "status reports lamp_failure or driver_fault",
        "status reports comms_fault (the controller cannot reach the driver)",
    ]
    hm.telemetry([Reading(A, ReadingKind.STATUS, 0.0, MIDNIGHT + 5 * S)])
    hm.telemetry([Reading(A, ReadingKind.STATUS, float(bits), MIDNIGHT + 4 * S)])  # late: ignored
    hm.telemetry([Reading(C, ReadingKind.STATUS, 0.0, MIDNIGHT + 5 * S)])
    assert summary(hm.evaluate(MIDNIGHT + 6 * S)) == [
        (A, "lamp_failure", MIDNIGHT + S, MIDNIGHT + 6 * S),
        (C, "unreachable", MIDNIGHT + S, MIDNIGHT + 6 * S),
    ]
    assert hm.counters["readings_late"] == 1


def test_day_burner_is_lit_in_daylight_without_a_command_to_be_lit() -> None:
    hm = _monitor(started_ns=NOON, unreachable_after_s=3600)
    hm.commanded(
        [
            LampCommand(A, 0.0, issued_ns=NOON - 3600 * S),  # switched off at dawn
            LampCommand(B, 1.0, issued_ns=NOON, reason="override"),  # a lamp test by day
        ]
    )
    hm.telemetry(everyone_reports(NOON, watts=0.5))
    hm.telemetry([power(A, 40.0, NOON + S), power(B, 40.0, NOON + S)])
    assert hm.evaluate(NOON) == []
    assert hm.evaluate(NOON + 900 * S) == []
    raised = hm.evaluate(NOON + 901 * S)
    assert summary(raised) == [(A, "day_burner", NOON + S, None)]
    assert raised[0].detail == "lit in daylight (sun above 6 deg) without a command to be lit"
    hm.telemetry([power(A, 0.5, NOON + 1000 * S)])
    assert summary(hm.evaluate(NOON + 1001 * S)) == [(A, "day_burner", NOON + S, NOON + 1001 * S)]
    # Lit at midnight without any command: not a day burner.
    night = _monitor()
    night.telemetry(everyone_reports(MIDNIGHT, watts=40.0))
    assert night.evaluate(MIDNIGHT + 899 * S) == []


def test_day_burner_status_bit() -> None:
    hm = _monitor()
    hm.telemetry(everyone_reports(MIDNIGHT))
    hm.telemetry([Reading(D, ReadingKind.STATUS, float(StatusFlag.DAY_BURNER), MIDNIGHT + S)])
    raised = hm.evaluate(MIDNIGHT + S)
    assert summary(raised) == [(D, "day_burner", MIDNIGHT + S, None)]
    assert raised[0].detail == "status reports day_burner"


def test_cycling_counts_only_switches_no_command_asked_for() -> None:
    hm = _monitor()
    hm.telemetry(everyone_reports(MIDNIGHT))
    hm.commanded([LampCommand(A, 1.0, issued_ns=MIDNIGHT), LampCommand(B, 1.0, issued_ns=MIDNIGHT)])
    t = MIDNIGHT + 100 * S
    for k in range(6):  # A goes out and comes back three times: six switches
        hm.telemetry([power(A, 0.5 if k % 2 == 0 else 35.0, t + k * 60 * S)])
        # B is switched off and on by the controller, and follows each command.
        hm.commanded([LampCommand(B, 0.0 if k % 2 == 0 else 1.0, issued_ns=t + k * 60 * S)])
        hm.telemetry([power(B, 0.5 if k % 2 == 0 else 35.0, t + k * 60 * S + 2 * S)])
    raised = hm.evaluate(t + 301 * S)
    assert summary(raised) == [(A, "cycling", t, None)]
    assert raised[0].detail == "6 on/off switches no command asked for within 1800 s"
    hm.telemetry(everyone_reports(t + 1500 * S, watts=35.0))
    assert hm.evaluate(t + 1800 * S) == []  # the window still holds switches
    hm.telemetry(everyone_reports(t + 2000 * S, watts=35.0))
    assert summary(hm.evaluate(t + 2101 * S)) == [(A, "cycling", t, t + 2101 * S)]


def test_silence_and_offline_gateways_are_unreachable_alarms() -> None:
    hm = _monitor(unreachable_after_s=600)
    hm.telemetry(everyone_reports(MIDNIGHT))
    # Nothing from anybody for 10 min: each gateway is unreachable, not each lamp.
    assert summary(hm.evaluate(MIDNIGHT + 601 * S)) == [
        ("gw-a", "unreachable", MIDNIGHT, None),
        ("gw-b", "unreachable", MIDNIGHT, None),
    ]
    # gw-b's lamps report again except D; gw-a reports online but none of its lamps speak.
    hm.telemetry([power(lamp, 30.0, MIDNIGHT + 700 * S) for lamp in IDS[4:]])
    hm.gateway_status("gw-a", True, MIDNIGHT + 700 * S)
    hm.gateway_status("gw-z", True, MIDNIGHT + 700 * S)
    transitions = hm.evaluate(MIDNIGHT + 701 * S)
    assert summary(transitions) == [
        (A, "unreachable", MIDNIGHT, None),
        (B, "unreachable", MIDNIGHT, None),
        (C, "unreachable", MIDNIGHT, None),
        (D, "unreachable", MIDNIGHT, None),
        ("gw-a", "unreachable", MIDNIGHT, MIDNIGHT + 701 * S),
        ("gw-b", "unreachable", MIDNIGHT, MIDNIGHT + 701 * S),
    ]
    assert transitions[0].detail == "no telemetry for over 600 s"
    assert transitions[-1].scope is AlarmScope.GATEWAY
    assert hm.counters["status_unknown_gateway"] == 1
    # gw-b's last will: the gateway alarm; its lamps' own alarms stay as they are.
    hm.gateway_status("gw-b", False, MIDNIGHT + 800 * S)
    offline = hm.evaluate(MIDNIGHT + 801 * S)
    assert summary(offline) == [("gw-b", "unreachable", MIDNIGHT + 800 * S, None)]
    assert offline[0].detail == "the gateway reported offline"
    hm.gateway_status("gw-b", True, MIDNIGHT + 900 * S)
    hm.telemetry(everyone_reports(MIDNIGHT + 900 * S))
    assert {(a.source_id, a.ended_ns) for a in hm.evaluate(MIDNIGHT + 901 * S)} == {
        (x, MIDNIGHT + 901 * S) for x in (A, B, C, D, "gw-b")
    }
    assert hm.active() == []


def test_lamps_never_heard_are_unreachable_from_the_monitors_start() -> None:
    hm = _monitor()
    hm.telemetry([power(lamp, 30.0, MIDNIGHT + 950 * S) for lamp in IDS if lamp != C])
    assert summary(hm.evaluate(MIDNIGHT + 960 * S)) == [(C, "unreachable", MIDNIGHT, None)]
    assert hm.telemetry([Reading("PIR-1", ReadingKind.PRESENCE, 1.0, MIDNIGHT)]) == 0
    assert hm.counters["readings_unknown_source"] == 1


def test_refuses_bad_setup() -> None:
    with pytest.raises(HealthError) as err:
        HealthMonitor(TOWN, {k: v for k, v in GATEWAY.items() if k != D})
    assert str(err.value) == (
        "1 lamp(s) have no gateway (e.g. sample-01-000); give every lamp of the inventory a "
        "gateway id in gateway_of"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_grace_s": -1.0}, "failure_grace_s must be a number of seconds >= 0, got -1.0"),
        (
            {"unreachable_after_s": 0.0},
            "cycling_window_s and unreachable_after_s must be > 0 seconds",
        ),
        ({"cycling_max_transitions": 0}, "cycling_max_transitions must be >= 1, got 0"),
        ({"lit_power_frac": 1.5}, "lit_power_frac must be within [0, 1), got 1.5"),
        (
            {"daylight_elevation_deg": -91.0},
            "daylight_elevation_deg must be within [-90, 90], got -91.0",
        ),
    ],
)
def test_config_refuses_bad_values(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as err:
        HealthConfig(**kwargs)  # type: ignore[arg-type]
    assert str(err.value) == message
