"""The event envelope (schema version 2) and the emitter every process uses.

Wire and disk format: JSON Lines, one event per line. Every event has:

    v        schema version (2)
    seq      sequence number, assigned by master's bus in the order it streams them
    ts       wall-clock time (Unix seconds, float)
    mono     CLOCK_MONOTONIC seconds (float) of the emitting process
    clock    the emitting process's Lamport clock (causal order, see ``clock``)
    pid      emitting process id
    service  emitting service ("master", "smtpd", ... or a tool: "sendmail")
    kind     the record's kind (``simmta.core.records``)
    type     the record's type
    qid      the message's queue ID, or null
    sid      the SMTP session id (follows a message before it has a QID), or null
    data     the record's fields (bounded: strings are cut at 512 chars,
             transcripts are neutralised; message bodies are never included)

What each kind/type carries is declared once, as a typed record, in
``simmta.core.records``; ``validate()`` checks an event against it (and the
generated reference is ``docs/events.md``). The first events a subscriber gets
are a ``snapshot``/``state`` event (the current state) and then the live stream.
A recording made with another schema version is refused, naming both versions.

Emitting never blocks: daemons write datagrams (a loop turn's events, a JSON
line per event) with MSG_DONTWAIT to a socket master gave them before any
privilege drop; when the buffer is full the events are dropped and counted,
and the next event that gets through carries the count and the queue IDs of
the messages they were about (``bus``/``dropped``: views and checks mark those
messages incomplete instead of reading an order into what is missing). Mail
never waits for the viewer.

Causal order by construction: each datagram is numbered (a ``#N`` first line)
and, once sent, the daemon writes an order token (its pid and N) to one pipe
that every daemon shares (a write of a few bytes to a pipe is atomic and the
pipe is FIFO across writers). A daemon sends what it emitted before any
hand-off that carries the effect (``ipc`` flushes before every send; cleanup
before a queue file becomes visible), so a cause's token is always in the
pipe before its effect's: master streams datagrams in token order, holding
nothing back for any time (``Supervisor.read_order``). A token is never
skipped: when the pipe is full (master far behind) the daemon waits for room
rather than let a later effect's token overtake it. The payload still
comes over the daemon's own channel, whose sender the kernel vouches for: a
lying token can only reorder, never forge. ``clock`` is the process's
Lamport clock, carried on every IPC request and reply (``ipc``).

Trust: events are gossip from processes that may be compromised; master and
every subscriber validate what they parse, and the UI shows text inert.
"""

import asyncio
import contextlib
import os
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import msgspec

from simmta.core import records
from simmta.core.errors import SimmtaError
from simmta.core.records import MAX_TEXT, Record

SCHEMA_VERSION = 2
MAX_DATAGRAM = 16384
TOKEN = struct.Struct("=iQ")  # an order token: pid, datagram number
# Seconds a daemon holds DEFERRED events before it sends them (master reads the
# stream every 10 ms while watched: a viewer sees one at most ~20 ms late). A
# SIGKILL within that time takes them along, as it takes a queue or delivery
# event of the current loop turn: those kinds are never held.
EVENT_TICK = 0.01


class LamportClock:
    """This process's logical clock: ticks per event and per message sent, and jumps
    past every clock it hears of (IPC requests and replies, master's spec)."""

    def __init__(self) -> None:
        self.value = 0

    def tick(self) -> int:
        self.value += 1
        return self.value

    def heard(self, other: object) -> None:
        if isinstance(other, int) and not isinstance(other, bool) and other > self.value:
            self.value = other


CLOCK = LamportClock()


def test_delay(service: str) -> float:
    """The test hook SIMMTA_EVENT_DELAY="cleanup=0.2,...": seconds each of the service's
    event sends waits, as if its channel were slow (tests prove order does not depend on timing)."""
    for item in os.environ.get("SIMMTA_EVENT_DELAY", "").split(","):
        name, _, seconds = item.partition("=")
        if name == service:
            with contextlib.suppress(ValueError):
                return max(0.0, min(float(seconds), 5.0))
    return 0.0


_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe_text(text: str | bytes, limit: int = MAX_TEXT) -> str:
    """Text safe to store and display: control characters made visible, length cut."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "backslashreplace")
    elif len(text) <= limit and text.isprintable():  # the common case: nothing to cut or show
        return text  # (isprintable is False for every character _CTRL, \r or \n would rewrite)
    cut = len(text) > limit
    text = text[:limit]
    text = _CTRL.sub(lambda m: f"\\x{ord(m.group()):02x}", text).replace("\r", "\\r").replace("\n", "\\n")
    return text + ("…" if cut else "")


def reply_text(lines: list[str]) -> str:
    """An SMTP reply for ``smtp/reply``'s ``line``: one event per reply, its lines joined by LF."""
    return "\n".join(map(safe_text, lines))


_pid = os.getpid()


def _forked() -> None:
    global _pid, _loop
    _pid = os.getpid()
    _loop = None


os.register_at_fork(after_in_child=_forked)


# The loop emit last found running, and its thread: asyncio.get_running_loop makes a
# getpid system call each time (to notice a fork), once per event otherwise.
_loop: asyncio.AbstractEventLoop | None = None
_loop_thread = 0


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any (``asyncio.get_running_loop``, cached)."""
    global _loop, _loop_thread
    if _loop is not None and _loop.is_running() and threading.get_ident() == _loop_thread:
        return _loop
    _loop, _loop_thread = asyncio._get_running_loop(), threading.get_ident()
    return _loop


def pid() -> int:
    """This process's id without a system call per event (kept right across fork)."""
    return _pid


def make(
    service: str, record: Record, qid: str | None = None, sid: str | None = None, clock: int | None = None
) -> dict[str, Any]:
    """A whole event (as master makes its own: stamped with this process's clock)."""
    return {
        "v": SCHEMA_VERSION,
        "seq": 0,
        "ts": time.time(),
        "mono": time.monotonic(),
        "clock": CLOCK.tick() if clock is None else clock,
        "pid": _pid,
        "service": service,
        "kind": record.KIND,
        "type": record.TYPE,
        "qid": qid,
        "sid": sid,
        "data": msgspec.to_builtins(records.cut(record)),
    }


_Id = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]  # a queue or session ID: refused if longer, not cut


class Said(msgspec.Struct, forbid_unknown_fields=True):
    """What the emitting process says of an event besides its record (the bus adds seq, pid, service)."""

    v: int
    ts: float
    mono: float
    clock: int
    kind: str
    type: str
    qid: _Id | None
    sid: _Id | None


class Envelope(Said):
    """What every event has besides its record (checked by ``validate``)."""

    seq: int
    pid: int
    service: str
    data: dict[str, Any]


class _Streamed(Said):
    """An event as the bus streams it, its record still JSON (``parse_line``'s check)."""

    seq: int
    pid: int
    service: str
    data: msgspec.Raw


class Received(Said):
    """An event as a child sends it, its record still JSON (master's bus checks it with ``DATA``).

    Unknown keys are refused, and so are the STAMPED ones: they are the bus's to set."""

    data: msgspec.Raw
    dropped_before: Any = msgspec.UNSET  # the child lost this many events before this one ...
    dropped_qids: Any = msgspec.UNSET  # ... about these messages (UNSET: not said, not even null)


# kind, type -> the record's JSON to the record, checked: every field's type, none unknown
DATA: dict[tuple[str, str], Callable[[Any], Record]] = {
    (cls.KIND, cls.TYPE): msgspec.json.Decoder(cls).decode for cls in records.ALL
}
decode_received = msgspec.json.Decoder(Received).decode


def validate(event: Any) -> list[str]:
    """Problems with an event (empty list: valid): its envelope, then its record."""
    if not isinstance(event, dict):
        return ["not a JSON object"]
    if event.get("v") != SCHEMA_VERSION:
        return [
            f"event schema version {event.get('v')!r}: this simmta reads version {SCHEMA_VERSION} "
            "(record it again with this simmta)"
        ]
    try:
        msgspec.convert(event, Envelope)
    except msgspec.ValidationError as e:
        return [str(e)]
    cls = records.record_class(event["kind"], event["type"])
    if cls is None:
        if event["kind"] not in records.RECORDS:
            return [f"unknown kind {event['kind']!r} (known: {', '.join(records.RECORDS)})"]
        return [
            f"unknown type {event['type']!r} of kind {event['kind']!r} "
            f"(known: {', '.join(records.RECORDS[event['kind']])})"
        ]
    try:
        msgspec.convert(event["data"], cls)
    except msgspec.ValidationError as e:
        return [f"{event['kind']}/{event['type']}: {e}"]
    return []


_decode = msgspec.json.Decoder().decode


_decode_streamed = msgspec.json.Decoder(_Streamed).decode


def parse_line(line: str | bytes) -> dict[str, Any]:
    """One JSON line to a valid event, or ValueError saying what is wrong.

    The check is ``validate``'s, done by msgspec on the line itself (the envelope, then
    the record: no Python per field); only a line that fails it goes through ``validate``
    to say why."""
    try:
        event = _decode(line)
    except msgspec.DecodeError as e:
        raise ValueError(f"not valid JSON ({e})") from None
    try:
        head = _decode_streamed(line)
        DATA[head.kind, head.type](head.data)
        if head.v == SCHEMA_VERSION:
            return event
    except (msgspec.DecodeError, KeyError):  # (a ValidationError is a DecodeError)
        pass
    problems = validate(event)
    if problems:
        raise ValueError("; ".join(problems))
    return event


# Keys master's bus stamps on a child's event; a child's datagram must not carry
# them (who sent it is the kernel's word, its place in the stream the bus's).
STAMPED = frozenset({"seq", "pid", "service"})

# Kinds master itself acts on: sent even when nobody watches the stream.
ESSENTIAL = frozenset({"pace", "fault", "lab", "privilege", "bus"})
# Kinds an emitter may hold for up to EVENT_TICK (no message changes place in them).
DEFERRED = frozenset({"smtp", "ipc", "process"})


class _Sent(Said):
    """An event as a child sends it (the bus adds the STAMPED keys)."""

    data: Record


_encode = msgspec.json.Encoder().encode
MAX_LOST = 256  # queue IDs a drop notice names at most


class _Qid(msgspec.Struct):
    qid: str | None = None


_decode_qid = msgspec.json.Decoder(_Qid).decode


class Emitter:
    """Non-blocking event emission over a datagram socket to master's bus.

    Inside an event loop, the events of one loop turn leave as one datagram
    (JSON lines, at most MAX_DATAGRAM bytes); the DEFERRED kinds (transcript,
    IPC, process state) wait up to EVENT_TICK for company, so an SMTP session
    costs a few sends, not one per command and reply. Every hand-off flushes
    the batch first (``ipc``, cleanup's commit), so batching never reorders
    cause and effect. Outside a loop (start-up) each event goes at once.
    With no channel (events disabled, or a tool outside master) emit is a
    no-op; while ``muted`` (master says nobody is subscribed) only ESSENTIAL
    kinds go.
    """

    def __init__(
        self,
        service: str,
        channel: socket.socket | None,
        muted: bool = False,
        order: int | None = None,
        delay: float = 0.0,
    ):
        self.service = service
        self.channel = channel
        self.dropped = 0
        self.lost: set[str] = set()  # queue IDs of the dropped events' messages
        self.muted = muted
        self.order = order  # the shared order pipe (write end), if any
        self.delay = delay  # test hook: seconds each send waits (a slow channel)
        self.sent = 0  # datagrams sent: the number of the last one
        self.batch: list[bytes] = []  # events not sent yet, as the JSON lines they are sent as
        self.timer: asyncio.TimerHandle | None = None  # the flush of held (DEFERRED) events
        self.soon = False  # a flush is due in the next loop turn
        self.urgent = False  # the batch holds an event that leaves in its loop turn (not DEFERRED)
        if channel is not None:
            channel.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self.channel is not None

    def emit(self, record: Record, qid: str | None = None, sid: str | None = None, now: bool = False) -> bool:
        """Send ``record`` with this turn's batch (or ``now``).

        True if it was sent or batched; False if muted, disabled, or dropped (and counted).
        """
        if self.channel is None or (self.muted and record.KIND not in ESSENTIAL):
            return False
        line = _datagram(
            _Sent(
                SCHEMA_VERSION,
                time.time(),
                time.monotonic(),
                CLOCK.tick(),
                record.KIND,
                record.TYPE,
                qid,
                sid,
                record,
            )
        )
        loop = _running_loop()
        if now or loop is None:
            self.flush()
            return self._send([line])
        self.batch.append(line)
        # One flush scheduled at a time (cancelling and scheduling it again per event was
        # most of emit's cost): a flush sends whatever is batched, and cancels the timer.
        if record.KIND not in DEFERRED:  # leaves in this loop turn
            self.urgent = True
            if not self.soon:
                self.soon = True
                loop.call_soon(self._soon)
        elif self.timer is None:
            self.timer = loop.call_later(EVENT_TICK, self._tick)
        return True

    def _soon(self) -> None:
        self.soon = False
        if self.urgent:  # (not sent yet by a hand-off's flush: held events wait for their timer)
            self.flush()

    def _tick(self) -> None:
        self.timer = None
        self.flush()

    def flush(self) -> None:
        """Send what was batched (also before every hand-off, and before the process dies on purpose).

        The held events' timer goes with them: the next DEFERRED event starts its own, so
        each waits at most EVENT_TICK and may still find company (a process's state after
        a connection goes with the next connection's first events if it comes within the
        tick), and no timer wakes the process to find nothing."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        lines, self.batch = self.batch, []
        self.urgent = False
        start, size = 0, 0
        for i, line in enumerate(lines):
            if i > start and size + len(line) > MAX_DATAGRAM:
                self._send(lines[start:i])
                start, size = i, 0
            size += len(line) + 1
        if lines:
            self._send(lines[start:])

    def _send(self, lines: list[bytes]) -> bool:
        assert self.channel is not None
        if self.dropped:  # the first event that gets through says how many did not, and about what
            told = b'{"dropped_before":%d,"dropped_qids":%s,' % (self.dropped, _encode(sorted(self.lost)))
            lines = [told + lines[0][1:], *lines[1:]]
        if self.delay:
            time.sleep(self.delay)  # (the test hook: the channel takes this long)
        try:
            self.channel.send(b"#%d\n" % (self.sent + 1) + b"\n".join(lines), socket.MSG_DONTWAIT)
        except OSError:  # BlockingIOError: master is behind; anything else: master is gone
            self.dropped += len(lines)
            for line in lines:
                qid = _decode_qid(line).qid
                if qid is not None and len(self.lost) < MAX_LOST:
                    self.lost.add(qid)
            return False
        self.sent += 1
        self.dropped = 0
        self.lost.clear()
        self._token()
        return True

    def _token(self) -> None:
        """Tell master, through the order pipe, that datagram ``sent`` is in the channel.

        If the pipe is full this waits until master makes room: a token left for
        later would let the token of an effect (another daemon's, after the
        hand-off that follows) reach master first."""
        if self.order is None:
            return
        token = TOKEN.pack(_pid, self.sent)
        while True:
            try:
                os.write(self.order, token)
                return
            except BlockingIOError:
                poll = select.poll()
                poll.register(self.order, select.POLLOUT)
                poll.poll()
            except OSError:  # master is gone
                return


def _datagram(event: _Sent) -> bytes:
    """An event as one JSON line of at most MAX_DATAGRAM bytes, its record cut to the bounds
    (long text and lists cut further to fit). Only a line longer than MAX_TEXT bytes can
    hold a field past the cut: the rest are sent as they are encoded."""
    raw = _encode(event)
    if len(raw) > MAX_TEXT and (short := records.cut(event.data)) is not event.data:
        event.data = short
        raw = _encode(event)
    if len(raw) > MAX_DATAGRAM:
        rec = event.data
        cut = {
            f: (v[:64] if isinstance(v, str) else v[:8])
            for f in rec.__struct_fields__
            if isinstance(v := getattr(rec, f), str | list)
        }
        event.data = msgspec.structs.replace(rec, **cut)
        raw = _encode(event)
    return raw


def read_recording(path: Path) -> Iterator[dict[str, Any]]:
    """Events of a recording; SimmtaError naming the line on damage."""
    try:
        lines = path.open("rb")
    except OSError as e:
        raise SimmtaError(f"{path}: {e.strerror}") from None
    with lines:
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if not line.endswith(b"\n"):
                raise SimmtaError(f"{path}, line {n}: truncated (no end of line)")
            try:
                yield parse_line(line)
            except ValueError as e:
                raise SimmtaError(f"{path}, line {n}: {e}") from None
