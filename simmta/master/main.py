"""``simmta run``: set up the instance, bind the sockets, supervise, serve the
bus and the control socket, and stop cleanly on SIGTERM/SIGINT.

Not root, ``run`` first finds the best privilege mode and, for rootless or
partial, moves this very process into a user namespace (simmta.core.userns)
before anything else; master is then root there.

Trust: root in real mode, root of a user namespace in rootless and partial
mode; see simmta.master.
"""

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from typing import Any, TextIO

from simmta.core import config, events, maildir, names, privilege, userns
from simmta.core import queue as qf
from simmta.core.config import Config
from simmta.core.errors import SimmtaError
from simmta.core.instance import Instance
from simmta.core.records import BusSubscriber, MasterStarted, MasterStopping, SnapshotState
from simmta.core.services import ServiceTable
from simmta.master import access, layout, uids
from simmta.master.bus import Subscriber
from simmta.master.control import Controller
from simmta.master.supervisor import Supervisor

SNAPSHOT_QUEUE_LIMIT = 500  # messages listed per queue in a snapshot (counts are exact)


def _inet(host: str, port: int, what: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
    except OSError as e:
        s.close()
        raise SimmtaError(
            f"cannot listen for {what} on {host}:{port}: {e.strerror}"
            + (" (use --smtp-port 0 for any free port)" if port else "")
        ) from None
    s.listen(128)
    return s


def _unix(path: str, mode: int) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    os.chmod(path, mode)
    s.listen(128)
    return s


def queue_snapshot(inst: Instance) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    listing: dict[str, list[dict[str, Any]]] = {}
    counts: dict[str, int] = {}
    for q in names.ALL_QUEUES:
        entries: list[dict[str, Any]] = []
        n = 0
        try:
            it = list(os.scandir(inst.queue / q))
        except OSError:
            it = []
        for entry in it:
            if q != names.MAILDROP and not qf.is_qid(entry.name):
                continue
            n += 1
            if len(entries) >= SNAPSHOT_QUEUE_LIMIT:
                continue
            if q == names.MAILDROP:
                entries.append({"qid": entry.name, "size": 0, "sender": "", "recipients": []})
                continue
            try:
                entries.append(
                    qf.read(inst.queue / q / entry.name, require_complete=q != names.INCOMING).summary()
                )
            except qf.CorruptQueueFile as e:
                entries.append(
                    {"qid": entry.name, "size": 0, "sender": "", "recipients": [], "damaged": str(e)}
                )
        listing[q], counts[q] = entries, n
    return listing, counts


class Master:
    def __init__(
        self, inst: Instance, cfg: Config, table: ServiceTable, lab: bool, out: TextIO, setup: userns.Setup
    ):
        self.inst, self.cfg, self.table, self.lab, self.out = inst, cfg, table, lab, out
        self.setup = setup
        self.mode = setup.mode
        self.owner_uid = os.stat(inst.path).st_uid if inst.path.exists() else os.getuid()
        self.done = asyncio.Event()
        self.subscriber_count = 0
        self.subscriber_tasks: set[asyncio.Task[None]] = set()
        self.ids = table.profile.ids(cfg)
        self.canary = ""  # the lab's canary message in hold/ (with --lab)

    def status(self) -> dict[str, Any]:
        return {
            "master_pid": os.getpid(),
            "instance": str(self.inst.path),
            "smtp": self.addresses.get(names.SMTPD, None),
            "peer": self.addresses.get(names.PEER),
            "privilege_mode": self.mode,
            "privilege": self.setup.as_dict(),
            "maildir_root": str(self.inst.mail),
            "lab": self.lab,
            "profile": self.table.profile.name,
            "profile_info": self.table.profile.as_dict(),
            "ids": self.ids,
            "local_users": self.cfg.local_users,
            "services": [
                {
                    "name": n,
                    "pids": sorted(st.children),
                    "throttled_until": st.throttled_until or None,
                    "limit": st.limit,
                }
                for n, st in self.sup.services.items()
            ],
            "pace": self.sup.pace,
            "faults": self.sup.faults,
            "events": {
                "subscribers": [s.stats() for s in self.sup.bus.subscribers],
                "seq": self.sup.bus.seq,
                "published": self.sup.bus.published,
                "invalid_from_children": self.sup.bus.invalid,
            },
        }

    def snapshot(self) -> dict[str, Any]:
        queues, counts = queue_snapshot(self.inst)
        return events.make(
            names.MASTER,
            SnapshotState(
                services=self.table.as_list(),
                processes=self.sup.processes(),
                queues=queues,
                queue_counts=counts,
                config=dict(self.cfg),
                privilege_mode=self.mode,
                privilege=self.setup.as_dict(),
                smtp=self.status()["smtp"],
                peer=self.addresses.get(names.PEER),
                pace=self.sup.pace,
                faults=self.sup.faults,
                lab=self.lab,
                instance=str(self.inst.path),
                queue_dir=str(self.inst.queue),
                profile=self.table.profile.as_dict(),
                ids=self.ids,
                delivered={name: maildir.count(path) for name, path in self.inst.mailboxes()},
            ),
        )

    async def run(self) -> None:
        if self.mode == privilege.REAL:  # uids nobody else has, held for as long as we run
            self.cfg, self.uid_claims = uids.allocate_for(self.inst, self.table, self.cfg)
            self.ids = self.table.profile.ids(self.cfg)
        inst, cfg = self.inst, self.cfg
        layout.prepare(inst, cfg, self.mode, self.table.profile)
        if self.lab:
            self.canary = layout.place_lab(inst, cfg, self.mode, self.table.profile)
        sockets: dict[str, socket.socket] = {}
        self.addresses: dict[str, dict[str, Any]] = {}
        host = cfg.inet_interfaces
        for svc in self.table:
            if svc.type == "inet":
                port = cfg.peer_port if svc.role == "internet" else cfg.smtp_port
                s = _inet(host, port, svc.name)
                sockets[svc.name] = s
                self.addresses[svc.name] = {"host": host, "port": s.getsockname()[1]}
            else:
                path = str(inst.queue / svc.socket_dir / svc.name)
                public_user = svc.name == names.PICKUP  # the only socket users may reach
                # Several uids (qmail) reach public sockets whatever their group: the directory
                # modes are the gate there, as for private sockets.
                open_ = public_user or svc.private or self.table.profile.group_shared_queue
                sockets[svc.name] = _unix(path, 0o666 if open_ else 0o660)
                if privilege.uids_enforced(self.mode) and not public_user:
                    os.chown(path, *layout.queue_ids(self.table.profile, cfg))
        self.sup = Supervisor(
            inst,
            cfg,
            self.table,
            self.setup,
            sockets,
            self.addresses,
            self.lab,
            open(inst.log / "master.log", "ab"),  # noqa: SIM115 (children's stderr, for life)
            self.ids,
        )
        self.sup.canary = self.canary
        bus_srv = await asyncio.start_unix_server(self._subscriber, path=str(inst.bus_socket))
        ctl_srv = await asyncio.start_unix_server(self._control, path=str(inst.control_socket))
        for p in (inst.bus_socket, inst.control_socket):
            os.chmod(p, 0o600)
            if privilege.uids_enforced(self.mode):
                os.chown(p, self.owner_uid, -1)
        self.controller = Controller(self.sup, self.status)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.done.set)
        await self.sup.start()
        smtp, peer = self.addresses.get(names.SMTPD), self.addresses.get(names.PEER)
        self.sup.emit(
            MasterStarted(
                smtp=smtp,
                peer=peer,
                privilege_mode=self.mode,
                privilege=privilege.describe(self.setup.as_dict()),
            )
        )
        self._write_status()
        self._banner(smtp, peer)
        await self.done.wait()
        self.sup.emit(MasterStopping(reason="signal"))
        bus_srv.close()
        ctl_srv.close()
        await self._hang_up_subscribers()
        await self.sup.stop()
        for p in (inst.status_file, inst.pid_file, inst.bus_socket, inst.control_socket):
            p.unlink(missing_ok=True)
        print("simmta: stopped", file=self.out, flush=True)

    def _write_status(self) -> None:
        tmp = self.inst.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status(), indent=1))
        os.replace(tmp, self.inst.status_file)
        self.inst.pid_file.write_text(f"{os.getpid()}\n")

    def _banner(self, smtp: Any, peer: Any) -> None:
        prof = self.table.profile
        lines = [
            f"simmta: master [{os.getpid()}] running, instance {self.inst.path}",
            f"simmta: profile {prof.name} ({prof.title})",
            *(f"simmta:   note: {n}" for n in prof.notes),
            f"simmta: SMTP on {smtp['host']}:{smtp['port']}" if smtp else "simmta: no SMTP",
            f"simmta: the Internet (peer) on {peer['host']}:{peer['port']}" if peer else "",
        ]
        lines += [f"simmta: {line}" for line in privilege.describe(self.setup.as_dict())]
        if self.lab:
            lines.append("simmta: LAB mode on: lab attempts allowed (control socket only)")
        print("\n".join(x for x in lines if x), file=self.out, flush=True)

    async def _hang_up_subscribers(self) -> None:
        """End every subscription before the loop stops (a task still reading then would be
        cancelled, and Python 3.11's asyncio prints that as a traceback)."""
        for sub in list(self.sup.bus.subscribers):
            sub.writer.close()
        if self.subscriber_tasks:
            await asyncio.wait(self.subscriber_tasks, timeout=5)

    async def _subscriber(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.subscriber_tasks.add(task)
            task.add_done_callback(self.subscriber_tasks.discard)
        sock = writer.get_extra_info("socket")
        if not access.allowed(sock, self.owner_uid):
            writer.close()
            return
        self.subscriber_count += 1
        sub = Subscriber(writer, f"subscriber {self.subscriber_count} (uid {access.peer_uid(sock)})")
        if not self.sup.bus.subscribers:
            await self.sup.set_watched(True)
        self.sup.read_order()  # what happened before the snapshot is in the snapshot
        self.sup.bus.add(sub, self.snapshot())
        self.sup.emit(BusSubscriber(action="joined", subscriber=sub.name))
        try:
            while await reader.read(4096):  # anything a subscriber sends is ignored
                pass
        except OSError:
            pass
        finally:
            self.sup.bus.remove(sub)
            if not self.sup.bus.subscribers:
                await self.sup.set_watched(False)
            writer.close()

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if not access.allowed(sock, self.owner_uid):
            writer.close()
            return
        try:
            async with asyncio.timeout(30):
                line = await reader.readline()
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict):
                        raise ValueError
                except ValueError:
                    reply: dict[str, Any] = {"ok": False, "error": "expected one JSON object"}
                else:
                    try:
                        reply = {"ok": True, **await self.controller.handle(req)}
                    except SimmtaError as e:
                        reply = {"ok": False, "error": str(e)}
                    except OSError as e:
                        reply = {"ok": False, "error": f"{e.strerror or e}"}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (TimeoutError, OSError, ValueError):
            pass
        finally:
            writer.close()


def run(
    inst: Instance,
    smtp_port: int | None,
    peer_port: int | None,
    lab: bool,
    want_privilege: str = "auto",
    profile: str = "postfix",
) -> int:
    cfg = inst.config()
    table = inst.services(profile)
    ports = {"smtp_port": smtp_port, "peer_port": peer_port}
    cfg = config.apply(cfg, {k: v for k, v in ports.items() if v is not None})
    try:
        running = inst.status()
    except SimmtaError:
        running = None
    if running:
        raise SimmtaError(f"simmta is already running for {inst.path} (master pid {running['master_pid']})")
    inst.path.mkdir(parents=True, exist_ok=True)
    setup = privilege.establish(cfg, want_privilege)  # rootless: from here on, inside the namespace
    master = Master(inst, cfg, table, lab, sys.stdout, setup)
    asyncio.run(master.run())
    return 0
