"""The ingest pipeline: raw MQTT messages in, stored and windowed readings out. Sans-io.

Theory of operation
-------------------
:meth:`IngestPipeline.handle_many` takes the messages one wake-up of the consumer collected,
``(topic, payload, receive_ns)`` each, and for each uplink:

1. parses the topic (``domain.protocol.parse_gateway_topic``) and checks the size;
2. decodes it (``decode_uplink_columns``: ``decode_uplink``'s rules, in columns). A message
   the decoder refuses is *malformed*: counted by reason and dropped whole, as the protocol
   requires (a malformed message stays malformed, so it is never retried);
3. skips it whole if ``(gw, epoch, seq)`` was already accepted (the protocol's fast path),
   counting its rows as duplicates;
4. records the gateway's clock skew and checks each row's time and value
   (:mod:`sensor_ingest.validate`): refused rows are counted by reason, the others go on;
5. drops rows whose explicit message id was accepted before (one query for the whole
   wake-up) or earlier in the same wake-up.

Then everything accepted in the wake-up is written to the historian in one transaction
together with its de-duplication record, added to the demand windows, and handed to each
sink (a sink may block: that is the back-pressure of a slow time-series server). Status and
ack messages are decoded and handed to ``on_status`` / ``on_ack``.

Nothing raises out of :meth:`handle` or :meth:`handle_many` for bad input: every message
gets an :class:`IngestOutcome` and every refusal is counted (:meth:`counters`). Failures of
the historian itself (disk full, file gone) do raise: they are not the sender's fault and
must not be counted away.
"""

from __future__ import annotations

import enum
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from domain.protocol import (
    Channel,
    CodecError,
    CommandAck,
    GatewayState,
    GatewayStatus,
    UplinkColumns,
    decode_ack,
    decode_status,
    decode_uplink_columns,
    derived_message_id,
    parse_gateway_topic,
)
from domain.records import ReadingKind
from sensor_ingest.config import IngestConfig
from sensor_ingest.dedup import Deduplicator, DedupRecord
from sensor_ingest.historian import EmbeddedHistorian, ReadingRow
from sensor_ingest.validate import (
    Limits,
    Rejection,
    RejectReason,
    SkewEstimate,
    SkewTracker,
    check_rows,
    value_rules,
)
from sensor_ingest.windows import DemandWindows

__all__ = [
    "GatewayView",
    "IngestOutcome",
    "IngestPipeline",
    "MalformedReason",
    "Sink",
    "classify_decode_error",
]

_log = logging.getLogger(__name__)

# An explicit id must not look like a derived one (gateway ids and epochs cannot hold ':').
_DERIVED_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}:[A-Za-z0-9_-]{1,32}:\d+:\d+$")


class MalformedReason(enum.StrEnum):
    """Why a whole message was dropped (the counter is ``malformed_<reason>``)."""

    TOPIC = "topic"  # not {prefix}/<gateway id>/<channel>
    CHANNEL = "channel"  # a channel the central side does not consume (downlink)
    OVERSIZED = "oversized"  # larger than the protocol's limit for its channel
    JSON = "json"  # not UTF-8, not JSON, duplicate keys, NaN/Infinity, nested too deeply
    VERSION = "version"  # ``v`` missing or not 1
    GATEWAY_MISMATCH = "gateway_mismatch"  # ``gw`` differs from the topic's gateway
    SCHEMA = "schema"  # a field missing or of the wrong type or range


def classify_decode_error(reason: str) -> MalformedReason:
    """Map a ``domain.protocol`` decoder's reason text onto a counter."""
    if reason.startswith("message is ") and "bytes; the limit is" in reason:
        return MalformedReason.OVERSIZED
    if reason.startswith(("not UTF-8", "not valid JSON", "expected bytes", "JSON nested")) or (
        "appears twice in one object" in reason or "is not a number JSON allows" in reason
    ):
        return MalformedReason.JSON
    if reason.startswith("v:"):
        return MalformedReason.VERSION
    if reason.startswith("gw:") and "differs from the topic's gateway" in reason:
        return MalformedReason.GATEWAY_MISMATCH
    return MalformedReason.SCHEMA


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    """What became of one message.

    ``accepted``/``duplicates`` count rows; ``duplicate_message`` is the fast path (the whole
    uplink was seen before). ``malformed`` and ``detail`` say why a whole message was
    dropped; ``rejected`` lists refused rows of an accepted message.
    """

    topic: str
    channel: Channel | None = None
    gateway_id: str | None = None
    accepted: int = 0
    duplicates: int = 0
    duplicate_message: bool = False
    rejected: tuple[Rejection, ...] = ()
    malformed: MalformedReason | None = None
    detail: str = ""
    status: GatewayStatus | None = None
    ack: CommandAck | None = None


@dataclass(frozen=True, slots=True)
class GatewayView:
    """What the ingest knows of a gateway: its retained status and when it was last heard."""

    gateway_id: str
    state: GatewayState | None
    status_ts_ns: int | None
    last_seen_ns: int
    counters: dict[str, int]


class Sink(Protocol):
    """A second home for accepted readings (e.g. :class:`sensor_ingest.influx.InfluxSink`).

    ``submit`` may block while the sink's buffer is full (back-pressure); it must count, not
    raise, whatever it cannot deliver.
    """

    def submit(self, gateway_id: str, rows: Sequence[ReadingRow]) -> None: ...


@dataclass(slots=True)
class _Uplink:
    slot: int  # where its outcome goes in handle_many's answer
    topic: str
    receive_ns: int
    columns: UplinkColumns
    good: list[int]
    rejected: list[Rejection]
    explicit: list[tuple[int, str]]  # (row, message id) of good rows with explicit ids


class IngestPipeline:
    """See the module docstring.

    ``historian`` stores readings and de-duplication state; ``windows`` (optional) receives
    the accepted rows; each of ``sinks`` receives them per gateway. ``clock`` (epoch ns)
    supplies ``receive_ns`` when :meth:`handle` is called without one. ``on_status`` and
    ``on_ack`` receive decoded status and ack messages (the composition root forwards acks to
    its command tracker).
    """

    def __init__(
        self,
        historian: EmbeddedHistorian,
        windows: DemandWindows | None = None,
        sinks: Sequence[Sink] = (),
        config: IngestConfig | None = None,
        clock: Callable[[], int] | None = None,
        *,
        on_status: Callable[[GatewayStatus], None] | None = None,
        on_ack: Callable[[CommandAck], None] | None = None,
    ) -> None:
        self.config = config if config is not None else IngestConfig()
        self.historian = historian
        self.windows = windows
        self.sinks = tuple(sinks)
        self.clock = clock if clock is not None else time.time_ns
        self.on_status = on_status
        self.on_ack = on_ack
        self._limits = Limits.from_config(self.config)
        self._rules = value_rules(self._limits)
        self.dedup = Deduplicator(
            historian,
            window_ns=self.config.max_age_ns,
            margin_ns=self.config.max_future_skew_ns,
        )
        self.skew = SkewTracker(self.config.skew_warn_s)
        self._prune_every_ns = int(self.config.prune_interval_s * 1_000_000_000)
        self._last_prune_ns: int | None = None
        self._gateways: dict[str, GatewayView] = {}
        self._counts: dict[str, int] = dict.fromkeys(
            [
                "messages",
                "uplinks",
                "statuses",
                "acks",
                "readings_accepted",
                "readings_duplicate",
                "messages_duplicate",
                "callback_errors",
                "dedup_pruned",
            ],
            0,
        )
        for reason in RejectReason:
            self._counts[f"rejected_{reason.value}"] = 0
        for malformed in MalformedReason:
            self._counts[f"malformed_{malformed.value}"] = 0

    # --- public ---------------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Flat counters: messages, uplinks, statuses, acks, readings_accepted,
        readings_duplicate, messages_duplicate, ``rejected_<reason>`` for every
        :class:`RejectReason`, ``malformed_<reason>`` for every :class:`MalformedReason`,
        callback_errors, dedup_pruned."""
        return dict(self._counts)

    def clock_skew(self) -> dict[str, SkewEstimate]:
        """Each gateway's clock skew estimate (``receive_ns - sent_ns``)."""
        return self.skew.report()

    def gateways(self) -> dict[str, GatewayView]:
        return dict(self._gateways)

    def handle(self, topic: str, payload: bytes, receive_ns: int | None = None) -> IngestOutcome:
        """Handle one message (see :meth:`handle_many`, which is faster for many)."""
        now = receive_ns if receive_ns is not None else self.clock()
        return self.handle_many([(topic, payload, now)])[0]

    def handle_many(self, messages: Iterable[tuple[str, bytes, int]]) -> list[IngestOutcome]:
        """Handle messages in arrival order, storing everything accepted in one transaction."""
        outcomes: list[IngestOutcome] = []
        uplinks: list[_Uplink] = []
        in_batch: set[tuple[str, str, int]] = set()
        newest_ns: int | None = None
        for topic, payload, receive_ns in messages:
            self._counts["messages"] += 1
            newest_ns = receive_ns if newest_ns is None else max(newest_ns, receive_ns)
            slot = len(outcomes)
            outcomes.append(self._first_pass(topic, payload, receive_ns, slot, uplinks, in_batch))
        if uplinks:
            self._store(uplinks, outcomes)
        if newest_ns is not None:
            self._maybe_prune(newest_ns)
        return outcomes

    # --- stages ---------------------------------------------------------------------------------

    def _malformed(
        self,
        topic: str,
        reason: MalformedReason,
        detail: str,
        channel: Channel | None = None,
        gateway_id: str | None = None,
    ) -> IngestOutcome:
        self._counts[f"malformed_{reason.value}"] += 1
        return IngestOutcome(
            topic=topic, channel=channel, gateway_id=gateway_id, malformed=reason, detail=detail
        )

    def _first_pass(
        self,
        topic: str,
        payload: bytes,
        receive_ns: int,
        slot: int,
        uplinks: list[_Uplink],
        in_batch: set[tuple[str, str, int]],
    ) -> IngestOutcome:
        try:
            gateway_id, channel = parse_gateway_topic(self.config.prefix, topic)
        except CodecError as err:
            return self._malformed(topic, MalformedReason.TOPIC, err.reason)
        if channel is Channel.STATUS:
            return self._status(topic, gateway_id, payload, receive_ns)
        if channel is Channel.ACK:
            return self._ack(topic, gateway_id, payload, receive_ns)
        if channel is not Channel.UPLINK:
            return self._malformed(
                topic,
                MalformedReason.CHANNEL,
                f"{channel.value} messages go from the central side to gateways; "
                "the ingest does not consume them",
                channel,
                gateway_id,
            )
        self._counts["uplinks"] += 1
        self._seen(gateway_id, receive_ns)
        limit = self.config.max_uplink_bytes
        if len(payload) > limit:
            return self._malformed(
                topic,
                MalformedReason.OVERSIZED,
                f"message is {len(payload)} bytes; the limit is {limit}",
                channel,
                gateway_id,
            )
        try:
            columns = decode_uplink_columns(payload, topic_gateway_id=gateway_id, max_bytes=limit)
        except CodecError as err:
            return self._malformed(
                topic, classify_decode_error(err.reason), err.reason, channel, gateway_id
            )
        key = (gateway_id, columns.epoch, columns.seq)
        if key in in_batch or self.dedup.message_done(*key):
            self._counts["messages_duplicate"] += 1
            self._counts["readings_duplicate"] += len(columns)
            return IngestOutcome(
                topic=topic,
                channel=channel,
                gateway_id=gateway_id,
                duplicates=len(columns),
                duplicate_message=True,
            )
        in_batch.add(key)
        self.skew.observe(gateway_id, columns.sent_ns, receive_ns)
        good, rejected = check_rows(
            columns.kinds, columns.values, columns.times_ns, receive_ns, self._limits, self._rules
        )
        explicit: list[tuple[int, str]] = []
        message_ids = columns.message_ids
        if any(message_ids):  # most rows leave the id empty: look only at those that do not
            is_good = set(good)
            refused: set[int] = set()
            for i in [i for i, message_id in enumerate(message_ids) if message_id]:
                message_id = message_ids[i]
                if i not in is_good or message_id == derived_message_id(
                    gateway_id, columns.epoch, columns.seq, i
                ):
                    continue  # refused already, or spelled out as its own derived id
                if ":" in message_id and _DERIVED_ID_RE.match(message_id):
                    refused.add(i)
                    rejected.append(
                        Rejection(
                            i,
                            RejectReason.MESSAGE_ID_FORM,
                            f"readings[{i}]: message id {message_id!r} has the derived form "
                            "{gw}:{epoch}:{seq}:{index} of another row; explicit ids must not "
                            "(use {sensor_id}#{event_id})",
                        )
                    )
                else:
                    explicit.append((i, message_id))
            if refused:
                good = [i for i in good if i not in refused]
                rejected.sort(key=lambda r: r.index)
        for rejection in rejected:
            self._counts[f"rejected_{rejection.reason.value}"] += 1
        uplinks.append(
            _Uplink(
                slot=slot,
                topic=topic,
                receive_ns=receive_ns,
                columns=columns,
                good=good,
                rejected=rejected,
                explicit=explicit,
            )
        )
        # A placeholder the store step replaces once explicit ids are resolved.
        return IngestOutcome(topic=topic, channel=channel, gateway_id=gateway_id)

    def _store(self, uplinks: list[_Uplink], outcomes: list[IngestOutcome]) -> None:
        explicit_ids = {message_id for u in uplinks for _, message_id in u.explicit}
        known = self.dedup.known_ids(explicit_ids)
        taken: set[str] = set()
        source_ids: list[str] = []
        kinds: list[ReadingKind] = []
        values: list[float] = []
        times_ns: list[int] = []
        per_gateway: dict[str, list[ReadingRow]] = {}
        messages: list[tuple[str, str, int, int]] = []
        ids: list[tuple[str, int]] = []
        results: list[tuple[int, int, _Uplink]] = []
        for uplink in uplinks:
            c = uplink.columns
            good = uplink.good
            duplicates = 0
            if uplink.explicit:
                drop: set[int] = set()
                for i, message_id in uplink.explicit:
                    if message_id in known or message_id in taken:
                        drop.add(i)
                    else:
                        taken.add(message_id)
                        ids.append((message_id, c.times_ns[i]))
                if drop:
                    good = [i for i in good if i not in drop]
                    duplicates = len(drop)
            start = len(source_ids)
            if len(good) == len(c):  # the usual case: every row, copied by C
                source_ids.extend(c.source_ids)
                kinds.extend(c.kinds)
                values.extend(c.values)
                times_ns.extend(c.times_ns)
            elif good:
                source_ids.extend([c.source_ids[i] for i in good])
                kinds.extend([c.kinds[i] for i in good])
                values.extend([c.values[i] for i in good])
                times_ns.extend([c.times_ns[i] for i in good])
            if self.sinks and good:
                per_gateway.setdefault(c.gateway_id, []).extend(
                    zip(
                        source_ids[start:],
                        kinds[start:],
                        values[start:],
                        times_ns[start:],
                        strict=True,
                    )
                )
            messages.append((c.gateway_id, c.epoch, c.seq, uplink.receive_ns))
            results.append((len(good), duplicates, uplink))
        record = DedupRecord(messages=tuple(messages), ids=tuple(ids))
        self.historian.write_columns(source_ids, kinds, values, times_ns, dedup=record)
        self.dedup.commit(record)
        for accepted_n, duplicates, uplink in results:
            self._counts["readings_accepted"] += accepted_n
            self._counts["readings_duplicate"] += duplicates
            outcomes[uplink.slot] = IngestOutcome(
                topic=uplink.topic,
                channel=Channel.UPLINK,
                gateway_id=uplink.columns.gateway_id,
                accepted=accepted_n,
                duplicates=duplicates,
                rejected=tuple(uplink.rejected),
            )
        if self.windows is not None and source_ids:
            self._callback(self.windows.add_columns, source_ids, kinds, values, times_ns)
        for gateway_id, gateway_rows in per_gateway.items():
            for sink in self.sinks:
                self._callback(sink.submit, gateway_id, gateway_rows)

    def _status(
        self, topic: str, gateway_id: str, payload: bytes, receive_ns: int
    ) -> IngestOutcome:
        self._seen(gateway_id, receive_ns)
        try:
            status = decode_status(payload, topic_gateway_id=gateway_id)
        except CodecError as err:
            return self._malformed(
                topic, classify_decode_error(err.reason), err.reason, Channel.STATUS, gateway_id
            )
        self._counts["statuses"] += 1
        self._gateways[gateway_id] = GatewayView(
            gateway_id=gateway_id,
            state=status.state,
            status_ts_ns=status.ts_ns,
            last_seen_ns=receive_ns,
            counters=dict(status.counters),
        )
        if self.on_status is not None:
            self._callback(self.on_status, status)
        return IngestOutcome(
            topic=topic, channel=Channel.STATUS, gateway_id=gateway_id, status=status
        )

    def _ack(self, topic: str, gateway_id: str, payload: bytes, receive_ns: int) -> IngestOutcome:
        self._seen(gateway_id, receive_ns)
        try:
            ack = decode_ack(payload, topic_gateway_id=gateway_id)
        except CodecError as err:
            return self._malformed(
                topic, classify_decode_error(err.reason), err.reason, Channel.ACK, gateway_id
            )
        self._counts["acks"] += 1
        if self.on_ack is not None:
            self._callback(self.on_ack, ack)
        return IngestOutcome(topic=topic, channel=Channel.ACK, gateway_id=gateway_id, ack=ack)

    def _seen(self, gateway_id: str, receive_ns: int) -> None:
        view = self._gateways.get(gateway_id)
        if view is None:
            self._gateways[gateway_id] = GatewayView(gateway_id, None, None, receive_ns, {})
        elif receive_ns > view.last_seen_ns:
            self._gateways[gateway_id] = GatewayView(
                gateway_id, view.state, view.status_ts_ns, receive_ns, view.counters
            )

    def _callback(self, function: Callable[..., object], *args: object) -> None:
        try:
            function(*args)
        except Exception as err:  # a consumer's bug must not stop ingest; it is counted
            self._counts["callback_errors"] += 1
            _log.exception("ingest callback %r failed: %s", function, err)

    def _maybe_prune(self, now_ns: int) -> None:
        if self._last_prune_ns is None:
            self._last_prune_ns = now_ns
            return
        if now_ns - self._last_prune_ns >= self._prune_every_ns:
            self._last_prune_ns = now_ns
            self._counts["dedup_pruned"] += self.dedup.prune(now_ns)
