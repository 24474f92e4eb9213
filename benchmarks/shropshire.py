"""Worked sanity check against a published result: Shropshire part-night lighting.

Shropshire switched 12,200 of its 18,980 lights (64 %) to part-night and reported about 20 %
energy saving (DOMAIN.md). This replays the 15th of every month of 2026 for a small town at
Shropshire's latitude under an all-night policy and a part-night policy (off 00:00-05:30 local
clock time), then scales the part-night saving by the share of the fleet's energy that the
part-night lamps draw.

    python -m benchmarks.shropshire
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import yaml

from simulation.run import run_scenario
from simulation.scenario import load_scenario

SWITCHING = {
    "on": {"event": "sunset", "offset_min": 0},
    "off": {"event": "sunrise", "offset_min": 0},
}


def _policy(name: str, steps: list[dict[str, object]]) -> dict[str, object]:
    return {
        "schema_version": 1,
        "name": name,
        "version": 1,
        "lighting_classes": ["P3", "P4"],
        "switching": SWITCHING,
        "calendar": [{"profile": "p"}],
        "profiles": {"p": {"steps": steps}},
    }


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    (tmp / "all.yaml").write_text(yaml.safe_dump(_policy("all-night", [])))
    (tmp / "pn.yaml").write_text(
        yaml.safe_dump(_policy("part-night", [{"from": "00:00", "to": "05:30", "off": True}]))
    )
    energy = {"all-night": 0.0, "part-night": 0.0}
    for month in range(1, 13):
        scenario = {
            "name": "shropshire-check",
            "tz": "Europe/London",
            "inventory": {
                "sample_town": {
                    "streets": 2,
                    "lamps_per_street": 10,
                    "lat_deg": 52.7,
                    "lon_deg": -2.75,
                }
            },
            "demand": {"footfall_peak_per_h": 0, "traffic_peak_per_h": 0},
            "policies": [{"file": "all.yaml"}, {"file": "pn.yaml"}],
            "nights": {"first": dt.date(2026, month, 15).isoformat(), "count": 1},
        }
        (tmp / "s.yaml").write_text(yaml.safe_dump(scenario))
        report = run_scenario(load_scenario(tmp / "s.yaml"))
        for p in report.policies:
            energy[p.policy] += p.energy_kwh
        print(
            f"2026-{month:02d}-15: part-night saves {1 - report.policies[1].energy_kwh / report.policies[0].energy_kwh:6.1%}"
        )
    per_lamp = 1 - energy["part-night"] / energy["all-night"]
    print(f"year sample: a part-night lamp uses {per_lamp:.1%} less than an all-night lamp")
    for watt_ratio in (1.0, 0.6):
        share = 0.64 * watt_ratio / (0.64 * watt_ratio + 0.36)
        print(
            f"64 % of lamps part-night, their wattage {watt_ratio:.0%} of the others': "
            f"{share:.1%} of the energy x {per_lamp:.1%} = {share * per_lamp:.1%} fleet saving"
        )


if __name__ == "__main__":
    main()
