"""parse_wattage on the forms council inventories actually contain (Champaign's among them)."""

from __future__ import annotations

import pytest

from domain.wattage import MAX_POLE_POWER_W, WattageParse, WattageStatus, parse_wattage


@pytest.mark.parametrize(
    ("text", "power_w", "heads_w", "hint"),
    [
        ("250", 250.0, (250.0,), ""),
        ("  100 ", 100.0, (100.0,), ""),
        ("250/85", 335.0, (250.0, 85.0), ""),
        ("250 / 100", 350.0, (250.0, 100.0), ""),
        ("150+70", 220.0, (150.0, 70.0), ""),
        ("286(LED)", 286.0, (286.0,), "LED"),
        ("66 (LED)", 66.0, (66.0,), "LED"),
        ("286(LED)/85", 371.0, (286.0, 85.0), "LED"),
        ("286(LED)/66(LED)", 352.0, (286.0, 66.0), "LED"),
        ("150 HPS/70 led", 220.0, (150.0, 70.0), "HPS/LED"),
        ("100W", 100.0, (100.0,), ""),
        ("100 w", 100.0, (100.0,), ""),
        ("35 watts", 35.0, (35.0,), ""),
        ("1,000", 1000.0, (1000.0,), ""),
        ("1,000.5W", 1000.5, (1000.5,), ""),
        ("1.5kW", 1500.0, (1500.0,), ""),
        ("150 W HPS", 150.0, (150.0,), "HPS"),
        ("70W (SON-T)", 70.0, (70.0,), "SON-T"),
        ("55 Metal  Halide", 55.0, (55.0,), "METAL HALIDE"),
        ("12.5", 12.5, (12.5,), ""),
        (".5", 0.5, (0.5,), ""),
        ("5000", 5000.0, (5000.0,), ""),
    ],
)
def test_parses_council_forms(
    text: str, power_w: float, heads_w: tuple[float, ...], hint: str
) -> None:
    assert parse_wattage(text) == WattageParse(power_w, heads_w, hint, WattageStatus.OK, "")


@pytest.mark.parametrize(
    "text",
    ["", "   ", "Not Specified", "not  specified", "N/A", "n/a", "NA", "unknown", "-", "nan"],
)
def test_blanks_and_placeholders_are_missing_not_errors(text: str) -> None:
    parsed = parse_wattage(text)
    assert parsed.status is WattageStatus.MISSING
    assert str(parsed.status) == "missing"  # a StrEnum, so it serialises as the brief names it
    assert parsed.power_w is None
    assert parsed.heads_w == ()
    assert parsed.reason == "no wattage given"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "abc",
            "'abc' is not a wattage; write watts as a number such as '250', '250/85' or '66 (LED)'",
        ),
        ("-250", "wattage must be positive, got '-250'"),
        ("0", "wattage must be positive, got '0'"),
        ("0.0W", "wattage must be positive, got '0.0W'"),
        ("250/0", "wattage must be positive, got '0'"),
        (
            "6000",
            "'6000' is 6000 W, more than the 5000 W one pole can draw; "
            "check the unit (kW or W) and the digits",
        ),
        (
            "3000/2500",
            "'3000/2500' is 5500 W, more than the 5000 W one pole can draw; "
            "check the unit (kW or W) and the digits",
        ),
        (
            "250/",
            "'250/' has an empty lamp head around a '/' or '+'; "
            "write watts as a number such as '250', '250/85' or '66 (LED)'",
        ),
        (
            "250 approx",
            "unrecognised text 'approx' after '250' in '250 approx'; "
            "expected only a unit (W, kW) or a lamp type such as LED or HPS",
        ),
        (
            "1,5",
            "unrecognised text ',5' after '1' in '1,5'; "
            "expected only a unit (W, kW) or a lamp type such as LED or HPS",
        ),
    ],
)
def test_garbage_is_an_error_with_a_reason(text: str, reason: str) -> None:
    assert parse_wattage(text) == WattageParse(None, (), "", WattageStatus.ERROR, reason)


def test_limit_is_inclusive_and_checked_on_the_pole_total() -> None:
    assert parse_wattage(f"{MAX_POLE_POWER_W:g}").status is WattageStatus.OK
    assert parse_wattage("2500/2500").power_w == MAX_POLE_POWER_W
    assert parse_wattage("2500/2501").status is WattageStatus.ERROR


def test_absurdly_long_numbers_are_errors_not_infinities() -> None:
    parsed = parse_wattage("9" * 400)
    assert parsed.status is WattageStatus.ERROR
    assert "inf W" in parsed.reason


def test_result_is_frozen() -> None:
    parsed = parse_wattage("100")
    with pytest.raises(AttributeError):
        parsed.power_w = 5.0  # type: ignore[misc]
