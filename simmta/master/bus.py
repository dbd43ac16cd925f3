"""The event bus master hosts: children's datagrams in, JSON lines out.

Every datagram from a child is checked against its record, cut to the record's
bounds (a compromised daemon's 10 KB text is 512 characters on the stream, as an
honest one's is), stamped with the sender's real pid and service (a compromised
daemon cannot speak for another) and a sequence number. Subscribers get the
events in causal order, by construction: master publishes a child's datagram
when its order token comes through the shared order pipe (see
simmta.core.events), and its own events as it makes them; nothing is held back
for a time. Master acts on each event (pace, faults) as it publishes it. Writes
never wait: a subscriber whose socket buffer is full loses events, counted per
subscriber, and when it drains it first gets a ``bus``/``dropped`` event saying
how many. With no subscriber the bus does almost nothing.

Trust: children and subscribers are both untrusted; subscribers are admitted
by ``access.allowed`` and anything they send is ignored.
"""

import asyncio
import contextlib
import functools
import json
from collections.abc import Callable
from typing import Any

import msgspec

from simmta.core import events, names, records
from simmta.core.records import MAX_TEXT, BusDropped
from simmta.master.history import History

_decode = msgspec.json.Decoder().decode


@functools.lru_cache(maxsize=64)
def _json_string(name: str) -> bytes:
    """A service name as JSON (a handful of names, each spliced into thousands of lines)."""
    return json.dumps(name).encode()


MAX_BUFFER = 1 << 20  # bytes queued per subscriber before events are dropped
MAX_LOST = 256  # queue IDs a drop notice names at most
# published, not yet written: (qid, a child's line but for its seq, or the event)
Published = tuple[str | None, bytes | None, dict[str, Any] | None]


class Subscriber:
    def __init__(self, writer: asyncio.StreamWriter, name: str):
        self.writer = writer
        self.name = name
        self.dropped = 0  # since the last drop notice
        self.dropped_total = 0
        self.sent = 0
        self.joined_at = 0  # bus.published when it joined
        self.lost: dict[str, None] = {}  # queue IDs of the messages whose events it lost

    def stats(self) -> dict[str, int | str]:
        return {
            "name": self.name,
            "sent": self.sent,
            "dropped": self.dropped_total,
            "joined_at": self.joined_at,
        }

    def offer(
        self,
        lines: list[bytes],
        drop_notice: Callable[[int, str, list[str]], bytes],
        about: list[Published] | None = None,
    ) -> None:
        """Write ``lines`` (the events ``about``, if known: their queue IDs), or count them lost."""
        transport = self.writer.transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() > MAX_BUFFER:
            self.dropped += len(lines)
            self.dropped_total += len(lines)
            for qid, _, _ in about or ():
                if qid and len(self.lost) < MAX_LOST:
                    self.lost.setdefault(qid, None)
            return
        self.sent += len(lines)  # events offered and written (the drop notice is not one)
        if self.dropped:
            lines = [drop_notice(self.dropped, self.name, list(self.lost)), *lines]
            self.dropped = 0
            self.lost = {}
        transport.write(b"".join(lines))


class Bus:
    def __init__(self) -> None:
        self.out: list[Published] = []
        self.flushing: asyncio.Handle | None = None
        self.seq = 0
        self.published = 0  # events offered to subscribers (drop notices not counted)
        self.subscribers: list[Subscriber] = []
        self.invalid = 0
        # master acts on these: its own events and the ESSENTIAL kinds of its children
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self.history = History()  # what was streamed, for readers who come late

    @property
    def watched(self) -> bool:
        return bool(self.subscribers)

    def _line(self, event: dict[str, Any]) -> bytes:
        """The next line of the stream: ``event`` (master's own, or a child's it had to rewrite)."""
        self.seq += 1
        return self._serialize(event, self.seq)

    def _drop_notice(self, count: int, where: str, qids: list[str]) -> bytes:
        return self._line(events.make(names.MASTER, BusDropped(count=count, where=where, qids=qids)))

    def publish(self, event: dict[str, Any], spliced: bytes | None = None) -> None:
        """Act on an event at once (master's listeners), and stream it, in this order.

        The order of ``publish`` calls is the order of the stream: master calls
        it for a child's datagram when the datagram's order token comes
        (``Supervisor.read_order``), and for its own events as it makes them.
        ``spliced``: a child's event as it goes out, but for its sequence number (``from_child``).
        """
        for listener in self.listeners:
            listener(event)
        self._stream(event.get("qid"), spliced, event)

    def _stream(self, qid: str | None, spliced: bytes | None, event: dict[str, Any] | None) -> None:
        if not self.subscribers:
            return
        self.out.append((qid, spliced, event))
        if self.flushing is None:
            with contextlib.suppress(RuntimeError):  # (no loop: the caller flushes)
                self.flushing = asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write what was published since the last flush: one write per subscriber."""
        if self.flushing is not None:
            self.flushing.cancel()
            self.flushing = None
        batch, self.out = self.out, []
        if not batch or not self.subscribers:
            return
        self.published += len(batch)
        first, self.seq = self.seq + 1, self.seq + len(batch)
        lines = [
            b'{"seq":%d,%s\n' % (seq, spliced) if spliced is not None else self._serialize(event, seq)
            for seq, (_, spliced, event) in enumerate(batch, first)
        ]
        self.history.record(lines)
        for sub in self.subscribers:
            sub.offer(lines, self._drop_notice, batch)

    @staticmethod
    def _serialize(event: dict[str, Any] | None, seq: int) -> bytes:
        assert event is not None
        event["seq"] = seq
        return json.dumps(event, separators=(",", ":")).encode() + b"\n"

    def from_child(self, datagram: bytes, pid: int, service: str) -> None:
        """A child's datagram, one JSON line per event: check each against its record, stamp
        it with who really sent it.

        The check is msgspec's, on the line itself (the envelope, then the record), and the
        line is streamed as the child wrote it, the stamps spliced in: neither the event nor
        its line is rebuilt in Python (that was most of master's work on the bus). Splicing is
        exact: the line holds no line break, and the stamps come first, so nothing the child
        wrote can repeat a key the bus set (a child's STAMPED keys are refused).

        The common event (a kind master does not act on, short, nothing to tell of drops)
        is queued for the stream here, in the loop: no other Python call per event. Only the
        kinds master acts on (ESSENTIAL: the only ones a daemon sends when nobody watches)
        are decoded into the dict master's listeners get (``_rebuilt``), and a line whose
        record is past the cut (it must be longer than MAX_TEXT bytes) or that cannot be spliced.
        """
        stamps = b'"pid":%d,"service":%s,' % (pid, _json_string(service))
        decode, check, clock, unset = events.decode_received, events.DATA, events.CLOCK, msgspec.UNSET
        for raw in datagram.split(b"\n"):
            try:
                sent = decode(raw)
                record = check[sent.kind, sent.type](sent.data)
            except (msgspec.DecodeError, KeyError):  # (a ValidationError is a DecodeError)
                self.invalid += 1
                continue
            if sent.v != events.SCHEMA_VERSION:
                self.invalid += 1
                continue
            if sent.clock > clock.value:  # (CLOCK.heard, inline)
                clock.value = sent.clock
            told = sent.dropped_before is not unset or sent.dropped_qids is not unset  # (even as null)
            spliceable = raw[:1] == b"{" and b"\r" not in raw and not told
            if spliceable and len(raw) <= MAX_TEXT and sent.kind not in events.ESSENTIAL:
                if self.subscribers:  # (``_stream``, inline)
                    self.out.append((sent.qid, stamps + raw[1:], None))
                    if self.flushing is None:
                        with contextlib.suppress(RuntimeError):  # (no loop: the caller flushes)
                            self.flushing = asyncio.get_running_loop().call_soon(self.flush)
                continue
            self._rebuilt(raw, sent, record, pid, service, stamps + raw[1:] if spliceable else None)

    def _rebuilt(
        self,
        raw: bytes,
        sent: events.Received,
        record: records.Record,
        pid: int,
        service: str,
        spliced: bytes | None,
    ) -> None:
        """A checked event of a child's that master acts on, is cut, or tells of drops: as a dict."""
        event = _decode(raw)  # (the same JSON: it decoded as ``sent`` just now)
        event.pop("dropped_before", None)
        event.pop("dropped_qids", None)
        event["seq"], event["pid"], event["service"] = 0, pid, service
        if len(raw) > MAX_TEXT and (short := records.cut(record)) is not record:
            event["data"], spliced = msgspec.to_builtins(short), None
        lost, about = sent.dropped_before, sent.dropped_qids
        if isinstance(lost, int) and lost > 0:
            qids = (
                [q for q in about if isinstance(q, str)][: events.MAX_LOST] if isinstance(about, list) else []
            )
            where = f"{service}[{pid}] event channel"
            self.publish(events.make(names.MASTER, BusDropped(count=lost, where=where, qids=qids)))
        self.publish(event, spliced)

    def add(self, sub: Subscriber, snapshot: dict[str, Any]) -> None:
        sub.writer.transport.write(self._line(snapshot))
        sub.joined_at = self.published
        self.subscribers.append(sub)

    def remove(self, sub: Subscriber) -> None:
        if sub in self.subscribers:
            self.subscribers.remove(sub)
