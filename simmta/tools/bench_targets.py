"""The servers ``simmta bench`` measures: a fresh simmta instance, or any SMTP server on loopback.

``SimmtaTarget`` creates a temporary instance directory, starts
``python -m simmta run --instance DIR --smtp-port 0``, measures its cold start
(spawn until the SMTP greeting arrives), optionally attaches an event
subscriber, and stops it with SIGTERM to the pid it started (SIGKILL to that
same pid only if it does not stop in time). ``ExternalTarget`` is a server
someone else runs (``--target``): it is never started or stopped, only found
(the pid holding the listening socket) so its CPU and memory can be read.

The subscriber is a separate process (``python -m simmta.tools.bench_targets
SOCKET``), not a thread of the bench: a thread would compete with the load
generator for the GIL and make the events look dearer than they are. It reads
every line of the bus and parses it with ``events.parse_line``, the TUI's own
parser (JSON, then the schema check).

Trust: starts and stops only its own children, by pid; instance directories
it creates are removed unless ``keep`` is set.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from simmta.core import privilege
from simmta.core.errors import SimmtaError
from simmta.core.events import parse_line
from simmta.core.instance import Instance
from simmta.tools.bench_stats import find_listener

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
POLL = 0.005  # fine-grained, so the cold start figure is not rounded up by the poll
T = TypeVar("T")


@dataclass
class Endpoint:
    """What a started target offers the bench."""

    host: str
    port: int
    root_pid: int | None  # top of the server's process tree (None: not found)
    maildir: Path | None  # where end-to-end deliveries land (None: not measured)
    recipient: str
    cold_start: float | None = None  # seconds from spawn to the SMTP greeting


class Target(Protocol):
    label: str

    def start(self) -> Endpoint: ...

    def stop(self) -> None: ...


def _poll(what: str, deadline: float, check: Callable[[], T | None]) -> T:
    """Call ``check`` until it returns something truthy; SimmtaError at the deadline."""
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SimmtaError(f"timed out waiting for {what}")
        time.sleep(POLL)


def read_greeting(host: str, port: int, timeout: float) -> bool:
    """True when the server at host:port answers 220 (False while it refuses connections)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            data = b""
            while b"\n" not in data and len(data) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                data += chunk
            with contextlib.suppress(OSError):
                s.sendall(b"QUIT\r\n")
            return data.startswith(b"220")
    except OSError:
        return False


class ExternalTarget:
    """An SMTP server the bench does not run (``--target HOST:PORT``)."""

    def __init__(
        self,
        host: str,
        port: int,
        maildir: Path | None,
        recipient: str,
        server_pid: int | None = None,
        label: str = "target",
    ):
        self.host, self.port, self.maildir = host, port, maildir
        self.recipient, self.server_pid, self.label = recipient, server_pid, label

    def start(self) -> Endpoint:
        if not read_greeting(self.host, self.port, 10.0):
            raise SimmtaError(f"no SMTP server answers on {self.host}:{self.port}")
        pid = self.server_pid or find_listener(self.port)
        return Endpoint(self.host, self.port, pid, self.maildir, self.recipient)

    def stop(self) -> None:
        pass


class SimmtaTarget:
    """A fresh simmta instance, started for one measurement and stopped after it."""

    def __init__(
        self,
        events: bool,
        subscriber: bool,
        keep: bool = False,
        recipient: str = "bob@simmta.test",
        label: str = "simmta",
        settings: Sequence[str] = (),
        profile: str = "postfix",
    ):
        self.profile = profile  # the architecture (services table) the instance runs
        self.events, self.subscriber, self.keep = events, subscriber, keep
        self.recipient, self.label = recipient, label
        self.settings = list(settings)  # extra main.toml lines
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.sub_proc: subprocess.Popen[bytes] | None = None
        self.failed = False
        self.events_seen: int | None = None
        self.subscriber_cpu_s: float | None = None

    def start(self) -> Endpoint:
        try:
            return self._start()
        except BaseException:
            self.failed = True  # keep the instance directory: its log says why
            raise

    def _start(self) -> Endpoint:
        self.dir = Path(tempfile.mkdtemp(prefix="simmta-bench-"))
        self.dir.chmod(0o755)  # daemons that dropped privileges must reach their subtrees
        instance = Instance(self.dir)
        lines = [f"events_enabled = {'true' if self.events else 'false'}", *self.settings]
        instance.main_cf.write_text("\n".join(lines) + "\n")
        log = open(self.dir / "bench-run.log", "wb")  # noqa: SIM115 - the child keeps it open
        spawned = time.monotonic()
        argv = [
            sys.executable,
            "-m",
            "simmta",
            "run",
            "--instance",
            str(self.dir),
            "--smtp-port",
            "0",
            "--profile",
            self.profile,
        ]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = spawned + START_TIMEOUT
        status = _poll("simmta's status.json", deadline, lambda: self._status(instance))
        host, port = status["smtp"]["host"], int(status["smtp"]["port"])
        _poll("simmta's SMTP greeting", deadline, lambda: self._greets(host, port))
        cold_start = time.monotonic() - spawned
        if self.subscriber:
            self._start_subscriber(instance, deadline)
        return Endpoint(
            host,
            port,
            int(status["master_pid"]),
            instance.maildir(self.recipient.split("@")[0]),
            self.recipient,
            cold_start,
        )

    def _alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise SimmtaError(
                f"simmta run exited with status {self.proc.returncode} (see {self.dir}/bench-run.log)"
            )

    def _status(self, instance: Instance) -> dict[str, Any] | None:
        self._alive()
        try:
            return instance.status()
        except SimmtaError:
            return None

    def _greets(self, host: str, port: int) -> bool:
        self._alive()
        return read_greeting(host, port, 5.0)

    def _start_subscriber(self, instance: Instance, deadline: float) -> None:
        _poll("simmta's event bus", deadline, instance.bus_socket.exists)
        self.sub_proc = subprocess.Popen(
            [sys.executable, "-m", "simmta.tools.bench_targets", str(instance.bus_socket)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        # The subscriber says "ready" once connected, so no event of the run is missed.
        assert self.sub_proc.stdout is not None
        if self.sub_proc.stdout.readline().strip() != b"ready":
            raise SimmtaError("the event subscriber could not connect to the bus")

    def stop(self) -> None:
        if self.sub_proc is not None:
            out, _ = _terminate(self.sub_proc)
            with contextlib.suppress(ValueError):  # "<events> <cpu seconds>"
                seen, cpu = out.split()[-2:]
                self.events_seen, self.subscriber_cpu_s = int(seen), float(cpu)
            self.sub_proc = None
        if self.proc is not None:
            _terminate(self.proc)
            self.proc = None
        if self.dir is not None and not self.keep and not self.failed:
            privilege.remove_instance(self.dir)


def _terminate(proc: "subprocess.Popen[bytes]") -> tuple[bytes, bytes]:
    """SIGTERM to this child, SIGKILL to it if it has not exited by the timeout."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=STOP_TIMEOUT)
    return out or b"", err or b""


def subscribe(path: str) -> int:
    """Read the event bus to its end like a TUI would; on SIGTERM or EOF print the
    count of events and the CPU seconds reading them took (from "ready": its start-up,
    mostly imports, ~0.15 s, is before the load and no event's cost)."""
    seen, start = 0, 0.0

    def done(*_: object) -> None:
        print(seen, time.process_time() - start, flush=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, done)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        start = time.process_time()
        print("ready", flush=True)
        with s.makefile("rb") as stream:
            for line in stream:
                seen += 1
                try:  # (not contextlib.suppress: three Python calls a line, which the TUI does not pay)
                    parse_line(line)
                except ValueError:  # the TUI reports a bad line and goes on
                    continue
    done()
    return 0


if __name__ == "__main__":
    sys.exit(subscribe(sys.argv[1]))
