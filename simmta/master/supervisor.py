"""master's process management, modelled on Postfix's master(8).

For each service of the table master binds the listening socket itself (the
SMTP port included, so a root master could bind port 25 for unprivileged
children) and starts children on demand: while no child of a service is
available and its listening socket has a connection waiting, it starts one,
up to the service's process limit; at that limit a TCP service's new
clients get ``421 4.3.2 All server ports are busy`` from master (as from
Postfix's postscreen) instead of waiting unanswered in the listen queue. Children report over a status pipe
(ready / available / busy). A child that dies before it reported ready marks
its service as broken: no new child for service_throttle_time ("bad command
startup -- throttling"). A child that dies later is simply replaced (at once
for resident services such as qmgr, on demand for the others). Services with
a wakeup get a one-byte trigger every ``wakeup`` seconds.

Trust: master runs as root in real mode and parses nothing but its own
status records and (checked) event datagrams.
"""

import asyncio
import contextlib
import ctypes
import fcntl
import itertools
import json
import os
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from simmta.core import events, ipc, names, privilege, userns
from simmta.core.config import Config
from simmta.core.instance import Instance
from simmta.core.pyexec import python_module
from simmta.core.records import (
    PaceGo,
    PrivilegeObserved,
    ProcessExited,
    ProcessLimit,
    ProcessReplaced,
    ProcessSpawned,
    ProcessThrottled,
    Record,
    SmtpLimit,
)
from simmta.core.services import Service, ServiceTable
from simmta.core.skeleton import STATUS, STATUS_AVAIL, STATUS_BUSY, STATUS_READY, run_task
from simmta.master import zygote
from simmta.master.bus import Bus

_PR_SET_CHILD_SUBREAPER = 36
BUS_TICK = 0.01  # seconds between reads of the order pipe while someone watches
F_SETPIPE_SZ = 1031
MAX_UNORDERED = 4096  # datagrams kept per child waiting for their order token


@dataclass
class Child:
    pid: int
    service: str
    channel: socket.socket
    # The child's end of the channel, held open here until the child is reaped: when
    # the last holder of a datagram socket closes it, the kernel purges the queue of
    # its peer on the next send to it (af_unix: unix_dgram_disconnected), and master
    # sends to children that may have died a moment ago (observed, broadcast): that
    # would throw away a dying child's last words (a crash point's "fault crash").
    end: socket.socket
    started: float = field(default_factory=time.time)
    ready: bool = False
    avail: bool = True
    state: str = "starting"
    served: int = 0
    # datagrams read from the channel, not streamed yet (their order token is still to come)
    unordered: deque[tuple[int, bytes]] = field(default_factory=deque)
    observed: dict[str, Any] | None = None
    mismatch: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "ppid": os.getpid(),
            "service": self.service,
            "state": self.state,
            "started": self.started,
            "served": self.served,
            "privilege": self.observed,
            "mismatch": self.mismatch,
        }


BUSY_REPLY = b"421 4.3.2 All server ports are busy\r\n"


@dataclass
class ServiceState:
    service: Service
    listen: socket.socket
    status_r: int
    status_w: int
    limit: int
    children: dict[int, Child] = field(default_factory=dict)
    avail: int = 0
    watching: bool = False
    throttled_until: float = 0.0
    restarts: int = 0
    at_limit: bool = False


class Supervisor:
    def __init__(
        self,
        inst: Instance,
        cfg: Config,
        table: ServiceTable,
        setup: userns.Setup,
        sockets: dict[str, socket.socket],
        addresses: dict[str, dict[str, Any]],
        lab: bool,
        log: Any,
        ids: dict[str, tuple[int, int]],
    ):
        self.inst, self.cfg, self.table, self.setup = inst, cfg, table, setup
        self.ids = ids  # uid/gid of each account of the profile
        self.mode = setup.mode
        self.ns = userns.NsView.of(os.getpid())  # rootless/partial: ids inside and on the host
        self.addresses = addresses
        self.lab = lab
        self.log = log
        self.bus = Bus()
        self.bus.listeners.append(self._on_event)
        self.services: dict[str, ServiceState] = {}
        for svc in table:
            r, w = os.pipe()
            os.set_blocking(r, False)
            self.services[svc.name] = ServiceState(
                svc, sockets[svc.name], r, w, svc.process_limit(cfg.default_process_limit)
            )
        self.pace: dict[str, Any] = {"mode": "live", "delay_ms": 500}
        self.faults: dict[str, str] = {"peer": "none", "queue": "none"}
        self.crash_points: dict[str, set[str]] = {}
        self.waiting_hops: list[tuple[int, int]] = []  # (pid, hop) in arrival order
        self.lab_results: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.lab_reports: dict[int, asyncio.Future[dict[str, Any]]] = {}  # the compromise script's
        self.canary = ""
        self.stopping = False
        self.watch_pending: set[int] = set()
        self.watch_heard = asyncio.Event()
        self.channel_timer: asyncio.TimerHandle | None = None  # set while someone watches
        # The order pipe every daemon writes its tokens to (see simmta.core.events)
        self.order_r, self.order_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.order_w, F_SETPIPE_SZ, 1 << 20)
        self.tokens = b""
        self.by_pid: dict[int, Child] = {}  # every service's children (the bus asks per datagram)
        self.loop: asyncio.AbstractEventLoop | None = None

    # Start and stop -------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        # Daemons are forked by the spawner and then orphaned: adopt them.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        self.start_spawner()
        self.loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self.loop.add_reader(self.order_r, self.read_order)
        for st in self.services.values():
            self.loop.add_reader(st.status_r, self._read_status, st)
            st.listen.setblocking(False)
            if st.service.resident:
                self.spawn(st)
            else:
                self._update_listen(st)
            if st.service.wakeup:
                run_task(self._wakeup_timer(st))

    def start_spawner(self) -> None:
        """Start (or restart) the spawner that forks daemons for us (see zygote)."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        os.set_inheritable(theirs.fileno(), True)
        argv = python_module("simmta.master.zygote", str(theirs.fileno()), " " * zygote.TITLE_ROOM)
        log = self.log.fileno()
        self.spawner_pid = os.posix_spawn(
            sys.executable,
            argv,
            os.environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, log, 1), (os.POSIX_SPAWN_DUP2, log, 2)],
        )
        theirs.close()
        mine.settimeout(30)
        self.spawner = mine

    async def stop(self) -> None:
        self.stopping = True
        children = self._children()
        for c in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(c.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while any(self._child(c.pid) for c in children) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            self.reap()
        for c in children:
            if self._child(c.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(c.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.spawner_pid, signal.SIGTERM)
        self.spawner.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if os.waitpid(-1, os.WNOHANG) == (0, 0):
                    await asyncio.sleep(0.02)
            except ChildProcessError:
                break

    # Spawning ---------------------------------------------------------------
    def spawn(self, st: ServiceState) -> Child | None:
        svc = st.service
        if self.stopping or time.time() < st.throttled_until:
            return None
        if len(st.children) >= st.limit:
            if not st.at_limit:
                st.at_limit = True
                self.emit(
                    ProcessLimit(
                        child_service=svc.name,
                        limit=st.limit,
                        warning="new clients may experience noticeable delays",
                    )
                )
            return None
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for s in (mine, theirs):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        mine.setblocking(False)
        spec = {
            "service": svc.as_dict(),
            "socket_dirs": {other.name: other.socket_dir for other in self.table},
            "config": self.cfg,
            "instance": str(self.inst.path),
            "mode": self.mode,
            "lab": self.lab,
            "pace": self.pace,
            "faults": self.faults,
            "crash_points": sorted(self.crash_points.get(svc.name, ())),
            "watched": self.bus.watched and self.cfg.events_enabled,
            "peer": self.addresses.get(names.PEER),
            "ids": self.ids,
            "group_queue": self.table.profile.group_shared_queue,
            "clock": events.CLOCK.tick(),
        }
        # The channel also carries control (pace, faults, crash points, lab): a
        # daemon always gets one; events_enabled = false only keeps it quiet.
        fds = [st.listen.fileno(), st.status_w, self.log.fileno(), theirs.fileno(), self.order_w]
        try:
            socket.send_fds(self.spawner, [json.dumps({"command": svc.command, "spec": spec}).encode()], fds)
            answer = json.loads(self.spawner.recv(4096) or b"{}")
            pid = int(answer["pid"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            theirs.close()
            mine.close()
            self.emit(
                ProcessThrottled(child_service=svc.name, until=time.time() + 1, reason=f"cannot start: {e}")
            )
            return None
        child = Child(pid, svc.name, mine, theirs)
        st.children[child.pid] = child
        self.by_pid[child.pid] = child
        st.avail += 1  # counted available until it says busy (Postfix does the same)
        self.emit(ProcessSpawned(child_pid=child.pid, child_service=svc.name, total=len(st.children)))
        self._update_listen(st)
        return child

    def _update_listen(self, st: ServiceState) -> None:
        """Watch the listening socket only while no child is available (master_avail)."""
        full = len(st.children) >= st.limit
        want = (
            not st.service.resident
            and st.avail == 0
            and not self.stopping
            and ((not full and time.time() >= st.throttled_until) or (full and self._refuses(st)))
        )
        if len(st.children) < st.limit:
            st.at_limit = False
        if want != st.watching:
            assert self.loop is not None
            # by its descriptor: for a socket the selector's "is not registered" KeyError, which
            # every add_reader meets first, asks repr(), a getsockname and a getpeername
            if want:
                self.loop.add_reader(st.listen.fileno(), self._connection_waiting, st)
            else:
                self.loop.remove_reader(st.listen.fileno())
            st.watching = want

    def _connection_waiting(self, st: ServiceState) -> None:
        if len(st.children) < st.limit:
            self.spawn(st)
        elif self._refuses(st):
            self._refuse_busy(st)

    @staticmethod
    def _refuses(st: ServiceState) -> bool:
        """A TCP service at its process limit answers new clients 421 instead of
        leaving them in the listen queue (Postfix's postscreen does the same)."""
        return st.service.type == "inet"

    def _refuse_busy(self, st: ServiceState) -> None:
        try:
            conn, _ = st.listen.accept()
        except OSError:  # another process took it, or the client went
            return
        with conn:
            conn.setblocking(False)
            with contextlib.suppress(OSError):
                conn.send(BUSY_REPLY)
        self.emit(SmtpLimit(limit=f"{st.service.name} process limit", code=BUSY_REPLY[:9].decode()))

    # Children reporting -------------------------------------------------------
    def _read_status(self, st: ServiceState) -> None:
        try:
            data = os.read(st.status_r, STATUS.size * 512)
        except BlockingIOError:
            return
        for i in range(0, len(data) - len(data) % STATUS.size, STATUS.size):
            pid, what = STATUS.unpack_from(data, i)
            child = st.children.get(pid)
            if child is None:
                continue
            if what == STATUS_READY:
                child.ready = True
                child.state = "idle"
                self.observe(child)
                with contextlib.suppress(OSError):  # a short-lived one waits for this
                    child.channel.send(b'{"op": "observed"}')
            elif what == STATUS_BUSY and child.avail:
                child.avail, child.state = False, "busy"
                st.avail -= 1
            elif what == STATUS_AVAIL and not child.avail:
                child.avail, child.state = True, "idle"
                child.served += 1
                st.avail += 1
        self._update_listen(st)

    def _poll_channels(self, on: bool) -> None:
        """While someone watches, read the order pipe every BUS_TICK instead of
        waking up for each token (a busy MTA sends thousands a second, and each
        wake-up costs both sides CPU). Unwatched, only the few essential events
        come, and each is read as it arrives."""
        assert self.loop is not None
        if on == (self.channel_timer is not None):
            return
        if on:
            self.loop.remove_reader(self.order_r)
        else:
            self.loop.add_reader(self.order_r, self.read_order)
        if self.channel_timer is not None:
            self.channel_timer.cancel()
        self.channel_timer = self.loop.call_later(BUS_TICK, self._tick) if on else None

    def _tick(self) -> None:
        self.read_order()
        assert self.loop is not None
        self.channel_timer = self.loop.call_later(BUS_TICK, self._tick)

    def read_order(self, drain: bool = False) -> None:
        """Stream the children's datagrams in the order their tokens reached the pipe.

        A token (pid, N) says datagram N of that child is in its channel: it and
        the child's earlier ones are streamed now. Causes were sent, and their
        tokens written, before any hand-off that carries their effects, so this
        order is causal; nothing waits for a clock (see simmta.core.events).
        A turn reads at most 4 MiB of tokens unless told to ``drain`` the pipe.
        """
        for _ in itertools.count() if drain else range(64):
            try:
                chunk = os.read(self.order_r, 1 << 16)
            except (BlockingIOError, InterruptedError):
                break
            if not chunk:
                break
            self.tokens += chunk
            usable = len(self.tokens) - len(self.tokens) % events.TOKEN.size
            by_pid = self.by_pid
            for pid, number in events.TOKEN.iter_unpack(self.tokens[:usable]):
                child = by_pid.get(pid)
                if child is not None:
                    self._stream(child, number)
            self.tokens = self.tokens[usable:]
        self.bus.flush()

    def _stream(self, child: Child, upto: int | None = None) -> None:
        """Stream ``child``'s datagrams numbered up to ``upto`` (None: all it has sent)."""
        self._read_channel(child, upto)
        while child.unordered and (upto is None or child.unordered[0][0] <= upto):
            _, raw = child.unordered.popleft()
            self.bus.from_child(raw, child.pid, child.service)

    def _children(self) -> list[Child]:
        return [c for st in self.services.values() for c in st.children.values()]

    def _read_channel(self, child: Child, upto: int | None) -> None:
        """Read ``child``'s channel until datagram ``upto`` is in (None: until it is empty)."""
        while upto is None or not child.unordered or child.unordered[-1][0] < upto:
            try:
                raw = child.channel.recv(events.MAX_DATAGRAM + 1024)
            except (BlockingIOError, InterruptedError, OSError):
                return
            if not raw:
                return
            header, _, rest = raw.partition(b"\n")
            if header[:1] == b"#" and header[1:].isdigit() and len(child.unordered) < MAX_UNORDERED:
                child.unordered.append((int(header[1:]), rest))
            else:
                self.bus.invalid += 1

    def _on_event(self, event: dict[str, Any]) -> None:
        """The few events master acts on itself."""
        kind, type_, data = event["kind"], event["type"], event["data"]
        if kind == "pace" and type_ == "wait":
            self.waiting_hops.append((event["pid"], data.get("hop")))
            child = self._child(event["pid"])
            if child:
                child.state = "waiting"
            if self.pace["mode"] != "step":
                self.release_hops(all_=True)
        elif kind == "fault" and type_ == "crash":
            points = self.crash_points.get(event["service"], set())
            points.discard(data.get("point"))
            self.broadcast({"op": "crash", "points": sorted(points)}, event["service"])
        elif kind == "bus" and type_ == "subscriber" and data.get("action") == "watching":
            self.watch_pending.discard(event["pid"])
            if not self.watch_pending:
                self.watch_heard.set()
        elif kind == "lab" and type_ == "report":
            fut = self.lab_reports.pop(event["pid"], None)
            if fut and not fut.done():
                fut.set_result(event)
        elif kind == "lab" and type_ == "attempt" and not data.get("compromise"):
            fut = self.lab_results.pop(event["pid"], None)
            if fut and not fut.done():
                fut.set_result(event)

    def _child(self, pid: int) -> Child | None:
        return self.by_pid.get(pid)

    # Reaping ------------------------------------------------------------------
    def reap(self) -> None:
        while True:
            try:
                pid, wstatus = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            status = os.waitstatus_to_exitcode(wstatus)
            if pid == self.spawner_pid and not self.stopping:
                self.spawner.close()
                self.emit(
                    ProcessExited(
                        child_pid=pid, child_service=names.SPAWNER, status=f"exit {status}", served=0
                    )
                )
                self.start_spawner()
                continue
            for st in self.services.values():
                if pid in st.children:
                    self._exited(st, st.children[pid], status)
                    break

    def _exited(self, st: ServiceState, child: Child, status: int) -> None:
        # Every token in the pipe, its own included (it is still known, so none is
        # skipped: an effect another daemon streamed would overtake its cause) ...
        self.read_order(drain=True)
        del st.children[child.pid]
        del self.by_pid[child.pid]
        if child.avail:
            st.avail -= 1
        assert self.loop is not None
        self._stream(child)  # ... then its last words, token or not (killed between the two)
        self.bus.flush()
        child.channel.close()
        child.end.close()
        how = f"signal {signal.Signals(-status).name}" if status < 0 else f"exit {status}"
        if status != 0 and not self.stopping:
            st.restarts += 1
        self.emit(
            ProcessExited(
                child_pid=child.pid,
                child_service=st.service.name,
                status=how,
                served=child.served,
                restarts=st.restarts,
            )
        )
        self.waiting_hops = [(p, h) for p, h in self.waiting_hops if p != child.pid]
        if self.stopping:
            return
        abnormal = status != 0
        if abnormal and not child.ready:
            st.throttled_until = time.time() + self.cfg.service_throttle_time
            self.emit(
                ProcessThrottled(
                    child_service=st.service.name,
                    until=st.throttled_until,
                    reason="bad command startup -- throttling",
                )
            )
            self.loop.call_later(self.cfg.service_throttle_time + 0.01, self._unthrottle, st)
        elif st.service.resident:
            new = self.spawn(st)
            if new:
                self.emit(ProcessReplaced(old_pid=child.pid, new_pid=new.pid, child_service=st.service.name))
        self._update_listen(st)

    def unthrottle_all(self) -> list[str]:
        """End every service's throttle now (``simmta flush``); the services released."""
        released = [name for name, st in self.services.items() if st.throttled_until > time.time()]
        for name in released:
            self.services[name].throttled_until = 0.0
            self._unthrottle(self.services[name])
        return released

    def _unthrottle(self, st: ServiceState) -> None:
        if st.service.resident and not st.children:
            self.spawn(st)
        self._update_listen(st)

    def socket_path(self, service: str) -> str:
        """``service``'s socket, in the directory its ``private`` column says."""
        return str(self.inst.queue / self.table[service].socket_dir / service)

    async def _wakeup_timer(self, st: ServiceState) -> None:
        path = self.socket_path(st.service.name)
        while True:
            await asyncio.sleep(st.service.wakeup)
            await ipc.trigger(path, names.TRIGGER_WAKEUP)

    # Observation --------------------------------------------------------------
    def observe(self, child: Child) -> None:
        svc = self.services[child.service].service
        obs = privilege.observe(child.pid, self.ns)
        if obs is None:
            return
        want = privilege.expected(svc, self.cfg, self.inst.queue, self.setup, self.ids)
        child.mismatch = privilege.mismatches(obs, want)
        child.observed = {
            **obs.as_dict(),
            "mode": self.mode,
            "mismatch": child.mismatch,
            "simulated": privilege.simulated_steps(svc, self.cfg, self.inst.queue, self.mode, self.ids),
        }
        self.emit(
            PrivilegeObserved(
                observed_pid=child.pid,
                observed_service=child.service,
                uid=obs.uid,
                gid=obs.gid,
                groups=obs.groups,
                caps=obs.caps,
                root=obs.root,
                host_uid=obs.host_uid,
                host_gid=obs.host_gid,
                no_new_privs=obs.no_new_privs,
                mode=self.mode,
                mismatch=child.mismatch,
                expected=want,
                simulated=child.observed["simulated"],
            )
        )

    # Control hooks --------------------------------------------------------------
    def emit(self, record: Record, qid: str | None = None) -> None:
        self.bus.publish(events.make(names.MASTER, record, qid))

    def broadcast(self, msg: dict[str, Any], service: str | None = None) -> None:
        raw = json.dumps({**msg, "clock": events.CLOCK.tick()}).encode()
        for st in self.services.values():
            if service and st.service.name != service:
                continue
            for child in st.children.values():
                with contextlib.suppress(OSError):
                    child.channel.send(raw)

    async def set_watched(self, on: bool) -> None:
        """Tell the daemons whether anyone watches; when someone starts to, wait
        (a moment at most) until each has heard, so no event after the snapshot
        is lost to a daemon that was still quiet."""
        on = on and self.cfg.events_enabled
        self._poll_channels(on)
        self.watch_pending = {c.pid for c in self._children() if c.ready} if on else set()
        self.watch_heard = asyncio.Event()
        self.broadcast({"op": "watch", "on": on})
        if self.watch_pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.watch_heard.wait()

    def release_hops(self, all_: bool = False) -> int:
        released = 0
        while self.waiting_hops and (all_ or released == 0):
            pid, hop = self.waiting_hops.pop(0)
            child = self._child(pid)
            if child is None:
                continue
            with contextlib.suppress(OSError):
                child.channel.send(json.dumps({"op": "go", "hop": hop}).encode())
            child.state = "busy"
            self.emit(PaceGo(hop=hop, pid=pid))
            released += 1
        return released

    def processes(self) -> list[dict[str, Any]]:
        out = [
            {
                "pid": os.getpid(),
                "ppid": os.getppid(),
                "service": names.MASTER,
                "state": "running",
                "started": None,
                "served": 0,
                "restarts": 0,
                "privilege": self._master_observed(),
            }
        ]
        # the spawner (see zygote) forks every daemon: it keeps master's privilege, so it is shown
        if self.spawner_pid and (obs := privilege.observe(self.spawner_pid)) is not None:
            out.append(
                {
                    "pid": self.spawner_pid,
                    "ppid": os.getpid(),
                    "service": names.SPAWNER,
                    "state": "running",
                    "started": None,
                    "served": 0,
                    "restarts": 0,
                    "privilege": {**obs.as_dict(), "mode": self.mode},
                }
            )
        for st in self.services.values():
            svc = st.service
            for c in st.children.values():
                if c.observed is None and c.ready:
                    self.observe(c)
                out.append(
                    {
                        **c.as_dict(),
                        "restarts": st.restarts,
                        "program": svc.program,
                        "account": svc.account,
                        "setuid": svc.setuid,
                        "life": svc.life,
                    }
                )
        return out

    def _master_observed(self) -> dict[str, Any] | None:
        obs = privilege.observe(os.getpid(), self.ns)
        return {**obs.as_dict(), "mode": self.mode} if obs else None
