"""Invariants of parse_wattage: it never raises, and formatted numbers read back exactly."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from domain.wattage import MAX_POLE_POWER_W, WattageStatus, parse_wattage

# Text built from the characters wattage strings are made of finds more near-misses than
# arbitrary unicode alone.
wattage_like_text = st.text(alphabet="0123456789.,/+-() WwkKLEDHPSna", max_size=20)
whole_watts = st.integers(min_value=1, max_value=int(MAX_POLE_POWER_W))


@given(st.one_of(st.text(), wattage_like_text))
def test_never_raises_and_status_is_consistent(text: str) -> None:
    parsed = parse_wattage(text)
    if parsed.status is WattageStatus.OK:
        assert parsed.power_w is not None
        assert 0.0 < parsed.power_w <= MAX_POLE_POWER_W
        assert all(head > 0.0 for head in parsed.heads_w)
        assert math.isclose(parsed.power_w, sum(parsed.heads_w))
        assert parsed.reason == ""
    else:
        assert parsed.power_w is None
        assert parsed.heads_w == ()
        assert parsed.reason


@given(
    whole_watts,
    st.sampled_from(
        ["{w}", "{w}W", "{w} W", "{w:,}", "{w:,} w", " {w}(LED) ", "{w} (HPS)", "{w}.0"]
    ),
)
def test_whole_watts_round_trip(power_w: int, template: str) -> None:
    parsed = parse_wattage(template.format(w=power_w))
    assert parsed.status is WattageStatus.OK
    assert parsed.power_w == power_w
    assert parsed.heads_w == (power_w,)


@given(st.integers(min_value=1, max_value=int(MAX_POLE_POWER_W) * 100))
def test_decimal_watts_round_trip(centiwatts: int) -> None:
    text = f"{centiwatts / 100:.2f}"
    assert parse_wattage(text).power_w == float(text)


@given(st.lists(st.integers(min_value=1, max_value=1000), min_size=1, max_size=5), st.booleans())
def test_combined_heads_round_trip(heads_w: list[int], spaced: bool) -> None:
    text = (" / " if spaced else "/").join(str(head) for head in heads_w)
    parsed = parse_wattage(text)
    assert parsed.status is WattageStatus.OK
    assert parsed.heads_w == tuple(float(head) for head in heads_w)
    assert parsed.power_w == sum(heads_w)


@given(whole_watts)
def test_negative_numbers_are_errors(power_w: int) -> None:
    parsed = parse_wattage(f"-{power_w}")
    assert parsed.status is WattageStatus.ERROR
    assert parsed.reason == f"wattage must be positive, got '-{power_w}'"


@given(st.integers(min_value=int(MAX_POLE_POWER_W) + 1, max_value=10**9))
def test_values_above_the_pole_limit_are_errors(power_w: int) -> None:
    assert parse_wattage(str(power_w)).status is WattageStatus.ERROR
