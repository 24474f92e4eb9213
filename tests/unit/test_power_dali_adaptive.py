"""Power model, DALI curve and adaptive steps: formulas, edge cases and error messages."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.dimming.adaptive import adaptive_steps
from controller.dimming.dali import FADE_TIME_S, arc_to_level, fade_code_for, level_to_arc
from controller.dimming.power import DEFAULT_CURVE, DriverCurve, LampElectrics, lamp_power_w


def model(d: float, a: float = 0.05, c: float = 0.2) -> float:
    return (a + (1 - a) * d) / (1 - c * (1 - d) ** 2)


def test_power_model_matches_formula_between_table_points() -> None:
    levels = np.linspace(0.001, 1.0, 997)
    got = lamp_power_w(levels, 100.0, 0.5)
    want = np.array([0.5 + 100.0 * model(d) for d in levels])
    # Linear interpolation in a 1 % table is within 0.1 W of the smooth model on a 100 W lamp.
    np.testing.assert_allclose(got, want, atol=0.1)
    assert lamp_power_w(1.0, 100.0, 0.5) == pytest.approx(100.5)
    assert lamp_power_w(0.0, 100.0, 0.5) == pytest.approx(0.5)  # off: standby only


def test_power_falls_less_than_light_at_low_levels() -> None:
    p = lamp_power_w(np.array([0.2, 0.5, 1.0]), 100.0)
    assert np.all(np.diff(p) > 0)
    assert p[0] > 20.0  # driver losses: 20 % light costs more than 20 % power


def test_datasheet_points_replace_the_model() -> None:
    curve = DriverCurve(name="ds", points=((0.01, 0.1), (0.5, 0.6), (1.0, 1.0)))
    assert lamp_power_w(0.5, 200.0, 0.0, curve) == pytest.approx(120.0)
    assert lamp_power_w(0.75, 200.0, 0.0, curve) == pytest.approx(160.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(points=((0.5, 0.5), (0.4, 0.6), (1.0, 1.0))), "datasheet levels must increase"),
        (dict(points=((0.2, 0.5), (1.0, 1.0))), "must span 0.01"),
        (dict(points=((0.01, 0.1), (1.0, 0.9))), "1.0 at full output"),
        (dict(fixed_frac=1.2), "fixed_frac must be in"),
    ],
)
def test_bad_driver_curves_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DriverCurve(name="bad", **kwargs)


def test_lamp_power_rejects_out_of_range_levels() -> None:
    with pytest.raises(ValueError, match=r"level_frac must be within \[0, 1\]"):
        lamp_power_w(1.2, 100.0)


def test_electrics_from_inventory_and_validation() -> None:
    e = LampElectrics.uniform(3, 70.0)
    assert e.tables.shape == (1, 101)
    np.testing.assert_allclose(e.tables[0], DEFAULT_CURVE.table())
    with pytest.raises(ValueError, match="rated_power_w must be finite"):
        LampElectrics(np.array([-1.0]), np.array([0.5]), np.zeros(1, np.int32), e.tables)


def test_dali_curve_end_points_and_round_trip() -> None:
    arcs = np.arange(0, 255)
    lv = arc_to_level(arcs)
    assert lv[0] == 0.0
    assert lv[1] == pytest.approx(0.001)
    assert lv[254] == pytest.approx(1.0)
    for n in (1, 86, 170, 254):
        assert lv[n] == pytest.approx(10 ** ((n - 1) / (253 / 3) - 1) / 100)
    np.testing.assert_array_equal(level_to_arc(lv), arcs)
    assert level_to_arc(0.5)[()] == 229  # half light output is arc level 229 on the log curve
    assert math.isclose(arc_to_level(np.array([229]))[0], 0.5, rel_tol=0.03)


def test_dali_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="255 is MASK"):
        arc_to_level(np.array([255]))
    with pytest.raises(ValueError, match="fractions of full light output"):
        level_to_arc(-0.1)


def test_dali_fade_codes() -> None:
    assert fade_code_for(0.0) == 0
    assert fade_code_for(0.7) == 1
    assert fade_code_for(1.2) == 3
    assert fade_code_for(1000.0) == 15
    assert FADE_TIME_S[15] == 90.5


def test_adaptive_hysteresis_example() -> None:
    demand = np.array([[300, 140, 170, 210, 50, 80, 100, np.nan, 40]])
    got = adaptive_steps(demand, [150.0, 60.0], [200.0, 90.0])
    # 140 < 150: one step down; 170 is between down and up: stays; 210 > 200: back to normal;
    # 50 < 60: two steps; 80 < 90: stays at two; 100 > 90 but < 200: one step; NaN: fail bright.
    assert got[0].tolist() == [0, 1, 1, 0, 2, 2, 1, 0, 2]


@pytest.mark.parametrize(
    ("down", "up", "message"),
    [
        ([60.0, 150.0], [90.0, 200.0], "down_per_h must decrease"),
        ([150.0, 60.0], [140.0, 90.0], "up_per_h must exceed down_per_h"),
        ([150.0], [200.0, 90.0], "must both be"),
    ],
)
def test_adaptive_rejects_bad_thresholds(down: list, up: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        adaptive_steps(np.array([[100.0]]), down, up)
