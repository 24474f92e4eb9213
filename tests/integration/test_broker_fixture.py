"""The broker fixtures start a real mosquitto that a real aiomqtt client can use."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from tests.integration.conftest import Broker


async def _round_trip(broker: Broker, **auth: str) -> bytes:
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, identifier="fixture-test", **auth
    ) as client:
        await client.subscribe("fixture/test", qos=1)
        await client.publish("fixture/test", b"hello", qos=1)
        async for message in client.messages:
            return bytes(message.payload)  # type: ignore[arg-type]
    raise AssertionError("no message")


def test_anonymous_broker_relays(mosquitto: Broker) -> None:
    assert asyncio.run(asyncio.wait_for(_round_trip(mosquitto), 10)) == b"hello"


def test_authenticating_broker_refuses_strangers(mosquitto_auth: Broker) -> None:
    ok = asyncio.run(
        asyncio.wait_for(_round_trip(mosquitto_auth, username="gw-1", password="s3cret-gw"), 10)
    )
    assert ok == b"hello"
    with pytest.raises(aiomqtt.MqttError):
        asyncio.run(
            asyncio.wait_for(_round_trip(mosquitto_auth, username="gw-1", password="wrong"), 10)
        )
