"""The event schema (version 1) and the emitter every process uses.

Wire and disk format: JSON Lines, one event per line. Every event has:

    v        schema version (1)
    seq      sequence number, assigned by master's bus in arrival order
    ts       wall-clock time (Unix seconds, float)
    mono     CLOCK_MONOTONIC seconds (float) of the emitting process
    pid      emitting process id
    service  emitting service ("master", "smtpd", ... or a tool: "sendmail")
    kind     one of KINDS below
    type     the kind's event type
    qid      the message's queue ID, or null
    sid      the SMTP session id (follows a message before it has a QID), or null
    data     the kind-specific payload (bounded: strings are cut at 512 chars,
             transcripts are neutralised; message bodies are never included)

``KINDS`` below lists, per kind, each type and the payload keys it requires;
``validate()`` checks an event against it. The first events a subscriber gets
are a ``snapshot``/``state`` event (the current state) and then the live stream.

Emitting never blocks: daemons write datagrams (one per event-loop turn, a JSON
line per event) with MSG_DONTWAIT to a socket master gave them before any
privilege drop; when the buffer is full the events are dropped and counted,
and the next event that gets through carries the count (``bus``/``dropped``). Mail never waits for the viewer.

Trust: events are gossip from processes that may be compromised; master and
every subscriber validate what they parse, and the UI shows text inert.
"""

import asyncio
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simmta.core.errors import SimmtaError

SCHEMA_VERSION = 1
MAX_TEXT = 512
MAX_DATAGRAM = 16384

# kind -> type -> required payload keys
KINDS: dict[str, dict[str, tuple[str, ...]]] = {
    "process": {
        "spawned": ("child_pid", "child_service"),
        "ready": (),
        "exited": ("child_pid", "child_service", "status", "served"),
        "replaced": ("old_pid", "child_service"),
        "throttled": ("child_service", "until", "reason"),
        "limit": ("child_service", "limit"),
        "state": ("state",),  # busy / idle / waiting (pace)
    },
    "privilege": {
        "step": ("step", "target", "mode", "outcome"),
        "observed": ("observed_pid", "observed_service", "uid", "gid", "groups",
                     "caps", "root", "mode", "mismatch"),
    },
    "queue": {
        "created": ("queue", "size"),
        "moved": ("from", "to"),
        "removed": ("queue", "reason"),
        "corrupt": ("queue", "reason"),
        "held": (),
        "released": (),
        "deferred": ("next_retry", "reason"),
        "flush": ("deferred", "released"),  # simmta flush (postqueue -f)
    },
    "smtp": {
        "open": ("client",),
        "close": ("client",),
        "command": ("line",),
        "reply": ("line",),  # a multi-line reply's lines joined by LF (reply_text)
        "limit": ("limit", "code"),
        "reject": ("code", "text"),
    },
    "ipc": {
        "request": ("to", "what"),
        "response": ("to", "what", "outcome"),
    },
    "delivery": {
        "delivered": ("rcpt", "via", "where"),
        "deferred": ("rcpt", "via", "reason"),
        "bounced": ("rcpt", "via", "reason"),
        "bounce": ("orig_qid", "sender", "recipients"),
    },
    "fault": {"set": ("fault", "value"), "crash": ("point",)},
    "lab": {"attempt": ("action", "target", "outcome", "detail"),
            "report": ("results", "mode"),  # the compromise script's outcomes, in order
            "scan": ("roots", "setid", "checked", "maildrop", "protected_hardlinks")},
    "pace": {"mode": ("mode", "delay_ms"), "wait": ("hop", "to", "what"), "go": ("hop",)},
    "bus": {"dropped": ("count", "where"), "subscriber": ("action", "subscriber")},
    "snapshot": {"state": ("services", "processes", "queues", "config", "privilege_mode")},
    "master": {"started": ("smtp", "peer", "privilege_mode"), "stopping": ("reason",)},
}

_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe_text(text: str | bytes, limit: int = MAX_TEXT) -> str:
    """Text safe to store and display: control characters made visible, length cut."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "backslashreplace")
    cut = len(text) > limit
    text = text[:limit]
    text = _CTRL.sub(lambda m: f"\\x{ord(m.group()):02x}", text).replace("\r", "\\r").replace("\n", "\\n")
    return text + ("…" if cut else "")


def reply_text(lines: list[str]) -> str:
    """An SMTP reply for ``smtp/reply``'s ``line``: one event per reply, its lines joined by LF."""
    return "\n".join(map(safe_text, lines))


def _bounded(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "…"
    if isinstance(value, dict):
        return {str(k)[:64]: _bounded(v) for k, v in list(value.items())[:64]}
    if isinstance(value, list | tuple):
        return [_bounded(v) for v in value[:256]]
    return value


_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def pid() -> int:
    """This process's id without a system call per event (kept right across fork)."""
    return _pid


def make(service: str, kind: str, type_: str, qid: str | None = None,
         sid: str | None = None, **data: Any) -> dict[str, Any]:
    return {
        "v": SCHEMA_VERSION, "seq": 0, "ts": time.time(), "mono": time.monotonic(),
        "pid": _pid, "service": service, "kind": kind, "type": type_,
        "qid": qid, "sid": sid, "data": _bounded(data),
    }


def validate(event: Any) -> list[str]:
    """Problems with an event (empty list: valid)."""
    if not isinstance(event, dict):
        return ["not a JSON object"]
    problems = []
    for key, typ in (("v", int), ("seq", int), ("ts", float | int), ("mono", float | int),
                     ("pid", int), ("service", str), ("kind", str), ("type", str),
                     ("data", dict)):
        if not isinstance(event.get(key), typ):
            problems.append(f"'{key}' missing or not {getattr(typ, '__name__', typ)}")
    for key in ("qid", "sid"):
        if key not in event or not (event[key] is None or isinstance(event[key], str)):
            problems.append(f"'{key}' missing or not a string/null")
    if problems:
        return problems
    if event["v"] != SCHEMA_VERSION:
        return [f"schema version {event['v']} (this simmta reads {SCHEMA_VERSION})"]
    types = KINDS.get(event["kind"])
    if types is None:
        return [f"unknown kind {event['kind']!r}"]
    required = types.get(event["type"])
    if required is None:
        return [f"unknown type {event['type']!r} of kind {event['kind']!r}"]
    missing = [k for k in required if k not in event["data"]]
    return [f"{event['kind']}/{event['type']}: missing '{k}'" for k in missing]


def parse_line(line: str | bytes) -> dict[str, Any]:
    """One JSON line to a valid event, or ValueError saying what is wrong."""
    try:
        event = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"not valid JSON ({e.msg if hasattr(e, 'msg') else e})") from None
    problems = validate(event)
    if problems:
        raise ValueError("; ".join(problems))
    return event


# Keys master's bus stamps on a child's event; a child's datagram must not carry
# them (who sent it is the kernel's word, its place in the stream the bus's).
STAMPED = ("seq", "pid", "service")

# Kinds master itself acts on: sent even when nobody watches the stream.
ESSENTIAL = frozenset({"pace", "fault", "lab", "privilege", "bus"})


class Emitter:
    """Non-blocking event emission over a datagram socket to master's bus.

    Inside an event loop, the events of one loop turn leave as one datagram
    (JSON lines, at most MAX_DATAGRAM bytes): an SMTP command and its reply
    cost one send, not two. Outside a loop (start-up) each event goes at once.
    With no channel (events disabled, or a tool outside master) emit is a
    no-op; while ``muted`` (master says nobody is subscribed) only ESSENTIAL
    kinds go.
    """

    def __init__(self, service: str, channel: socket.socket | None, muted: bool = False):
        self.service = service
        self.channel = channel
        self.dropped = 0
        self.muted = muted
        self.batch: list[bytes] = []  # this turn's events, as the JSON lines they are sent as
        if channel is not None:
            channel.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self.channel is not None

    def emit(self, kind: str, type_: str, qid: str | None = None, sid: str | None = None,
             **data: Any) -> None:
        if self.channel is None or (self.muted and kind not in ESSENTIAL):
            return
        self.send({"v": SCHEMA_VERSION, "ts": time.time(), "mono": time.monotonic(), "kind": kind,
                   "type": type_, "qid": qid, "sid": sid, "data": _bounded(data)})

    def send(self, event: dict[str, Any], now: bool = False) -> bool:
        """Send an event (the bus's stamps, if any, are left out) with this turn's batch, or ``now``.

        True if it was sent or batched; False (and counted) if it was dropped.
        """
        if self.channel is None:
            return False
        line = _datagram(event)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            now = True
        if now:
            self.flush()
            return self._send([line])
        if not self.batch:
            loop.call_soon(self.flush)
        self.batch.append(line)
        return True

    def flush(self) -> None:
        """Send what this turn emitted (also before the process dies on purpose)."""
        lines, self.batch = self.batch, []
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
        if self.dropped:  # the first event that gets through says how many did not
            lines = [b'{"dropped_before":%d,%s' % (self.dropped, lines[0][1:]), *lines[1:]]
        try:
            self.channel.send(b"\n".join(lines), socket.MSG_DONTWAIT)
        except OSError:  # BlockingIOError: master is behind; anything else: master is gone
            self.dropped += len(lines)
            return False
        self.dropped = 0
        return True


_compact = json.JSONEncoder(separators=(",", ":")).encode


def _datagram(event: dict[str, Any]) -> bytes:
    """An event as a child sends it: without the keys the bus stamps, at most MAX_DATAGRAM."""
    if any(k in event for k in STAMPED):
        event = {k: v for k, v in event.items() if k not in STAMPED}
    sent = event
    raw = _compact(sent).encode()
    if len(raw) > MAX_DATAGRAM:
        sent = {**sent, "data": {k: "…" for k in sent["data"]}}
        raw = _compact(sent).encode()
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
