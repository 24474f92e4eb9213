"""The embedded MQTT broker: amqtt in-process, for the local stack when no broker URL is given.

It exists so that `make run` needs no set-up. It listens on loopback only and lets anonymous
clients in, which is acceptable on 127.0.0.1 for a demonstration and nowhere else: production
uses Mosquitto (or any MQTT 3.1.1/5 broker) by URL, with per-gateway credentials, ACLs and TLS
(docs/gateway-protocol.md). amqtt relays a few hundred to a few thousand messages per second,
enough for a demonstration town, not for a city.
"""

from __future__ import annotations

import ipaddress
import logging
from types import TracebackType
from typing import Any, Self

from amqtt.broker import Broker

from domain.errors import StreetlightError

__all__ = ["EmbeddedBroker", "EmbeddedBrokerError"]


class EmbeddedBrokerError(StreetlightError):
    """The embedded broker cannot start (bad address, port in use)."""


class EmbeddedBroker:
    """``async with EmbeddedBroker(port=1883) as broker:`` runs an MQTT broker on loopback."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 1883) -> None:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError as err:
            raise EmbeddedBrokerError(f"host {host!r} is not an IP address") from err
        if not loopback:
            raise EmbeddedBrokerError(
                f"the embedded broker admits anonymous clients, so it binds to loopback only; "
                f"got {host!r}. Use Mosquitto with credentials and TLS for anything else"
            )
        if not 0 < port < 65536:
            raise EmbeddedBrokerError(f"port {port} is outside 1..65535")
        self.host = host
        self.port = port
        self._broker: Broker | None = None

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            # No $SYS publisher, no packet logger: quiet and light.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }

    async def __aenter__(self) -> Self:
        # amqtt logs every connection at INFO; the service's own log says what matters.
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        broker = Broker(self._config())
        try:
            await broker.start()
        except Exception as err:  # amqtt raises its own BrokerError or OSError on bind
            raise EmbeddedBrokerError(
                f"cannot start the embedded MQTT broker on {self.host}:{self.port}: {err}"
            ) from err
        self._broker = broker
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
