"""One bus subscription for every browser session of ``simmta serve``.

The server holds a single subscription to master's bus and copies each line
to every session's app process over a socketpair, so thirty students cost the
MTA one subscriber. A session that joins late needs the current state: it
gets a fresh snapshot, read from a momentary second connection to the bus
(master flushes the stream before it writes a snapshot, and the snapshot
carries the bus's sequence number S), then every line of the shared stream
with a sequence number above S, from a short ring of recent lines and then
live. Nothing is sent twice and nothing is missed; if the ring no longer
reaches back to S the session is told how many events it lost.

Writes to a session never wait: a session whose socket is full loses
events, counted, and gets a ``bus``/``dropped`` notice when it drains
(``simmta.master.bus.Subscriber``, the same rule master applies to us).

Trust: bus lines are validated (``parse_line``) before they are passed on;
sessions can send nothing back (what they write is read and ignored).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import deque
from collections.abc import Callable
from pathlib import Path

from simmta.core import events
from simmta.core.records import BusDropped
from simmta.master.bus import Subscriber

RING = 20_000  # recent lines kept for sessions that join while the stream moves
LINE_LIMIT = 1 << 20  # bytes: the bus never sends a longer line (a snapshot included)


class Fanout:
    def __init__(self, bus_socket: Path) -> None:
        self.bus_socket = bus_socket
        self.ring: deque[tuple[int, bytes]] = deque(maxlen=RING)
        self.sessions: dict[Subscriber, int] = {}  # session -> last seq it has (its snapshot's)
        self.problem = ""
        self.lines = 0  # read from the bus (for the server's log and tests)
        self.snapshots = 0  # momentary connections made for joining sessions
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, dict[str, object], bytes]:
        """A bus connection and its first line, the snapshot."""
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.bus_socket), limit=LINE_LIMIT)
            raw = await reader.readline()
        except (OSError, ValueError) as e:
            raise OSError(f"event bus {self.bus_socket}: {e}") from None
        try:
            snapshot = events.parse_line(raw)
        except ValueError as e:
            writer.close()
            raise OSError(f"event bus {self.bus_socket}: bad first line: {e}") from None
        if snapshot["kind"] != "snapshot":
            writer.close()
            raise OSError(f"event bus {self.bus_socket}: the first line is not a snapshot")
        return reader, writer, snapshot, raw

    async def start(self) -> None:
        """Subscribe (the one subscription); raises OSError with a plain reason."""
        self._reader, self._writer, snapshot, raw = await self._connect()
        self.ring.append((int(snapshot["seq"]), raw))  # type: ignore[call-overload]

    async def run(self, on_end: Callable[[str], None]) -> None:
        """Copy the stream to every session until the bus closes; then ``on_end(why)``."""
        assert self._reader is not None
        why = "the MTA closed its event bus (stopped?)"
        try:
            while raw := await self._reader.readline():
                self._line(raw)
        except (OSError, ValueError) as e:
            why = f"event bus {self.bus_socket}: {e}"
        self.problem = why
        for session in list(self.sessions):
            self.leave(session)
        on_end(why)

    def _line(self, raw: bytes) -> None:
        try:
            seq = int(events.parse_line(raw)["seq"])
        except ValueError:
            return  # never pass on what does not parse
        self.lines += 1
        self.ring.append((seq, raw))
        for session, have in self.sessions.items():
            if seq > have:
                session.offer([raw], self._drop_notice)

    @staticmethod
    def _drop_notice(count: int, where: str, qids: list[str]) -> bytes:
        notice = events.make("serve", BusDropped(count=count, where=where, qids=qids))
        return json.dumps(notice, separators=(",", ":")).encode() + b"\n"

    async def join(self, name: str) -> tuple[socket.socket, Subscriber]:
        """A new session: the app's end of a socketpair, already holding the snapshot."""
        _, temp, snapshot, raw = await self._connect()
        temp.close()
        self.snapshots += 1
        mine, theirs = socket.socketpair()
        try:
            _, writer = await asyncio.open_connection(sock=mine)
        except OSError:
            theirs.close()
            raise
        session = Subscriber(writer, name)
        have = int(snapshot["seq"])  # type: ignore[call-overload]
        backlog = [line for seq, line in self.ring if seq > have]
        writer.transport.write(raw)  # the snapshot first, always
        if self.ring and self.ring[0][0] > have + 1:  # the ring no longer reaches the snapshot
            session.dropped = self.ring[0][0] - have - 1
        session.offer(backlog, self._drop_notice)
        self.sessions[session] = have
        return theirs, session

    def leave(self, session: Subscriber) -> None:
        self.sessions.pop(session, None)
        with contextlib.suppress(OSError):
            session.writer.close()

    def stop(self) -> None:
        for session in list(self.sessions):
            self.leave(session)
        if self._writer is not None:
            self._writer.close()
