"""Client side of master's control socket, and the list of control operations.

Protocol: connect to ``run/control.sock`` (the peer is checked with SO_PEERCRED:
only the instance owner or root), send one JSON object on one line, read one
JSON line back: ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.

Operations (``op``):
    status                                   master's status (as ``simmta status``)
    kill      service, signal="TERM", pid?   signal one process of a service (or the given pid)
    fault     target="peer"|"queue", value   peer: none|down|tempfail|permfail|slow; queue: none|full
    crash     service, point                 arm a crash point (one shot), see names.CRASH_POINTS
    pace      mode="live"|"slow"|"step", delay_ms=500
    step                                     release one waiting hop (step mode)
    queue     action="hold"|"release"|"requeue"|"delete", qid
    lab       action, service                a lab attempt (only with ``simmta run --lab``)

Trust: the client trusts nothing master says beyond JSON shape.
"""

import json
import socket
from pathlib import Path
from typing import Any

from simmta.core.errors import SimmtaError

LAB_ACTIONS = ("read-secret", "write-maildir", "regain-root")
SIGNALS = ("TERM", "KILL", "HUP", "INT", "SEGV", "STOP", "CONT")
PACE_MODES = ("live", "slow", "step")


def request(path: Path, op: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
    """One control request; SimmtaError if master cannot be reached or refuses."""
    msg = json.dumps({"op": op, **args}).encode() + b"\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(msg)
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
    except FileNotFoundError:
        raise SimmtaError(f"no simmta running ({path} does not exist)") from None
    except PermissionError:
        raise SimmtaError(f"permission denied on {path}: only the instance owner or root") from None
    except OSError as e:
        raise SimmtaError(f"cannot talk to master at {path}: {e.strerror or e}") from None
    try:
        reply = json.loads(buf)
        assert isinstance(reply, dict)
    except (ValueError, AssertionError):
        raise SimmtaError(
            "master closed the control connection without an answer (refused, or it is shutting down)"
        ) from None
    if not reply.get("ok"):
        raise SimmtaError(str(reply.get("error", "refused")))
    return reply


def describe(op: str, args: dict[str, Any], reply: dict[str, Any]) -> str:
    """A request and master's answer as one line of plain text (``kill service=smtpd: killed 123``)."""

    def show(value: Any) -> str:  # plain words, never Python's repr of a list, tuple or bytes
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        if isinstance(value, dict):
            return " ".join(f"{k}={show(v)}" for k, v in value.items())
        if isinstance(value, list | tuple):
            return ", ".join(show(v) for v in value) or "none"
        return str(value)

    detail = ", ".join(f"{k} {show(v)}" for k, v in reply.items() if k != "ok") or "ok"
    what = " ".join(f"{k}={v}" for k, v in args.items() if v is not None)
    if detail == f"{op} {what}":  # master echoed the request: say it was done, not it twice
        detail = "done"
    return f"{op} {what}: {detail}" if what else f"{op}: {detail}"
