"""The IPC frames between daemons: what a reader accepts and what it refuses."""

import asyncio
import json
import socket
import struct
from pathlib import Path

import pytest

from simmta.core import ipc


def _read(raw: bytes) -> dict[str, object]:
    """What a Conn reads from these bytes (the peer then closes)."""

    async def go() -> dict[str, object]:
        a, b = socket.socketpair()
        with a, b:
            a.sendall(raw)
            a.shutdown(socket.SHUT_WR)
            return await ipc.Conn(b).read_json()

    return asyncio.run(go())


def test_a_request_round_trips_compactly() -> None:
    req = {"request": "deliver", "qid": "4F2A9C1B3D", "recipients": [{"address": "bob@x", "offset": 7}]}
    frame = ipc.encode_json(req)
    clock = json.loads(frame[5:])["clock"]  # this process's Lamport clock rides along
    assert isinstance(clock, int)
    assert frame[5:] == json.dumps({**req, "clock": clock}, separators=(",", ":")).encode()
    assert _read(frame) == req  # the reader takes the clock off


@pytest.mark.parametrize("payload", [b'{"a": NaN}', b"[1, 2]", b'{"a": 1', b"\xff\xfe", b'"text"', b""])
def test_what_is_not_a_json_object_is_a_protocol_error(payload: bytes) -> None:
    with pytest.raises(ipc.ProtocolError):
        _read(struct.pack("!cI", b"J", len(payload)) + payload)


def test_an_oversized_or_unknown_frame_is_refused_before_it_is_read() -> None:
    with pytest.raises(ipc.ProtocolError, match="too long"):
        _read(struct.pack("!cI", b"J", ipc.MAX_JSON + 1))
    with pytest.raises(ipc.ProtocolError, match="unknown frame"):
        _read(struct.pack("!cI", b"X", 0))


def test_a_trigger_is_one_byte_on_a_fresh_connection(tmp_path: Path) -> None:
    path = str(tmp_path / "qmgr")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        assert asyncio.run(ipc.trigger(path, b"I"))
        conn, _ = listener.accept()
        with conn:
            assert conn.recv(16) == b"I"
    assert not asyncio.run(ipc.trigger(str(tmp_path / "nobody-listens"), b"I"))


def test_socket_paths_are_kept_per_service_and_follow_the_chroot(tmp_path: Path) -> None:
    from simmta.core.skeleton import Context

    spec = {
        "service": {"name": "smtpd", "type": "inet", "command": "smtpd"},
        "config": {},
        "instance": str(tmp_path),
        "mode": "rootless",
        "socket_dirs": {"qmgr": "public"},
    }
    ctx = Context(spec, None)  # type: ignore[arg-type]  # (no events here)
    queue = tmp_path / "queue"
    assert ctx.socket_path("qmgr") == str(queue / "public" / "qmgr")
    assert ctx.socket_path("cleanup") == str(queue / "private" / "cleanup")  # private unless the table says
    assert ctx.socket_path("qmgr") is ctx.socket_path("qmgr")  # kept, not joined again
    ctx.queue = Path("/")  # as after the chroot into the queue directory
    assert (ctx.socket_path("qmgr"), ctx.socket_path("cleanup")) == ("/public/qmgr", "/private/cleanup")
