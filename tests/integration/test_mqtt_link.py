"""The gateway's MQTT link against a real mosquitto: reconnects, re-subscribes, survives bad handlers."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from gateways.mqtt import BrokerSettings, LinkDown, MqttLink
from tests.integration.conftest import Broker, until

pytestmark = pytest.mark.timeout(120)


async def _publish(port: int, topic: str, payloads: list[bytes]) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for p in payloads:
            await client.publish(topic, p, qos=1)


def test_reconnects_and_resubscribes_after_a_broker_restart(mosquitto: Broker) -> None:
    got: list[bytes] = []

    def on_message(topic: str, payload: bytes) -> None:
        if payload == b"boom":
            raise ValueError("malformed")
        got.append(payload)

    async def scenario() -> None:
        link = MqttLink(
            BrokerSettings(port=mosquitto.port, client_id="gw-test", keepalive_s=5),
            subscriptions=[("t/#", 1)],
            on_message=on_message,
            backoff_s=(0.1, 1.0),
        )
        async with link:
            await link.wait_connected(5)
            await _publish(mosquitto.port, "t/a", [b"1", b"boom", b"2"])
            await until(lambda: got == [b"1", b"2"], 5)
            assert link.counters.handler_errors == 1  # counted, the link kept going
            await asyncio.to_thread(mosquitto.stop)
            await until(lambda: not link.connected, 10)
            with pytest.raises(LinkDown):
                await link.publish("t/x", b"lost?")
            await asyncio.to_thread(mosquitto.start)
            await link.wait_connected(10)
            await _publish(mosquitto.port, "t/b", [b"3"])
            await until(lambda: got[-1:] == [b"3"], 5)
            await link.publish("t/self", b"4")
            await until(lambda: got[-1:] == [b"4"], 5)
            assert link.counters.connects == 2 and link.counters.disconnects == 1

    asyncio.run(scenario())


def test_credentials_are_required(mosquitto_auth: Broker) -> None:
    async def scenario() -> tuple[bool, str, bool]:
        wrong = MqttLink(BrokerSettings(port=mosquitto_auth.port, username="gw-1", password="nope"))
        async with wrong:
            await asyncio.sleep(1.0)
            refused = (wrong.connected, wrong.counters.last_error)
        right = MqttLink(
            BrokerSettings(port=mosquitto_auth.port, username="gw-1", password="s3cret-gw")
        )
        async with right:
            await right.wait_connected(5)
            return refused[0], refused[1], right.connected

    connected_wrong, error, connected_right = asyncio.run(scenario())
    assert not connected_wrong and error
    assert connected_right


def test_tls_with_credentials(mosquitto_tls: tuple[Broker, dict]) -> None:  # type: ignore[type-arg]
    broker, certs = mosquitto_tls

    async def scenario() -> tuple[bool, bool, str]:
        secure = MqttLink(
            BrokerSettings(
                port=broker.port, username="gw-1", password="s3cret-gw", ca_file=str(certs["ca"])
            ),
            subscriptions=[("tls/#", 1)],
        )
        plain = MqttLink(BrokerSettings(port=broker.port, username="gw-1", password="s3cret-gw"))
        async with secure, plain:
            await secure.wait_connected(10)
            await secure.publish("tls/x", b"over TLS")
            await asyncio.sleep(1.0)
            return secure.connected, plain.connected, plain.counters.last_error

    secure_ok, plain_ok, _ = asyncio.run(scenario())
    assert secure_ok
    assert not plain_ok  # a plain-text client cannot talk to the TLS listener
