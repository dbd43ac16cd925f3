"""Control operations master performs for ``simmta ctl`` and the TUI.

Each operation is checked (names against the services table, values against
fixed lists) before anything happens, and each leaves an event behind.

Trust: requests come from a peer admitted by ``access.allowed`` but are still
treated as untrusted input.
"""

import asyncio
import base64
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from simmta.core import compromise, ipc, maildir, names, privilege, setid
from simmta.core import queue as qf
from simmta.core.control import LAB_ACTIONS, PACE_MODES, SIGNALS
from simmta.core.errors import SimmtaError
from simmta.core.events import safe_text
from simmta.core.names import CRASH_POINTS, PEER_FAULTS
from simmta.core.records import (
    FaultSet,
    LabScan,
    PaceMode,
    QueueFlush,
    QueueHeld,
    QueueMoved,
    QueueReleased,
    QueueRemoved,
    Record,
)
from simmta.master.supervisor import Child, Supervisor

QUEUE_ACTIONS = ("hold", "release", "requeue", "delete")


class Controller:
    def __init__(self, sup: Supervisor, status: Any):
        self.sup = sup
        self.status = status

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        handler = getattr(self, f"op_{op}", None) if isinstance(op, str) and op.isidentifier() else None
        if handler is None:
            raise SimmtaError(f"unknown control operation {op!r}")
        return await handler(req)

    def _service(self, req: dict[str, Any]) -> str:
        name = req.get("service")
        if not isinstance(name, str) or name not in self.sup.services:
            raise SimmtaError(f"unknown service {name!r} (known: {', '.join(self.sup.services)})")
        return name

    async def op_status(self, req: dict[str, Any]) -> dict[str, Any]:
        return self.status()

    async def op_ps(self, req: dict[str, Any]) -> dict[str, Any]:
        return {
            "processes": self.sup.processes(),
            "privilege_mode": self.sup.mode,
            "privilege": self.sup.setup.as_dict(),
            "profile": self.sup.table.profile.name,
            "profile_info": self.sup.table.profile.as_dict(),
            "ids": self.sup.ids,
        }

    async def op_kill(self, req: dict[str, Any]) -> dict[str, Any]:
        name = self._service(req)
        sig = str(req.get("signal", "TERM")).upper().removeprefix("SIG")
        if sig not in SIGNALS:
            raise SimmtaError(f"signal must be one of {', '.join(SIGNALS)}")
        st = self.sup.services[name]
        pids = sorted(st.children)
        pid = req.get("pid")
        if pid is not None:
            if pid not in pids:
                raise SimmtaError(f"pid {pid} is not a {name} process")
            pids = [pid]
        if not pids:
            raise SimmtaError(
                f"no {name} process is running right now (services start on demand: send mail first)"
            )
        os.kill(pids[0], getattr(signal, f"SIG{sig}"))
        self.sup.emit(
            FaultSet(
                fault="kill", value=f"SIG{sig} to {name}[{pids[0]}]", child_service=name, child_pid=pids[0]
            )
        )
        return {"pid": pids[0], "signal": f"SIG{sig}"}

    async def op_fault(self, req: dict[str, Any]) -> dict[str, Any]:
        target, value = req.get("target"), req.get("value")
        allowed = {"peer": PEER_FAULTS, "queue": ("none", "full")}
        if target not in allowed or value not in allowed[target]:
            raise SimmtaError("fault: target peer (none|down|tempfail|permfail|slow) or queue (none|full)")
        self.sup.faults[target] = value
        self.sup.broadcast({"op": "fault", "faults": self.sup.faults})
        self.sup.emit(FaultSet(fault=target, value=value))
        if target == "peer" and value == "none":  # retry what waited for the peer
            await self._trigger_qmgr(names.TRIGGER_FLUSH)
        return {"faults": self.sup.faults}

    async def op_crash(self, req: dict[str, Any]) -> dict[str, Any]:
        name = self._service(req)
        point = req.get("point")
        command = self.sup.services[name].service.command
        points = self.sup.crash_points.setdefault(name, set())
        if point in ("off", "none"):
            points.clear()
        elif point not in CRASH_POINTS.get(command, ()):
            raise SimmtaError(f"{name} has crash points: {', '.join(CRASH_POINTS.get(command, ()))}")
        else:
            points.add(point)
        self.sup.broadcast({"op": "crash", "points": sorted(points)}, name)
        self.sup.emit(FaultSet(fault=f"crash {name}", value=str(point)))
        return {"armed": sorted(points)}

    async def op_pace(self, req: dict[str, Any]) -> dict[str, Any]:
        mode = req.get("mode")
        delay = req.get("delay_ms", self.sup.pace.get("delay_ms", 500))
        if mode not in PACE_MODES or not isinstance(delay, int) or not 0 <= delay <= 60000:
            raise SimmtaError("pace: mode live|slow|step, delay_ms 0..60000")
        self.sup.pace = {"mode": mode, "delay_ms": delay}
        self.sup.broadcast({"op": "pace", **self.sup.pace})
        if mode != "step":
            self.sup.release_hops(all_=True)
        self.sup.emit(PaceMode(mode=mode, delay_ms=delay))
        return {"pace": self.sup.pace}

    async def op_step(self, req: dict[str, Any]) -> dict[str, Any]:
        """Release one waiting hop; with ``wait``, first wait (at most that long) for one."""
        wait = req.get("wait", 0)
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= 30:
            raise SimmtaError("step: wait must be 0 to 30 seconds")
        deadline = time.monotonic() + wait
        while not self.sup.waiting_hops and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return {"released": self.sup.release_hops(), "waiting": len(self.sup.waiting_hops)}

    async def op_queue(self, req: dict[str, Any]) -> dict[str, Any]:
        action, qid = req.get("action"), req.get("qid")
        if action not in QUEUE_ACTIONS or not isinstance(qid, str):
            raise SimmtaError("queue: action hold|release|requeue|delete and a queue ID")
        if not qf.is_qid(qid):
            raise SimmtaError(f"not a queue ID: {safe_text(qid, 40)}")
        root = self.sup.inst.queue
        sources = {
            "hold": (names.INCOMING, names.DEFERRED),
            "release": (names.HOLD,),
            "requeue": (names.DEFERRED, names.HOLD, names.CORRUPT),
            "delete": (names.INCOMING, names.DEFERRED, names.HOLD, names.CORRUPT),
        }[action]
        found = qf.find(root, qid, sources)
        if found is None:
            where = qf.find(root, qid, names.MESSAGE_QUEUES)
            if where and where[0] == names.ACTIVE:
                raise SimmtaError(f"{qid} is being delivered right now (active); try again")
            if where and where[0] == names.HOLD and action == "hold":
                raise SimmtaError(f"{qid} is already on hold")
            if where:
                raise SimmtaError(f"{qid} is in {where[0]}: {action} works on {', '.join(sources)}")
            raise SimmtaError(f"no message {qid} in the queue")
        src, path = found
        if action == "delete":
            os.unlink(path)
            for log in names.STATUS_LOGS:
                (root / log / qid).unlink(missing_ok=True)
            self.sup.emit(QueueRemoved(queue=src, reason="deleted by the administrator"), qid)
            return {"qid": qid, "deleted_from": src}
        dst = {"hold": names.HOLD, "release": names.DEFERRED, "requeue": names.DEFERRED}[action]
        qf.move(root, qid, src, dst)
        if dst == names.DEFERRED:
            now = time.time()
            os.utime(root / dst / qid, (now, now))
        record: Record = (
            QueueHeld(via=action)
            if action == "hold"
            else QueueReleased(via=action)
            if action == "release"
            else QueueMoved(from_=src, to=dst, via=action)
        )
        self.sup.emit(record, qid)
        if dst == names.DEFERRED:
            await self._trigger_qmgr(names.TRIGGER_DEFERRED)
        return {"qid": qid, "from": src, "to": dst}

    async def op_flush(self, req: dict[str, Any]) -> dict[str, Any]:
        """Postfix's ``postqueue -f``: throttled services are released, every deferred
        message is due now and incoming/ is scanned."""
        released = self.sup.unthrottle_all()
        deferred = len([n for n in os.listdir(self.sup.inst.queue / names.DEFERRED) if qf.is_qid(n)])
        self.sup.emit(QueueFlush(deferred=deferred, released=released))
        await self._trigger_qmgr(names.TRIGGER_FLUSH + names.TRIGGER_INCOMING)
        return {"deferred": deferred, "released": released}

    async def op_lab(self, req: dict[str, Any]) -> dict[str, Any]:
        if not self.sup.lab:
            raise SimmtaError("lab attempts are off: start the MTA with 'simmta run --lab'")
        action = req.get("action")
        if action not in LAB_ACTIONS:
            raise SimmtaError(f"lab actions: {', '.join(LAB_ACTIONS)}")
        name = self._service(req)
        child = await self._ready_child(name)
        inst = self.sup.inst
        target = {
            "read-secret": inst.lab / "secret",
            "write-maildir": inst.maildir("alice") / "new",
            "regain-root": "/",
        }[action]
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.sup.lab_results[child.pid] = fut
        child.channel.send(json.dumps({"op": "lab", "action": action, "target": str(target)}).encode())
        try:
            async with asyncio.timeout(10):
                event = await fut
        except TimeoutError:
            raise SimmtaError(f"{name}[{child.pid}] did not report the attempt") from None
        return {"pid": child.pid, "service": name, **event["data"], "mode": self.sup.mode}

    async def op_compromise(self, req: dict[str, Any]) -> dict[str, Any]:
        """Make one process of a service run the lab's fixed attacker script (simmta.core.compromise)."""
        if not self.sup.lab:
            raise SimmtaError("the compromise lab is off: start the MTA with 'simmta run --lab'")
        name = req.get("service")
        svc = self.sup.table.find(name) if isinstance(name, str) else None
        if svc is None or svc.role == "internet":
            raise SimmtaError(
                f"unknown service {name!r} (known: "
                + ", ".join(s.name for s in self.sup.table if s.role != "internet")
                + ")"
            )
        child = await self._ready_child(svc.name)
        qmgr = self.sup.services[names.QMGR]
        daemon = next(iter(qmgr.children.values()), None)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.sup.lab_reports[child.pid] = fut
        child.channel.send(
            json.dumps(
                {
                    "op": "compromise",
                    "canary": self.sup.canary,
                    "daemon_pid": daemon.pid if daemon else 0,
                    "daemon": qmgr.service.program,
                }
            ).encode()
        )
        try:
            async with asyncio.timeout(20):
                event = await fut
        except TimeoutError:
            raise SimmtaError(f"{svc.name}[{child.pid}] did not report the attempts") from None
        results = event["data"].get("results")
        if not isinstance(results, list):
            raise SimmtaError(f"{svc.name}[{child.pid}] sent no results")
        port_start = compromise.unprivileged_port_start()
        reply = {
            "pid": child.pid,
            "service": svc.name,
            "program": svc.program,
            "account": svc.account,
            "setuid": svc.setuid,
            "profile": self.sup.table.profile.name,
            "mode": self.sup.mode,
            "ip_unprivileged_port_start": port_start,
            "results": results,
            "privilege": child.observed,
        }
        if not privilege.uids_enforced(self.sup.mode):
            reply["predicted"] = compromise.predict(
                svc, self.sup.table.profile, self.sup.ids, qmgr.service.account, port_start
            )
        return reply

    async def _ready_child(self, name: str) -> Child:
        st = self.sup.services[name]
        child = next((c for c in st.children.values() if c.ready), None) or self.sup.spawn(st)
        if child is None:
            raise SimmtaError(f"cannot start a {name} process right now")
        deadline = time.monotonic() + 10
        while not child.ready and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return child

    async def op_scan(self, req: dict[str, Any]) -> dict[str, Any]:
        """Set-uid/set-gid files in the instance and in simmta's installation, and maildrop's mode."""
        inst = self.sup.inst
        roots = [inst.path, *setid.install_roots()]
        result = await asyncio.get_running_loop().run_in_executor(None, setid.scan, roots)
        result["maildrop"] = setid.mode_of(inst.queue / names.MAILDROP)
        result["protected_hardlinks"] = setid.protected_hardlinks()
        self.sup.emit(LabScan(**result))
        return result

    async def op_mail(self, req: dict[str, Any]) -> dict[str, Any]:
        """Every mailbox's letters, as the Mailboxes view lists them, for a viewer who may not
        read the Maildirs (rootless, they belong to uids of the namespace; master is its root)."""

        def listing() -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            for name, path in self.sup.inst.mailboxes():
                try:
                    out.append({"name": name, "letters": [maildir.to_wire(x) for x in maildir.letters(path)]})
                except OSError as e:
                    out.append({"name": name, "error": e.strerror or str(e)})
            return out

        return {"mailboxes": await asyncio.get_running_loop().run_in_executor(None, listing)}

    async def op_letter(self, req: dict[str, Any]) -> dict[str, Any]:
        """The first bytes of one letter: a file in a mailbox's new/ or cur/, nothing else."""
        path = req.get("file")
        where = {mb / sub for _, mb in self.sup.inst.mailboxes() for sub in ("new", "cur")}
        if not isinstance(path, str) or Path(path).parent not in where or Path(path).name.startswith("."):
            raise SimmtaError("not a letter in this instance's mailboxes")
        try:
            raw, size = maildir.read(Path(path))
        except OSError as e:
            raise SimmtaError(f"cannot read {safe_text(path, 200)}: {e.strerror or e}") from None
        return {"data": base64.b64encode(raw).decode(), "size": size}

    async def op_history(self, req: dict[str, Any]) -> dict[str, Any]:
        """The events the bus streamed in the last ``since`` seconds (all it kept: None)."""
        since = req.get("since")
        if since is not None and (
            isinstance(since, bool) or not isinstance(since, int | float) or since <= 0
        ):
            raise SimmtaError("history: since must be a number of seconds > 0")
        self.sup.read_order()  # everything sent so far, in order
        return self.sup.bus.history.since(since)

    async def _trigger_qmgr(self, what: bytes) -> None:
        await ipc.trigger(self.sup.socket_path(names.QMGR), what)
