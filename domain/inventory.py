"""A struct-of-arrays view of an inventory, the shape the dimming kernels take."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from domain.records import DimmingCurve, Lamp, LightingClass

#: Lighting classes in a fixed order; ``InventoryArrays.class_index`` indexes into this tuple.
CLASS_ORDER: tuple[LightingClass, ...] = tuple(LightingClass)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True, eq=False)
class InventoryArrays:
    """Column arrays for ``n`` lamps, all of length ``n`` and aligned by position.

    ``class_index`` indexes :data:`CLASS_ORDER`; ``street_index`` indexes ``street_names``;
    ``driver_index`` indexes ``driver_curves``. ``dali`` is True for DALI-curve controllers.
    ``lamp_type`` (HPS, LED, ...) may be left out, which means "" for every lamp.
    """

    lamp_id: npt.NDArray[np.str_]
    council_id: str
    lon_deg: FloatArray
    lat_deg: FloatArray
    rated_power_w: FloatArray
    standby_power_w: FloatArray
    class_index: IntArray
    street_index: IntArray
    order_on_street: IntArray
    street_names: tuple[str, ...]
    driver_index: IntArray
    driver_curves: tuple[str, ...]
    dali: npt.NDArray[np.bool_]
    group: npt.NDArray[np.str_]
    lamp_type: npt.NDArray[np.str_] = field(default_factory=lambda: np.array([], dtype=np.str_))

    def __post_init__(self) -> None:
        n = len(self.lamp_id)
        if len(self.lamp_type) == 0 and n:
            # Optional column, added after the others: callers that predate it leave it empty.
            object.__setattr__(self, "lamp_type", np.full(n, "", dtype=np.str_))
        for name in (
            "lon_deg",
            "lat_deg",
            "rated_power_w",
            "standby_power_w",
            "class_index",
            "street_index",
            "order_on_street",
            "driver_index",
            "dali",
            "group",
            "lamp_type",
        ):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"InventoryArrays.{name} has {len(getattr(self, name))} rows, expected {n}"
                )

    def __len__(self) -> int:
        return len(self.lamp_id)

    @classmethod
    def from_lamps(cls, lamps: Sequence[Lamp], council_id: str = "") -> InventoryArrays:
        streets: dict[str, int] = {}
        drivers: dict[str, int] = {}
        class_pos = {c: i for i, c in enumerate(CLASS_ORDER)}
        council = council_id or (lamps[0].council_id if lamps else "")
        return cls(
            lamp_id=np.array([lamp.lamp_id for lamp in lamps], dtype=np.str_),
            council_id=council,
            lon_deg=np.array([lamp.lon_deg for lamp in lamps], dtype=np.float64),
            lat_deg=np.array([lamp.lat_deg for lamp in lamps], dtype=np.float64),
            rated_power_w=np.array([lamp.rated_power_w for lamp in lamps], dtype=np.float64),
            standby_power_w=np.array([lamp.standby_power_w for lamp in lamps], dtype=np.float64),
            class_index=np.array(
                [class_pos[lamp.lighting_class] for lamp in lamps], dtype=np.int32
            ),
            street_index=np.array(
                [streets.setdefault(lamp.street, len(streets)) for lamp in lamps], dtype=np.int32
            ),
            order_on_street=np.array([lamp.order_on_street for lamp in lamps], dtype=np.int32),
            street_names=tuple(streets),
            driver_index=np.array(
                [drivers.setdefault(lamp.driver_curve, len(drivers)) for lamp in lamps],
                dtype=np.int32,
            ),
            driver_curves=tuple(drivers),
            dali=np.array(
                [lamp.dimming_curve is DimmingCurve.DALI for lamp in lamps], dtype=np.bool_
            ),
            group=np.array([lamp.group for lamp in lamps], dtype=np.str_),
            lamp_type=np.array([lamp.lamp_type for lamp in lamps], dtype=np.str_),
        )

    def lamp(self, i: int) -> Lamp:
        """The record of lamp ``i`` (the inverse of :meth:`from_lamps`)."""
        return Lamp(
            lamp_id=str(self.lamp_id[i]),
            council_id=self.council_id,
            lon_deg=float(self.lon_deg[i]),
            lat_deg=float(self.lat_deg[i]),
            rated_power_w=float(self.rated_power_w[i]),
            standby_power_w=float(self.standby_power_w[i]),
            lighting_class=CLASS_ORDER[int(self.class_index[i])],
            street=self.street_names[int(self.street_index[i])] if self.street_names else "",
            order_on_street=int(self.order_on_street[i]),
            driver_curve=self.driver_curves[int(self.driver_index[i])]
            if self.driver_curves
            else "",
            dimming_curve=DimmingCurve.DALI if bool(self.dali[i]) else DimmingCurve.LINEAR,
            group=str(self.group[i]),
            lamp_type=str(self.lamp_type[i]),
        )

    def subset(self, index: npt.ArrayLike) -> InventoryArrays:
        """The lamps at ``index`` (positions or a boolean mask), in that order.

        Street and driver-curve tables keep only the entries the subset uses (renumbered), so
        a part of a town carries no streets without lamps.
        """
        idx = np.arange(len(self))[np.asarray(index)]
        fields = {
            name: (
                getattr(self, name)[idx]
                if isinstance(getattr(self, name), np.ndarray)
                else getattr(self, name)
            )
            for name in self.__dataclass_fields__
        }
        for index_name, table_name in (
            ("street_index", "street_names"),
            ("driver_index", "driver_curves"),
        ):
            table = getattr(self, table_name)
            if table:
                used, renumbered = np.unique(fields[index_name], return_inverse=True)
                fields[index_name] = renumbered.astype(np.int32)
                fields[table_name] = tuple(table[int(k)] for k in used)
        return InventoryArrays(**fields)

    def lamps(self) -> list[Lamp]:
        return [self.lamp(i) for i in range(len(self))]
