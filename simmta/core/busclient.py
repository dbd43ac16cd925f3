"""The subscriber side of master's event bus, shared by every reader of it
(``simmta events``/``record``, the TUI's live feed, the lesson runner):
``connect`` and ``lines`` for a plain loop, ``Subscription`` for a reader thread.

Trust: the bus is master's, but each line is still validated (parse_line).
"""

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from simmta.core.events import parse_line


def connect(
    path: Path,
    wait: float = 0.0,
    stop: threading.Event | None = None,
    give_up: Callable[[], str] | None = None,
) -> socket.socket:
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


class Subscription:
    """One subscription to master's bus, read in a thread: validated events to listeners.

    The one bus client of every reader: the TUI's live feed, the lesson runner
    (a lesson's TUI shares one subscription between both), ``simmta events``
    and ``simmta record``. Listeners are called in the reader thread, in
    stream order, and must be added before ``start``. ``on_close`` is called
    once when the stream ends (or never began); ``problem`` says why.
    """

    def __init__(
        self,
        bus_socket: Path,
        wait: float = 0.0,
        starting: Callable[[], str] | None = None,
        sock: socket.socket | None = None,
    ):
        """``wait``: seconds to keep trying while the MTA is still starting; ``starting`` says
        why to give up early (the MTA process died), or "". ``sock``: a stream already connected."""
        self.bus_socket = bus_socket
        self.wait, self.starting = wait, starting
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self.closers: list[Callable[[], None]] = []
        self.problem = ""
        self.fatal = ""  # why the MTA this subscription waited for never started ("" otherwise)
        self.bad_lines = 0
        self.connected = False
        self._stop = threading.Event()
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="simmta-bus", daemon=True)

    def listen(
        self, listener: Callable[[dict[str, Any]], None], on_close: Callable[[], None] | None = None
    ) -> "Subscription":
        self.listeners.append(listener)
        if on_close is not None:
            self.closers.append(on_close)
        return self

    def start(self) -> "Subscription":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            if self._sock is None:
                self._sock = connect(self.bus_socket, self.wait, self._stop, self.starting)
            self.connected = True
            for _raw, event, problem in lines(self._sock):
                if self._stop.is_set():
                    return
                if event is None:
                    self.bad_lines += 1
                    self.problem = problem
                    continue
                for listener in self.listeners:
                    listener(event)
            self.problem = "the MTA closed the event stream (stopped?)"
        except OSError as e:
            if not self._stop.is_set():
                self.problem = f"event bus {self.bus_socket}: {e.strerror or e}"
                if not self.connected and self.starting is not None and self.starting():
                    self.fatal = str(e)  # the MTA we started died before its bus opened
        finally:
            self.connected = False
            if self._sock is not None:
                self._sock.close()
            for closer in self.closers:
                closer()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
