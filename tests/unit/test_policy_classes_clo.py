"""EN 13201 class ratios, safety floors and constant light output."""

from __future__ import annotations

import numpy as np
import pytest

from controller.policy import DEFAULT_FLOOR_FRAC, clo_drive_frac, light_ratio, llmf
from controller.policy.classes import class_factor_row, max_steps_down, stepped_class
from domain.records import LightingClass as LC


def test_light_ratios_follow_the_en13201_averages() -> None:
    assert light_ratio(LC.P4, LC.P5) == pytest.approx(0.6)  # 3 lx / 5 lx
    assert light_ratio(LC.P4, LC.P6) == pytest.approx(0.4)  # 2 lx / 5 lx
    assert light_ratio(LC.M3, LC.M4) == pytest.approx(0.75)  # 0.75 / 1.0 cd/m2
    assert light_ratio(LC.C0, LC.C2) == pytest.approx(0.4)  # 20 / 50 lx
    with pytest.raises(ValueError, match="adaptive steps stay within one series"):
        light_ratio(LC.M3, LC.P1)


def test_steps_stop_at_the_series_bottom_and_at_min_class() -> None:
    assert max_steps_down(LC.P4) == 2
    assert max_steps_down(LC.P4, LC.P5) == 1
    assert max_steps_down(LC.P4, LC.P3) == 0  # a min_class brighter than the lamp: no steps
    assert max_steps_down(LC.C0) == 5
    assert stepped_class(LC.P5, 3) is LC.P6
    assert class_factor_row(LC.P4, 3, LC.P5) == pytest.approx((1.0, 0.6, 0.6, 0.6))
    assert class_factor_row(LC.M6, 2) == (1.0, 1.0, 1.0)


def test_default_floors_meet_the_lowest_class_of_each_series() -> None:
    expected = {
        LC.M1: 0.15, LC.M2: 0.2, LC.M3: 0.3, LC.M4: 0.4, LC.M5: 0.6, LC.M6: 1.0,
        LC.C0: 0.15, LC.C1: 0.25, LC.C2: 0.375, LC.C3: 0.5, LC.C4: 0.75, LC.C5: 1.0,
        LC.P1: 2 / 15, LC.P2: 0.2, LC.P3: 2 / 7.5, LC.P4: 0.4, LC.P5: 2 / 3, LC.P6: 1.0,
    }  # fmt: skip
    assert set(DEFAULT_FLOOR_FRAC) == set(LC)
    for cls, floor in expected.items():
        assert DEFAULT_FLOOR_FRAC[cls] == pytest.approx(floor), cls


def test_llmf_is_linear_to_rated_life_and_beyond() -> None:
    hours = np.array([0.0, 25_000.0, 50_000.0, 100_000.0, 150_000.0])
    np.testing.assert_allclose(
        llmf(hours, rated_life_h=50_000, llmf_at_rated_life=0.8), [1.0, 0.9, 0.8, 0.6, 0.4]
    )


def test_clo_drive_starts_at_the_maintenance_factor_and_reaches_full_at_rated_life() -> None:
    hours = np.array([0.0, 50_000.0, 100_000.0, 120_000.0, np.nan])
    drive = clo_drive_frac(
        hours, maintenance_factor=0.8, rated_life_h=100_000, llmf_at_rated_life=0.8
    )
    np.testing.assert_allclose(drive, [0.8, 0.8 / 0.9, 1.0, 1.0, 1.0], rtol=1e-6)
    assert drive.dtype == np.float32
    # A design factor above the end-of-life LLMF reaches full drive before rated life.
    early = clo_drive_frac(
        np.array([0.0, 40_000.0, 60_000.0]),
        maintenance_factor=0.9,
        rated_life_h=100_000,
        llmf_at_rated_life=0.8,
    )
    np.testing.assert_allclose(early, [0.9, 0.9 / 0.92, 1.0], rtol=1e-6)


def test_clo_refuses_impossible_inputs() -> None:
    with pytest.raises(ValueError, match="operating_hours must be finite hours >= 0"):
        clo_drive_frac(
            np.array([-1.0]), maintenance_factor=0.8, rated_life_h=1e5, llmf_at_rated_life=0.8
        )
    with pytest.raises(ValueError, match=r"maintenance_factor must be within \(0, 1\]"):
        clo_drive_frac(
            np.array([1.0]), maintenance_factor=1.5, rated_life_h=1e5, llmf_at_rated_life=0.8
        )
