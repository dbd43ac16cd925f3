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
import json
import struct
from typing import Any

MAX_JSON = 64 * 1024
MAX_CHUNK = 256 * 1024
_HDR = struct.Struct("!cI")


class ProtocolError(Exception):
    """The other side broke the protocol (or went away)."""


def _frame(kind: bytes, payload: bytes) -> bytes:
    return _HDR.pack(kind, len(payload)) + payload


def encode_json(obj: dict[str, Any]) -> bytes:
    return _frame(b"J", json.dumps(obj, separators=(",", ":")).encode())


def encode_content(data: bytes | memoryview) -> list[bytes | memoryview]:
    """Frames for ``data`` without copying the payload."""
    view = memoryview(data)
    out: list[bytes | memoryview] = []
    for i in range(0, len(view), MAX_CHUNK):
        part = view[i:i + MAX_CHUNK]
        out += [_HDR.pack(b"D", len(part)), part]
    out.append(_frame(b"E", b""))
    return out


async def _read_frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    try:
        hdr = await reader.readexactly(_HDR.size)
        kind, length = _HDR.unpack(hdr)
        if kind not in (b"J", b"D", b"E"):
            raise ProtocolError(f"unknown frame type {kind!r}")
        if length > (MAX_JSON if kind == b"J" else MAX_CHUNK) or (kind == b"E" and length):
            raise ProtocolError(f"frame too long ({length} bytes)")
        return kind, await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ProtocolError("connection closed mid-frame") from None


async def read_json(reader: asyncio.StreamReader) -> dict[str, Any]:
    kind, payload = await _read_frame(reader)
    if kind != b"J":
        raise ProtocolError("expected a JSON frame")
    try:
        obj = json.loads(payload)
    except ValueError:
        raise ProtocolError("bad JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("JSON frame is not an object")
    return obj


async def read_content(reader: asyncio.StreamReader, limit: int) -> bytes:
    """Content frames up to E; ProtocolError past ``limit`` bytes."""
    parts: list[bytes] = []
    total = 0
    while True:
        kind, payload = await _read_frame(reader)
        if kind == b"E":
            return b"".join(parts)
        if kind != b"D":
            raise ProtocolError("expected content")
        total += len(payload)
        if total > limit:
            raise ProtocolError("content over the size limit")
        parts.append(payload)


def field(obj: dict[str, Any], key: str, typ: type | tuple[type, ...]) -> Any:
    """A field of a request, type-checked (ProtocolError otherwise)."""
    value = obj.get(key)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ProtocolError(f"field {key!r} missing or of the wrong type")
    return value


async def call(path: str, request: dict[str, Any], content: bytes | None = None,
               timeout: float = 60.0) -> dict[str, Any]:
    """Send one request (and content) to the service at ``path``; return its reply."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_unix_connection(path)
        try:
            writer.write(encode_json(request))
            if content is not None:
                writer.writelines(encode_content(content))
            await writer.drain()
            return await read_json(reader)
        finally:
            writer.close()


async def reply(writer: asyncio.StreamWriter, status: str, **fields: Any) -> None:
    writer.write(encode_json({"status": status, **fields}))
    await writer.drain()


async def trigger(path: str, what: bytes, timeout: float = 5.0) -> bool:
    """Send a one-byte wake-up; False if nobody listens (the scan timer catches up)."""
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_unix_connection(path)
            writer.write(what)
            await writer.drain()
            writer.close()
        return True
    except (OSError, TimeoutError):
        return False
