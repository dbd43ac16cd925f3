"""A subscription to master's event bus that feeds a LessonRunner.

A daemon thread connects to ``run/bus.sock`` (retrying until a deadline: the
socket appears a moment after master writes its status), reads JSON lines,
validates each with ``events.parse_line`` and hands valid events to a callback.
Bad lines are never applied; the last problem is kept for the panel.

Trust: the bus is gossip from the MTA; everything read is validated.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from simmta.core import busclient


class BusSubscription:
    def __init__(self, bus_socket: Path, on_event: Callable[[Mapping[str, Any]], None],
                 on_close: Callable[[], None] | None = None, connect_timeout: float = 15.0):
        self.bus_socket = bus_socket
        self.on_event = on_event
        self.on_close = on_close
        self.connect_timeout = connect_timeout
        self.problem = ""
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name="simmta-lesson-bus", daemon=True)

    def start(self) -> BusSubscription:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._sock = busclient.connect(self.bus_socket, self.connect_timeout, self._stop)
        except OSError as e:
            self.problem = f"event bus {self.bus_socket}: {e}"
            if self.on_close:
                self.on_close()
            return
        try:
            for _raw, event, problem in busclient.lines(self._sock):
                if self._stop.is_set():
                    break
                if event is None:
                    self.problem = problem
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
