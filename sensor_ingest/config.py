"""Frozen configuration of the ingest stage, checked once at construction.

The composition root builds these from its settings; every limit is a documented default that
a council may override (``docs/historian.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from domain.protocol import MAX_UPLINK_BYTES, Channel, TopicError, gateway_subscription

NS_PER_S = 1_000_000_000

#: A street light draws tens to a few hundred watts; a cabinet meter reporting a whole circuit
#: can reach a few kW. Anything above this is a wrong unit or a broken meter. (configurable)
DEFAULT_MAX_POWER_W = 5_000.0
#: How long a reading may have waited before it reaches us: a gateway's queue plus the broker's
#: session expiry. It is also how long message ids are kept for de-duplication (protocol
#: receiver rule): both must be the same window, or a re-send could slip through.
DEFAULT_MAX_AGE_S = 7 * 86_400.0
#: Device and gateway clocks drift; NTP-less controllers can be minutes off.
DEFAULT_MAX_FUTURE_SKEW_S = 300.0
#: People or vehicles in one count reading; more is a wrong unit or a broken counter.
DEFAULT_MAX_COUNT = 100_000.0


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """Limits and behaviour of :class:`sensor_ingest.pipeline.IngestPipeline`.

    ``max_age_s`` is both the oldest reading accepted (relative to the receive time) and the
    de-duplication window; ``max_future_skew_s`` the furthest a reading may be ahead of the
    receive time. ``skew_warn_s`` flags gateways whose clock (``receive - sent_ns``) is off by
    more than that. ``max_uplink_bytes`` caps an uplink before parsing (protocol: 4 MiB).
    ``prune_interval_s`` is how often (in receive time) expired de-duplication state is dropped.
    """

    prefix: str = "streetlight/v1"
    max_age_s: float = DEFAULT_MAX_AGE_S
    max_future_skew_s: float = DEFAULT_MAX_FUTURE_SKEW_S
    max_power_w: float = DEFAULT_MAX_POWER_W
    max_count: float = DEFAULT_MAX_COUNT
    skew_warn_s: float = 30.0
    max_uplink_bytes: int = MAX_UPLINK_BYTES
    prune_interval_s: float = 60.0

    def __post_init__(self) -> None:
        try:
            gateway_subscription(self.prefix, Channel.UPLINK)
        except TopicError as err:
            raise ValueError(f"IngestConfig.prefix: {err.reason}") from err
        for name in ("max_age_s", "max_future_skew_s", "max_power_w", "max_count", "skew_warn_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"IngestConfig.{name} must be a positive number, got {value!r}")
        if not (isinstance(self.prune_interval_s, int | float) and self.prune_interval_s >= 0):
            raise ValueError(
                f"IngestConfig.prune_interval_s must be >= 0, got {self.prune_interval_s!r}"
            )
        if not 0 < self.max_uplink_bytes <= MAX_UPLINK_BYTES:
            raise ValueError(
                f"IngestConfig.max_uplink_bytes must be 1..{MAX_UPLINK_BYTES} (the protocol's "
                f"limit), got {self.max_uplink_bytes!r}"
            )

    @property
    def max_age_ns(self) -> int:
        return int(self.max_age_s * NS_PER_S)

    @property
    def max_future_skew_ns(self) -> int:
        return int(self.max_future_skew_s * NS_PER_S)
