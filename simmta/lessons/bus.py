"""A subscription to master's event bus that feeds a LessonRunner.

A daemon thread connects to ``run/bus.sock`` (retrying until a deadline: the
socket appears a moment after master writes its status), reads JSON lines,
validates each with ``events.parse_line`` and hands valid events to a callback.
Bad lines are counted, never applied.

Trust: the bus is gossip from the MTA; everything read is validated.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from simmta.core.events import parse_line


class BusSubscription:
    def __init__(self, bus_socket: Path, on_event: Callable[[Mapping[str, Any]], None],
                 on_close: Callable[[], None] | None = None, connect_timeout: float = 15.0):
        self.bus_socket = bus_socket
        self.on_event = on_event
        self.on_close = on_close
        self.connect_timeout = connect_timeout
        self.bad_lines = 0
        self.problem = ""
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name="simmta-lesson-bus", daemon=True)

    def start(self) -> BusSubscription:
        self._thread.start()
        return self

    def _connect(self) -> socket.socket | None:
        deadline = time.monotonic() + self.connect_timeout
        while not self._stop.is_set():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.bus_socket))
                return sock
            except OSError as e:
                sock.close()
                if time.monotonic() >= deadline:
                    self.problem = f"event bus {self.bus_socket}: {e.strerror or e}"
                    return None
            self._stop.wait(0.1)  # bounded retry until the deadline
        return None

    def _run(self) -> None:
        sock = self._connect()
        if sock is None:
            if self.on_close:
                self.on_close()
            return
        self._sock = sock
        try:
            with sock, sock.makefile("rb") as stream:
                for raw in stream:
                    if self._stop.is_set():
                        break
                    try:
                        event = parse_line(raw)
                    except ValueError as e:
                        self.bad_lines += 1
                        self.problem = f"bad event from the bus: {e}"
                        continue
                    self.on_event(event)
        except OSError as e:
            if not self._stop.is_set():
                self.problem = f"event bus: {e.strerror or e}"
        finally:
            if self.on_close:
                self.on_close()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive():
            self._thread.join(timeout)
