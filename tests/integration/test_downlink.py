"""The central downlink publisher against a real mosquitto: acks close commands, silence retries."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiomqtt
import pytest

from domain.protocol import AckStatus, CommandAck, LampFailure, decode_downlink
from domain.records import LampCommand
from gateways.acks import CommandState, RetryPolicy
from gateways.mqtt import BrokerSettings, MqttLink
from streetlight.downlink import DownlinkError, DownlinkPublisher
from tests.integration.conftest import Broker, until

pytestmark = pytest.mark.timeout(120)


def test_commands_are_acked_retried_and_given_up(mosquitto: Broker) -> None:
    received: list[tuple[str, str]] = []  # (cmd_id, first lamp) per delivery, re-sends included

    async def scenario() -> None:
        link = MqttLink(BrokerSettings(port=mosquitto.port, client_id="central-test"))
        policy = RetryPolicy(max_attempts=2, ack_timeout_s=0.4, backoff_s=0.2, backoff_max_s=0.2)
        pub = DownlinkPublisher(link, "streetlight/v1", time.time_ns, policy=policy)
        async with (
            link,
            aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="gw-a") as gw,
        ):
            await link.wait_connected(5)
            await gw.subscribe("streetlight/v1/gw-a/downlink", qos=1)
            stop = asyncio.Event()
            poller = asyncio.create_task(pub.run(stop, period_s=0.05))

            async def gateway() -> None:
                async for message in gw.messages:
                    assert isinstance(message.payload, bytes)
                    command = decode_downlink(message.payload)
                    lamps = [c.lamp_id for c in command.commands]
                    received.append((command.cmd_id, lamps[0]))
                    if lamps[0] == "L-silent":
                        continue  # never answers: the publisher re-sends, then gives up
                    failed = (LampFailure("L-2", "BadNodeIdUnknown"),) if "L-2" in lamps else ()
                    status = AckStatus.PARTIAL if failed else AckStatus.APPLIED
                    ack = CommandAck(
                        cmd_id=command.cmd_id,
                        gateway_id="gw-a",
                        status=status,
                        ack_ns=time.time_ns(),
                        failed=failed,
                    )
                    pub.on_ack(ack)

            answering = asyncio.create_task(gateway())
            sink = pub.sink("gw-a")
            await sink.send([LampCommand("L-1", 0.5, 2.0)])
            await pub.send("gw-a", [LampCommand("L-1", 0.3), LampCommand("L-2", 0.3)])
            silent = await pub.send("gw-a", [LampCommand("L-silent", 1.0)])
            await until(lambda: pub.in_flight == 0, 10)
            stop.set()
            await poller
            answering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await answering  # re-raises anything the scripted gateway tripped over

        c = pub.counters
        assert (c.commands, c.lamp_commands) == (3, 4)
        assert (c.acked, c.partial, c.failed, c.expired) == (1, 1, 1, 0)
        assert c.failed_lamps == 1
        # The silent command went out twice (max_attempts=2) with the same cmd_id.
        assert [r for r in received if r[0] == silent] == [(silent, "L-silent")] * 2
        assert c.publishes == 4
        outcomes = {cmd: state for cmd, _gw, state in pub.outcomes}
        assert outcomes[silent] is CommandState.FAILED

    asyncio.run(scenario())


def test_a_publish_while_the_broker_is_down_raises_for_the_live_loop(mosquitto: Broker) -> None:
    async def scenario() -> None:
        link = MqttLink(BrokerSettings(port=mosquitto.port, client_id="central-down"))
        pub = DownlinkPublisher(link, "streetlight/v1", time.time_ns)
        async with link:
            await link.wait_connected(5)
            await asyncio.to_thread(mosquitto.stop)
            await until(lambda: not link.connected, 10)
            with pytest.raises(DownlinkError, match="downlink to gw-b not published"):
                await pub.sink("gw-b").send([LampCommand("L-1", 1.0)])
        assert pub.counters.publish_failures == 1
        assert pub.counters.commands == 0  # never in flight
        assert pub.in_flight == 0

    asyncio.run(scenario())
