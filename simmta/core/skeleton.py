"""The daemon skeleton every simmta daemon runs on (Postfix's single_server).

master starts a daemon as ``python -m simmta.daemons.NAME`` with a launch spec
(JSON in $SIMMTA_SPEC) and three inherited descriptors: the listening socket of
its service, its event channel (a datagram socketpair: events up, control
down) and master's status pipe. The skeleton then:

1. reads the spec (service row, effective config, instance, privilege mode);
2. runs the daemon's ``pre_init`` as root (open what is needed, import everything:
   after a chroot Python cannot load modules or codecs any more);
3. drops privilege as the services table says (``privilege.drop_privileges``);
4. runs ``post_init``, tells master it is ready, and serves: one connection at
   a time, ``max_use`` connections or ``max_idle`` seconds, then exits; a
   resident daemon (qmgr, pickup) serves triggers until stopped.

It also implements the instrumentation hooks every daemon shares: ``hop()``
(the pacing gate in front of every hand-off), crash points, and lab attempts.

Trust: the spec comes from master (trusted); connections are not.
"""

import asyncio
import contextlib
import dataclasses
import encodings.ascii
import encodings.idna
import encodings.latin_1
import encodings.utf_8  # noqa: F401  (codecs must be loaded before a chroot)
import json
import os
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import uvloop

from simmta.core import compromise, disk, events, ipc, names, privilege
from simmta.core.config import Config
from simmta.core.events import Emitter
from simmta.core.instance import Instance
from simmta.core.records import (
    BusSubscriber,
    FaultCrash,
    IpcRequest,
    LabAttempt,
    LabReport,
    PaceWait,
    ProcessReady,
    ProcessState,
    Record,
)
from simmta.core.services import Service

# asyncio keeps only weak references to tasks: one nobody holds can be garbage
# collected mid-flight (a message would then sit in active/ forever). Every
# fire-and-forget task is started through run_task(), which holds it until done.
_RUNNING: set[asyncio.Task[Any]] = set()


def run_task(coro: Any) -> "asyncio.Task[Any]":
    task = asyncio.get_running_loop().create_task(coro)
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    return task


# Status pipe records (Postfix's master_status): pid + one byte.
STATUS = struct.Struct("!ic")
STATUS_READY = b"R"
STATUS_AVAIL = b"A"
STATUS_BUSY = b"B"


_SERVICE_FIELDS = {f.name for f in dataclasses.fields(Service)} - {"extra"}


class Context:
    """What a daemon knows about itself; paths are as seen after the chroot."""

    def __init__(self, spec: dict[str, Any], emitter: Emitter):
        self.spec = spec
        fields: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v
            for k, v in spec["service"].items()
            if k in _SERVICE_FIELDS
        }
        self.service = Service(**fields)
        # uid/gid of each account the profile names, as master resolved them
        self.ids: dict[str, tuple[int, int]] = {k: (v[0], v[1]) for k, v in spec.get("ids", {}).items()}
        self.group_queue: bool = spec.get("group_queue", False)  # queue shared through its group
        self.config = Config(spec["config"])
        self.instance = Instance(spec["instance"])
        self.mode: str = spec["mode"]
        self.lab: bool = spec.get("lab", False)
        # the identity a lab attempt runs under (local: acting as a recipient)
        self.lab_identity: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext
        self.emitter = emitter
        self.name = self.service.name
        self._socket_paths: dict[str, str] = {}
        self.queue = self.instance.queue  # becomes Path("/") after a chroot
        self.pace: dict[str, Any] = dict(spec.get("pace") or {"mode": "live", "delay_ms": 0})
        self.faults: dict[str, str] = dict(spec.get("faults") or {})
        self.crash_points: set[str] = set(spec.get("crash_points") or ())
        self._hops: dict[int, asyncio.Future[None]] = {}
        self.observed: asyncio.Future[None] | None = None
        self._hop_seq = 0
        # each service's socket directory, from the services table (its ``private`` column)
        self.socket_dirs: dict[str, str] = dict(spec.get("socket_dirs") or {})

    # Paths ------------------------------------------------------------------
    @property
    def queue(self) -> Path:
        return self._queue

    @queue.setter
    def queue(self, path: Path) -> None:
        self._queue = path
        self._socket_paths.clear()  # they are under the queue directory

    def queue_path(self, queue: str, qid: str = "") -> Path:
        return self.queue / queue / qid if qid else self.queue / queue

    def socket_path(self, service: str) -> str:
        """``service``'s socket: in ``public/`` or ``private/`` as the services table says
        (a service the table lacks has a private path nobody listens on). Kept per
        service: pathlib's joins cost more than the rest of a trigger."""
        path = self._socket_paths.get(service)
        if path is None:
            path = str(self.queue / self.socket_dirs.get(service, names.PRIVATE) / service)
            self._socket_paths[service] = path
        return path

    def emit(self, record: Record, qid: str | None = None, sid: str | None = None) -> None:
        self.emitter.emit(record, qid, sid)

    # Instrumentation hooks ----------------------------------------------------
    async def hop(self, to: str, what: str, qid: str | None = None, sid: str | None = None) -> None:
        """Announce a hand-off to another daemon; wait first if master paces hops."""
        mode = self.pace.get("mode", "live")
        if mode == "slow":
            await asyncio.sleep(self.pace.get("delay_ms", 500) / 1000)
        elif mode == "step" and self.emitter.enabled:
            self._hop_seq += 1
            hop_id = os.getpid() * 100000 + self._hop_seq
            fut = asyncio.get_running_loop().create_future()
            self._hops[hop_id] = fut
            if self.emitter.emit(PaceWait(hop=hop_id, to=to, what=what), qid, sid, now=True):
                await fut  # released by master's "go" (or a change of pace)
            self._hops.pop(hop_id, None)
        self.emit(IpcRequest(to=to, what=what), qid, sid)

    def crash_point(self, point: str, qid: str | None = None) -> None:
        """Die here, uncleanly, if a presenter armed this point (to show nothing is lost)."""
        if point in self.crash_points:
            self.emit(FaultCrash(point=point), qid)
            self.emitter.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    def on_control(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "pace":
            self.pace = {"mode": msg.get("mode", "live"), "delay_ms": msg.get("delay_ms", 0)}
            if self.pace["mode"] != "step":
                for fut in self._hops.values():
                    if not fut.done():
                        fut.set_result(None)
        elif op == "go":
            waiting = self._hops.get(msg.get("hop", -1))
            if waiting is not None and not waiting.done():
                waiting.set_result(None)
        elif op == "crash":
            self.crash_points = set(msg.get("points") or ())
        elif op == "fault":
            self.faults = dict(msg.get("faults") or {})
        elif op == "watch":
            self.emitter.muted = not msg.get("on", True)
            if not self.emitter.muted:  # tell master we heard: it waits for this before a snapshot
                self.emit(BusSubscriber(action="watching", subscriber=f"{self.name}[{os.getpid()}]"))
        elif op == "observed" and self.observed is not None and not self.observed.done():
            self.observed.set_result(None)
        elif op == "compromise" and self.lab:
            self.compromised(msg)
        elif op == "lab" and self.lab:
            self.lab_attempt(str(msg.get("action")), str(msg.get("target")))

    def compromised(self, msg: dict[str, Any]) -> None:
        """Run the lab's fixed attacker script in this process; report each outcome."""
        canary, pid, daemon = msg.get("canary"), msg.get("daemon_pid"), msg.get("daemon")
        if not (isinstance(canary, str) and isinstance(pid, int) and isinstance(daemon, str)):
            return
        results = compromise.run_script(
            compromise.Targets(self.instance.path, self.queue, canary, pid, daemon)
        )
        for r in results:
            self.emit(
                LabAttempt(
                    action=r["attempt"],
                    target=r["target"],
                    outcome=r["outcome"],
                    detail=r["detail"],
                    compromise=True,
                )
            )
        self.emit(LabReport(results=results, mode=self.mode))

    def lab_attempt(self, action: str, target: str) -> None:
        """Try what privilege should forbid; report the kernel's answer."""
        with self.lab_identity():
            outcome, detail = privilege.lab_attempt(action, Path(target))
        if not privilege.uids_enforced(self.mode) and outcome == "succeeded":
            detail += (
                " (simulated mode: no kernel boundary was there to stop it)"
                if self.mode == privilege.SIMULATED
                else " (partial mode: no uid boundary, every daemon runs as you)"
            )
        self.emit(LabAttempt(action=action, target=target, outcome=outcome, detail=detail))


class Daemon:
    """Base class: override the hooks a daemon needs, like Postfix's callbacks."""

    resident: ClassVar[bool] = False

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def pre_init(self) -> None:
        """As root, before the drop: open and load everything needed later."""

    def post_init(self) -> None:
        """After the drop, before serving."""

    async def background(self) -> None:
        """Resident daemons: their own work (timers, scans) besides triggers."""

    async def handle_socket(self, conn: socket.socket) -> None:
        ipc_conn = ipc.Conn(conn)
        try:
            await self.handle(ipc_conn)
        finally:
            ipc_conn.close()

    async def handle(self, conn: ipc.Conn) -> None:
        """One client connection."""


def _status(fd: int, what: bytes) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, STATUS.pack(events.pid(), what))


def main(daemon_cls: type[Daemon]) -> None:
    """``python -m simmta.daemons.NAME`` with the spec in $SIMMTA_SPEC."""
    run(daemon_cls, json.loads(os.environ.pop("SIMMTA_SPEC")))


def run(daemon_cls: type[Daemon], spec: dict[str, Any]) -> None:
    fds = spec["fds"]
    events.CLOCK.heard(spec.get("clock"))
    channel = socket.socket(fileno=fds["channel"])
    name = spec["service"]["name"]
    emitter = Emitter(
        name,
        channel,
        muted=not spec.get("watched", True),
        order=fds.get("order"),
        delay=events.test_delay(name),
    )
    ipc.flush_events = emitter.flush
    ctx = Context(spec, emitter)
    if ctx.config.disk_events:  # each fsync, rename and link for a message, as an event
        disk.report = emitter.emit
    listen = socket.socket(fileno=fds["listen"])
    status_fd: int = fds["status"]
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        daemon = daemon_cls(ctx)
        daemon.pre_init()
        ctx.crash_point("startup")
        svc = ctx.service
        jail = ctx.instance.queue if svc.chroot else None
        uid, gid = privilege.service_ids(svc, ctx.config, ctx.ids) or (None, None)
        privilege.drop_privileges(
            emitter,
            chroot_dir=jail,
            uid=uid,
            gid=gid,
            mode=ctx.mode,
            euid=privilege.service_euid(svc, ctx.ids),
            account=svc.account,
            setuid_account=svc.setuid,
        )
        if jail is not None and privilege.chroot_enforced(ctx.mode):
            ctx.queue = Path("/")
        daemon.post_init()
    except Exception as e:  # startup failure: say why, exit non-zero, master throttles
        ctx.emit(ProcessState(state="failed", error=f"{type(e).__name__}: {e}"))
        traceback.print_exc(file=sys.stderr)
        os._exit(1)
    # uvloop: libuv's event loop, a drop-in for asyncio's, loaded before the chroot (see README).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(daemon, listen, status_fd, channel))
    sys.stdout.flush()
    os._exit(0)  # served its max_use (or idled out): a normal end, not a crash


def _flush_and_exit(ctx: Context) -> None:
    ctx.emitter.flush()
    os._exit(0)


async def _serve(
    daemon: Daemon, listen: socket.socket, status_fd: int, channel: socket.socket | None
) -> None:
    ctx = daemon.ctx
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: _flush_and_exit(ctx))
    loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
    if channel is not None:
        loop.add_reader(channel, _read_control, ctx, channel)
    listen.setblocking(False)
    if ctx.service.max_use == 1:  # thrown away after one use: live until master has read /proc
        ctx.observed = loop.create_future()
    _status(status_fd, STATUS_READY)
    ctx.emit(ProcessReady())
    if ctx.observed is not None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await ctx.observed
    background = run_task(daemon.background())
    background.add_done_callback(_background_done)
    served = 0
    max_use = 10**12 if daemon.resident else ctx.service.max_use or ctx.config.max_use
    idle = None if daemon.resident else ctx.config.max_idle
    _status(status_fd, STATUS_AVAIL)
    while served < max_use:
        try:
            async with asyncio.timeout(idle):
                conn, _ = await loop.sock_accept(listen)
        except TimeoutError:
            break
        _status(status_fd, STATUS_BUSY)
        if daemon.resident:  # triggers are short; serve them concurrently
            run_task(_guarded(daemon, conn))
        else:
            ctx.emit(ProcessState(state="busy"))
            await _guarded(daemon, conn)
            ctx.emit(ProcessState(state="idle", served=served + 1))
        served += 1
        _status(status_fd, STATUS_AVAIL)
    background.cancel()
    ctx.emitter.flush()


async def _guarded(daemon: Daemon, conn: socket.socket) -> None:
    """Serve one connection; an error ends that connection, never the daemon."""
    try:
        await daemon.handle_socket(conn)
    except Exception as e:
        daemon.ctx.emit(ProcessState(state="error", error=f"{type(e).__name__}: {e}"[:300]))
        traceback.print_exc(file=sys.stderr)
    finally:
        conn.close()


def _background_done(task: "asyncio.Task[Any]") -> None:
    """A resident daemon's own work must not die quietly: exit, master restarts us."""
    if task.cancelled():
        return
    if (e := task.exception()) is not None:
        traceback.print_exception(e, file=sys.stderr)
        sys.stderr.flush()
        os._exit(70)


def _dump_tasks() -> None:
    """SIGUSR1: print every pending task's stack to the log (debugging a stall)."""
    for task in asyncio.all_tasks():
        print(f"--- {sys.argv[0]}[{os.getpid()}] task {task.get_name()}", file=sys.stderr)
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


def _read_control(ctx: Context, channel: socket.socket) -> None:
    while True:
        try:
            raw = channel.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            asyncio.get_running_loop().remove_reader(channel)
            return
        if not raw:  # master went away: finish what we have, then go
            asyncio.get_running_loop().remove_reader(channel)
            return
        try:
            msg = json.loads(raw)
        except ValueError:
            continue
        if isinstance(msg, dict):
            events.CLOCK.heard(msg.get("clock"))
            ctx.on_control(msg)
