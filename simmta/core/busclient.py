"""The subscriber side of master's event bus, shared by every reader of it
(``simmta events``/``record``, the TUI's live feed, the lesson runner).

Trust: the bus is master's, but each line is still validated (parse_line).
"""

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from simmta.core.events import parse_line


def connect(path: Path, wait: float = 0.0, stop: threading.Event | None = None,
            give_up: Callable[[], str] | None = None) -> socket.socket:
    """Connect to the bus, retrying for ``wait`` seconds while the MTA is starting.

    ``give_up`` may say why to stop early (e.g. the MTA process died). Raises
    OSError with a plain reason: refused by the access check, or never there.
    """
    deadline = time.monotonic() + wait
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except PermissionError:
            sock.close()
            raise OSError("permission denied: only the instance owner or root may subscribe") from None
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            why = give_up() if give_up else ""
            if why or time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                raise OSError(why or f"no event bus at {path} (is simmta running?)") from None
            if stop is not None:
                stop.wait(0.02)
            else:
                time.sleep(0.02)


def lines(sock: socket.socket) -> Iterator[tuple[bytes, dict[str, Any] | None, str]]:
    """(raw line, event or None, problem) for each line until the bus closes."""
    with sock, sock.makefile("rb") as stream:
        for raw in stream:
            try:
                yield raw, parse_line(raw), ""
            except ValueError as e:
                yield raw, None, f"bad event from the bus: {e}"
