"""The MQTT consumer refuses a bad configuration at construction, with a message saying what to
fix (its behaviour against a real broker is in tests/integration/test_ingest_mqtt.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensor_ingest.config import IngestConfig
from sensor_ingest.consumer import IngestConsumer
from sensor_ingest.historian import EmbeddedHistorian
from sensor_ingest.pipeline import IngestPipeline


@pytest.fixture
def pipeline() -> IngestPipeline:
    return IngestPipeline(EmbeddedHistorian(), config=IngestConfig(prefix="city/v1"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"host": ""}, "host must name the broker (e.g. 127.0.0.1)"),
        ({"port": 0}, "port must be 1..65535, got 0"),
        (
            {"prefix": "streetlight/v1"},
            "prefix 'streetlight/v1' differs from the pipeline's 'city/v1': the pipeline would "
            "refuse every topic",
        ),
        ({"password": "x"}, "a password needs a username"),
        ({"client_id": ""}, "a persistent session needs a fixed client_id"),
        (
            {"cert_file": "c.pem", "ca_file": "ca.pem"},
            "a TLS client certificate needs both cert_file and key_file",
        ),
        ({"tls_insecure": True}, "cert_file and tls_insecure need TLS: give ca_file"),
        (
            {"ca_file": "/nonexistent/ca.pem"},
            "ca_file '/nonexistent/ca.pem' is not a readable file",
        ),
        ({"keepalive_s": 0}, "keepalive_s must be > 0, got 0"),
        (
            {"backoff_s": (2.0, 1.0)},
            "backoff_s must be (first, cap) with 0 < first <= cap, got (2.0, 1.0)",
        ),
        ({"max_batch_messages": 0}, "max_batch_messages must be >= 1, got 0"),
    ],
)
def test_bad_options_are_refused_at_construction(
    pipeline: IngestPipeline, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError) as err:
        IngestConsumer(pipeline, **kwargs)  # type: ignore[arg-type]
    assert str(err.value) == message


def test_good_options_give_the_three_subscriptions(
    pipeline: IngestPipeline, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked until connect")
    consumer = IngestConsumer(
        pipeline, port=8883, ca_file=str(ca), username="ingest", password="pw"
    )
    assert consumer.subscriptions == ("city/v1/+/uplink", "city/v1/+/status", "city/v1/+/ack")
    assert consumer.counters.backlog == 0 and not consumer.connected
    # A throw-away session is allowed without a client id.
    assert IngestConsumer(pipeline, persistent_session=False, client_id="").client_id == ""
