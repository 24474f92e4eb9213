"""A small, generated sample town so that ``make run`` works with no data files.

Streets on a grid around a real place, lamps every ``spacing_m`` metres: residential streets
(class P4, 35 W LED) and two main roads (class P3, 70 W LED). Presence detections follow an
hourly evening footfall shape (busy early evening, quiet small hours), as Poisson arrivals.
Everything is seeded: the same seed gives the same town and the same detections.
"""

from __future__ import annotations

import numpy as np

from domain.inventory import InventoryArrays
from domain.records import Lamp, LightingClass

#: Relative pedestrian activity by local hour (0..23); shape of city footfall counts,
#: night/peak ratio a few percent (DOMAIN.md: Leeds, Melbourne).
HOURLY_ACTIVITY = np.array(
    [
        0.06,
        0.04,
        0.03,
        0.02,
        0.02,
        0.04,
        0.12,
        0.35,
        0.6,
        0.6,
        0.7,
        0.8,
        0.95,
        1.0,
        0.9,
        0.85,
        0.9,
        0.95,
        0.8,
        0.55,
        0.4,
        0.3,
        0.2,
        0.12,
    ]
)


def sample_town(
    *,
    streets: int = 12,
    lamps_per_street: int = 40,
    spacing_m: float = 30.0,
    lat_deg: float = 51.4545,
    lon_deg: float = -2.5879,
    council_id: str = "sample",
) -> InventoryArrays:
    """``streets`` east-west streets of ``lamps_per_street`` lamps each; streets 0 and the middle one are main roads."""
    m_per_deg_lat = 111_320.0
    m_per_deg_lon = m_per_deg_lat * np.cos(np.radians(lat_deg))
    lamps: list[Lamp] = []
    for s in range(streets):
        main = s in (0, streets // 2)
        for k in range(lamps_per_street):
            x_m = k * spacing_m
            y_m = s * 80.0
            lamps.append(
                Lamp(
                    lamp_id=f"{council_id}-{s:02d}-{k:03d}",
                    council_id=council_id,
                    lon_deg=lon_deg + x_m / m_per_deg_lon,
                    lat_deg=lat_deg + y_m / m_per_deg_lat,
                    rated_power_w=70.0 if main else 35.0,
                    standby_power_w=0.5,
                    lighting_class=LightingClass.P3 if main else LightingClass.P4,
                    street=f"{'Main Road' if main else 'Street'} {s}",
                    order_on_street=k,
                    group="main" if main else "residential",
                )
            )
    return InventoryArrays.from_lamps(lamps, council_id)


def sample_detections(
    n_lamps: int,
    start_hour_local: float,
    n_steps: int,
    *,
    per_lamp_per_hour_at_peak: float = 6.0,
    seed: int = 7,
) -> tuple[np.ndarray, np.ndarray]:
    """Presence detections (step, lamp) for ``n_steps`` one-second steps from ``start_hour_local``."""
    rng = np.random.default_rng(seed)
    hours = (start_hour_local + np.arange(n_steps) / 3600.0) % 24.0
    rate_per_s = HOURLY_ACTIVITY[hours.astype(int)] * per_lamp_per_hour_at_peak / 3600.0
    counts = rng.poisson(rate_per_s.sum() * n_lamps)
    steps = rng.choice(n_steps, size=counts, p=rate_per_s / rate_per_s.sum())
    lamps = rng.integers(0, n_lamps, size=counts)
    order = np.argsort(steps, kind="stable")
    return steps[order].astype(np.int64), lamps[order].astype(np.int32)
