"""The one IPC protocol between daemons, and the client stub every daemon uses.

Over UNIX stream sockets in ``private/`` and ``public/``. A frame is one type
byte, a 4-byte big-endian length, and the payload:

    J   a JSON object (request, reply, or attributes), at most 64 KiB
    D   a chunk of message content, at most 256 KiB
    E   end of content (empty)

A request is ``J`` (with ``"request": NAME``), optionally followed by content
(``D``... ``E``); the reply is one ``J`` with ``"status"``: "ok", "defer"
(temporary: try later), or "fail" (permanent), plus request-specific fields.
Wake-up triggers for qmgr and pickup are a single byte on a fresh connection
(``names.TRIGGER_*``), as in Postfix.

Trust: IPC is gossip. Every reader checks frame types, lengths and the JSON
shape, and a daemon validates field values before acting on them.
"""

import asyncio
import socket
import struct
from collections.abc import Callable
from typing import Any

import msgspec

from simmta.core.events import CLOCK

MAX_JSON = 64 * 1024
MAX_CHUNK = 256 * 1024
_HDR = struct.Struct("!cI")
# msgspec's JSON: the same bytes as json.dumps(..., separators=(",", ":")), 5-10 times faster
# both ways (see the README); NaN, Infinity and other non-JSON are refused like any bad frame.
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _no_events() -> None:
    pass


# Called before anything is sent: the process's events leave before the
# hand-off they describe, so master's bus sees cause before effect.
flush_events: Callable[[], None] = _no_events


class ProtocolError(Exception):
    """The other side broke the protocol (or went away)."""


def _frame(kind: bytes, payload: bytes) -> bytes:
    return _HDR.pack(kind, len(payload)) + payload


def encode_json(obj: dict[str, Any]) -> bytes:
    """A J frame; it carries this process's Lamport clock (``clock``)."""
    return _frame(b"J", _encode({**obj, "clock": CLOCK.tick()}))


def encode_content(data: bytes | memoryview) -> list[bytes | memoryview]:
    """Frames for ``data`` without copying the payload."""
    view = memoryview(data)
    out: list[bytes | memoryview] = []
    for i in range(0, len(view), MAX_CHUNK):
        part = view[i : i + MAX_CHUNK]
        out += [_HDR.pack(b"D", len(part)), part]
    out.append(_frame(b"E", b""))
    return out


def field(obj: dict[str, Any], key: str, typ: type | tuple[type, ...]) -> Any:
    """A field of a request, type-checked (ProtocolError otherwise)."""
    value = obj.get(key)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ProtocolError(f"field {key!r} missing or of the wrong type")
    return value


class Conn:
    """One IPC connection on a non-blocking socket, read and written through the loop.

    asyncio's streams would build a transport, a protocol, a reader and a
    writer for every connection, and the MTA makes three connections per
    message; ``loop.sock_*`` on the bare socket costs a fraction of that.
    """

    def __init__(self, sock: socket.socket):
        sock.setblocking(False)
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.buf = bytearray()

    async def read_some(self, limit: int) -> bytes:
        """Up to ``limit`` bytes, whatever has arrived (b"" at end of file)."""
        if self.buf:
            data, self.buf = bytes(self.buf[:limit]), self.buf[limit:]
            return data
        return await self.loop.sock_recv(self.sock, limit)

    async def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            data = await self.loop.sock_recv(self.sock, max(n - len(self.buf), 65536))
            if not data:
                raise ProtocolError("connection closed mid-frame")
            self.buf += data
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def _frame(self) -> tuple[bytes, bytes]:
        kind, length = _HDR.unpack(await self._exactly(_HDR.size))
        if kind not in (b"J", b"D", b"E"):
            raise ProtocolError(f"unknown frame type {kind!r}")
        if length > (MAX_JSON if kind == b"J" else MAX_CHUNK) or (kind == b"E" and length):
            raise ProtocolError(f"frame too long ({length} bytes)")
        return kind, await self._exactly(length)

    async def read_json(self) -> dict[str, Any]:
        kind, payload = await self._frame()
        if kind != b"J":
            raise ProtocolError("expected a JSON frame")
        try:
            obj = _decode(payload)
        except msgspec.DecodeError:
            raise ProtocolError("bad JSON") from None
        if not isinstance(obj, dict):
            raise ProtocolError("JSON frame is not an object")
        CLOCK.heard(obj.pop("clock", None))
        return obj

    async def read_content(self, limit: int) -> bytes:
        """Content frames up to E; ProtocolError past ``limit`` bytes."""
        parts: list[bytes] = []
        total = 0
        while True:
            kind, payload = await self._frame()
            if kind == b"E":
                return b"".join(parts)
            if kind != b"D":
                raise ProtocolError("expected content")
            total += len(payload)
            if total > limit:
                raise ProtocolError("content over the size limit")
            parts.append(payload)

    async def send(self, *parts: bytes | memoryview) -> None:
        flush_events()
        for part in _coalesce(parts):
            await self.loop.sock_sendall(self.sock, part)

    async def reply(self, status: str, **fields: Any) -> None:
        await self.send(encode_json({"status": status, **fields}))

    def close(self) -> None:
        self.sock.close()


def _coalesce(parts: tuple[bytes | memoryview, ...]) -> list[bytes | memoryview]:
    """Small frames joined into one send; large content sent as it is, uncopied."""
    if sum(len(p) for p in parts) <= MAX_CHUNK:
        return [b"".join(parts)]
    return list(parts)


async def connect(path: str) -> Conn:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, path)
    except BaseException:
        sock.close()
        raise
    return Conn(sock)


async def call(
    path: str, request: dict[str, Any], content: bytes | None = None, timeout: float = 60.0
) -> dict[str, Any]:
    """Send one request (and content) to the service at ``path``; return its reply."""
    async with asyncio.timeout(timeout):
        conn = await connect(path)
        try:
            await conn.send(encode_json(request), *(encode_content(content) if content is not None else ()))
            return await conn.read_json()
        finally:
            conn.close()


async def trigger(path: str, what: bytes, timeout: float = 5.0) -> bool:
    """Send a one-byte wake-up; False if nobody listens (the scan timer catches up).

    A UNIX-socket connect and a one-byte send complete at once unless the
    listener's backlog is full, so they are tried directly first (no futures,
    no timer); only a full backlog falls back to waiting in the loop."""
    flush_events()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    try:
        sock.connect(path)
        return sock.send(what) == len(what)
    except (BlockingIOError, InterruptedError):
        pass
    except OSError:
        return False
    finally:
        sock.close()
    try:
        async with asyncio.timeout(timeout):
            conn = await connect(path)
            try:
                await conn.send(what)
            finally:
                conn.close()
        return True
    except (OSError, TimeoutError):
        return False
