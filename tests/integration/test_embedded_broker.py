"""The embedded amqtt broker relays QoS 1 messages and refuses to listen beyond loopback."""

from __future__ import annotations

import asyncio
import re

import aiomqtt
import pytest

from streetlight.broker import EmbeddedBroker, EmbeddedBrokerError
from tests.integration.conftest import free_port


async def _round_trip(port: int) -> list[bytes]:
    async with (
        EmbeddedBroker(port=port),
        aiomqtt.Client("127.0.0.1", port, identifier="sub") as sub,
        aiomqtt.Client("127.0.0.1", port, identifier="pub") as pub,
    ):
        await sub.subscribe("streetlight/v1/+/uplink", qos=1)
        for i in range(20):
            await pub.publish("streetlight/v1/gw-1/uplink", f"m{i}".encode(), qos=1)
        got: list[bytes] = []
        async with asyncio.timeout(10):
            async for message in sub.messages:
                assert isinstance(message.payload, bytes)
                got.append(message.payload)
                if len(got) == 20:
                    break
        return got


def test_embedded_broker_relays_messages_in_order() -> None:
    got = asyncio.run(_round_trip(free_port()))
    assert got == [f"m{i}".encode() for i in range(20)]


def test_embedded_broker_binds_to_loopback_only() -> None:
    with pytest.raises(
        EmbeddedBrokerError, match=re.escape("binds to loopback only; got '0.0.0.0'")
    ):
        EmbeddedBroker(host="0.0.0.0", port=1883)
    with pytest.raises(EmbeddedBrokerError, match=re.escape("port 0 is outside 1..65535")):
        EmbeddedBroker(port=0)


def test_embedded_broker_reports_a_port_in_use() -> None:
    async def twice(port: int) -> None:
        async with EmbeddedBroker(port=port), EmbeddedBroker(port=port):
            pass

    with pytest.raises(EmbeddedBrokerError, match="cannot start the embedded MQTT broker"):
        asyncio.run(twice(free_port()))
