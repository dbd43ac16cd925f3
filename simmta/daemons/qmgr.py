"""qmgr: the resident queue manager.

NAME
    qmgr - schedule deliveries, retries and bounces
DESCRIPTION
    On start it moves leftovers in ``active/`` back to ``incoming/`` (crash
    recovery). On an ``I`` trigger (from cleanup) it takes complete files (mode
    0700) from ``incoming/`` into ``active/``; every queue_run_delay (or on a
    ``D``/``A`` trigger) it takes deferred files whose retry time (mtime) has
    come. For each message it resolves every pending recipient (local, or smtp
    and its next hop), asks the delivery agents over their sockets, marks
    delivered recipients done in the queue file, writes the per-message status
    logs, asks bounce for a DSN for permanent failures (never for a bounce:
    null-sender mail that fails is discarded), and moves temporary failures
    to ``deferred/`` with an exponential backoff, until maximal_queue_lifetime
    turns them into bounces. Damaged files go to ``corrupt/``; ``hold/`` is
    left alone. It never touches message content.
SECURITY
    Unprivileged (mail_owner) but not chrooted, as on Debian. It trusts no
    queue file and no agent reply without checking it.
"""

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from simmta.core import address, clients, config, ipc, names
from simmta.core import queue as qf
from simmta.core.records import (
    DeliveryBounced,
    ProcessState,
    QueueCorrupt,
    QueueDeferred,
    QueueMoved,
    QueueRemoved,
)
from simmta.core.skeleton import Daemon, main, run_task

ACTIVE_LIMIT = 1000  # messages in active/ at once (Postfix: qmgr_message_active_limit)


class Qmgr(Daemon):
    resident = True

    def post_init(self) -> None:
        self.incoming_wake = asyncio.Event()
        self.deferred_wake = asyncio.Event()
        self.flush = False
        self.slots = asyncio.Semaphore(ACTIVE_LIMIT)
        self.destinations = Destinations()
        self.transports: dict[str, asyncio.Semaphore] = {}  # no more than an agent's processes
        self.in_flight: set[str] = set()

    async def handle(self, conn: ipc.Conn) -> None:
        data = await conn.read_some(64)
        if names.TRIGGER_INCOMING in data or names.TRIGGER_WAKEUP in data:
            self.incoming_wake.set()
        if names.TRIGGER_FLUSH in data:
            self.flush = True
        if any(t in data for t in (names.TRIGGER_DEFERRED, names.TRIGGER_FLUSH, names.TRIGGER_WAKEUP)):
            self.deferred_wake.set()

    async def background(self) -> None:
        self.recover()
        self.incoming_wake.set()
        self.deferred_wake.set()
        await asyncio.gather(self.incoming_loop(), self.deferred_loop())

    def recover(self) -> None:
        """Crash recovery: what was in active/ when qmgr died starts again from incoming/."""
        ctx = self.ctx
        for entry in os.scandir(ctx.queue_path(names.ACTIVE)):
            if qf.is_qid(entry.name):
                try:
                    qf.move(ctx.queue, entry.name, names.ACTIVE, names.INCOMING)
                except OSError:
                    continue
                ctx.emit(
                    QueueMoved(
                        from_=names.ACTIVE, to=names.INCOMING, reason="qmgr restart: recovering active/"
                    ),
                    entry.name,
                )

    async def incoming_loop(self) -> None:
        stale_after = self.ctx.config.smtpd_timeout + 60
        while True:
            await self.incoming_wake.wait()
            self.incoming_wake.clear()
            now = time.time()
            for entry in sorted(os.scandir(self.ctx.queue_path(names.INCOMING)), key=_mtime):
                if not qf.is_qid(entry.name) or entry.name in self.in_flight:
                    continue
                try:
                    st = entry.stat()
                except OSError:
                    continue
                if not qf.is_complete_mode(st):  # cleanup still writing, or died writing
                    if now - st.st_mtime > stale_after:
                        self.remove(entry.name, names.INCOMING, "incomplete file abandoned by cleanup")
                    continue
                await self.activate(entry.name, names.INCOMING)

    async def deferred_loop(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.ctx.config.queue_run_delay):
                    await self.deferred_wake.wait()
            except TimeoutError:
                pass
            self.deferred_wake.clear()
            flush, self.flush = self.flush, False
            now = time.time()
            for entry in sorted(os.scandir(self.ctx.queue_path(names.DEFERRED)), key=_mtime):
                if not qf.is_qid(entry.name) or entry.name in self.in_flight:
                    continue
                try:
                    due = entry.stat().st_mtime <= now
                except OSError:
                    continue
                if due or flush:
                    await self.activate(entry.name, names.DEFERRED)

    async def activate(self, qid: str, src: str) -> None:
        await self.slots.acquire()
        try:
            qf.move(self.ctx.queue, qid, src, names.ACTIVE)
        except OSError:  # gone (delivered twice? held or deleted by an admin)
            self.slots.release()
            return
        self.in_flight.add(qid)
        self.ctx.emit(QueueMoved(from_=src, to=names.ACTIVE), qid)
        run_task(self.process(qid))

    async def process(self, qid: str) -> None:
        try:
            self.ctx.crash_point("after-move", qid)
            await self._process(qid)
        except Exception as e:  # never lose a message to a qmgr bug: leave it deferred
            self.ctx.emit(ProcessState(state="error", error=f"{type(e).__name__}: {e}"[:300]), qid)
            self.defer_file(qid, f"internal error in qmgr ({type(e).__name__})", time.time())
        finally:
            self.in_flight.discard(qid)
            self.slots.release()

    async def _process(self, qid: str) -> None:
        ctx, cfg = self.ctx, self.ctx.config
        path = ctx.queue_path(names.ACTIVE, qid)
        try:
            msg = qf.read(path)
        except qf.CorruptQueueFile as e:
            try:
                qf.move(ctx.queue, qid, names.ACTIVE, names.CORRUPT)
            except OSError:
                return
            ctx.emit(QueueCorrupt(queue=names.CORRUPT, reason=str(e)), qid)
            return
        sid = msg.sid
        batches: dict[tuple[str, str], list[qf.Recipient]] = {}
        results: list[dict[str, Any]] = []
        for r in msg.pending:
            route = address.resolve(r.address, cfg)
            if route.transport == "error":
                results.append(
                    {
                        "address": r.address,
                        "status": names.FAIL,
                        "dsn": "5.1.2",
                        "reason": route.reason,
                        "offset": r.offset,
                        "via": "qmgr",
                    }
                )
            else:
                # local: one recipient per request (local_destination_recipient_limit = 1)
                dest = route.nexthop if route.transport == names.SMTP else r.address.lower()
                batches.setdefault((route.transport, dest), []).append(r)
        outcomes = await asyncio.gather(
            *(self.ask_agent(msg, t, dest, rs, sid) for (t, dest), rs in batches.items())
        )
        for out in outcomes:
            results += out
        await self.settle(msg, results, sid)

    async def ask_agent(
        self, msg: qf.QueueFile, transport: str, destination: str, rcpts: list[qf.Recipient], sid: str | None
    ) -> list[dict[str, Any]]:
        ctx, cfg = self.ctx, self.ctx.config
        by_offset = {r.offset: r for r in rcpts}
        req: dict[str, Any] = {"recipients": [{"address": r.address, "offset": r.offset} for r in rcpts]}
        if transport == names.SMTP:
            req["nexthop"] = destination
        limit = (
            cfg.local_destination_concurrency_limit
            if transport == names.LOCAL
            else cfg.default_destination_concurrency_limit
        )
        agents = self.transports.setdefault(transport, asyncio.Semaphore(cfg.default_process_limit))

        def error(e: Exception) -> str:
            # Postfix: "unknown mail transport error"; here the class is told why it waits.
            crashed = isinstance(e, ipc.ProtocolError | ConnectionResetError | BrokenPipeError)
            what = "crashed" if crashed else f"failed ({type(e).__name__})"
            return (
                f"{transport} agent {what}: deferred, retry in {config.duration(self.backoff(msg.arrival))}"
            )

        async with self.destinations.slot((transport, destination), limit), agents:
            reply = await clients.agent_deliver(
                ctx, transport, req, f"deliver to {len(rcpts)} recipient(s)", msg.qid, sid, error
            )
        out: list[dict[str, Any]] = []
        answered = reply.get("recipients") if reply.get("status") == names.OK else None
        if isinstance(answered, list):
            for a in answered:
                if not isinstance(a, dict) or a.get("status") not in names.STATUSES:
                    continue
                match = [r for r in rcpts if r.address == a.get("address") and r.offset in by_offset]
                if not match:
                    continue
                r = match[0]
                by_offset.pop(r.offset)
                out.append(
                    {
                        "address": r.address,
                        "offset": r.offset,
                        "status": a["status"],
                        "dsn": str(a.get("dsn", ""))[:16],
                        "reason": str(a.get("reason", ""))[:300],
                        "via": transport,
                    }
                )
        reason = str(reply.get("error") or "no answer from the delivery agent")
        for r in by_offset.values():  # unanswered: try again later
            out.append(
                {
                    "address": r.address,
                    "offset": r.offset,
                    "status": names.DEFER,
                    "dsn": "4.3.0",
                    "reason": reason,
                    "via": transport,
                }
            )
        return out

    async def settle(self, msg: qf.QueueFile, results: list[dict[str, Any]], sid: str | None) -> None:
        ctx, cfg = self.ctx, self.ctx.config
        now = time.time()
        for r in results:
            if r["status"] == names.OK:
                self.mark_done(msg, r["offset"])
        deferred = [r for r in results if r["status"] == names.DEFER]
        failed = [r for r in results if r["status"] == names.FAIL]
        if deferred and now - msg.arrival > cfg.maximal_queue_lifetime:
            for r in deferred:
                r.update(
                    status=names.FAIL,
                    dsn="4.4.7",
                    reason=f"message expired after {int(now - msg.arrival)}s: {r['reason']}",
                )
                ctx.emit(DeliveryBounced(rcpt=r["address"], via="qmgr", reason=r["reason"]), msg.qid, sid)
            failed, deferred = failed + deferred, []
        stamp = {"time": now}
        if deferred:
            qf.append_status(ctx.queue, names.DEFER_LOG, msg.qid, [{**r, **stamp} for r in deferred])
        if failed:
            qf.append_status(ctx.queue, names.BOUNCE_LOG, msg.qid, [{**r, **stamp} for r in failed])
            if await self.bounce(msg, failed, sid):
                for r in failed:
                    self.mark_done(msg, r["offset"])
            else:
                deferred += failed
        if deferred:
            self.defer_file(msg.qid, deferred[0]["reason"], msg.arrival, sid)
        else:
            self.remove(msg.qid, names.ACTIVE, "all recipients done", sid)

    async def bounce(self, msg: qf.QueueFile, failed: list[dict[str, Any]], sid: str | None) -> bool:
        """Have bounce send a DSN; a bounce itself is never bounced."""
        ctx = self.ctx
        if msg.sender == "":
            ctx.emit(
                DeliveryBounced(
                    rcpt=failed[0]["address"],
                    via="qmgr",
                    reason="undeliverable bounce (null sender): discarded, never bounced",
                ),
                msg.qid,
                sid,
            )
            return True
        told = [{k: r[k] for k in ("address", "dsn", "reason", "via")} for r in failed]
        reply = await clients.bounce_send(ctx, told, "send a DSN to the sender", msg.qid, sid)
        return reply.get("status") == names.OK

    def mark_done(self, msg: qf.QueueFile, offset: int) -> None:
        with contextlib.suppress(OSError):
            qf.mark_done(msg.path, offset)

    def backoff(self, arrival: float) -> float:
        cfg = self.ctx.config
        return min(max(time.time() - arrival, cfg.minimal_backoff_time), cfg.maximal_backoff_time)

    def defer_file(self, qid: str, reason: str, arrival: float, sid: str | None = None) -> None:
        now, backoff = time.time(), self.backoff(arrival)
        try:
            target = qf.move(self.ctx.queue, qid, names.ACTIVE, names.DEFERRED)
            os.utime(target, (now, now + backoff))
        except OSError:
            return
        self.ctx.emit(QueueDeferred(next_retry=now + backoff, reason=reason[:300]), qid, sid)

    def remove(self, qid: str, queue: str, reason: str, sid: str | None = None) -> None:
        try:
            os.unlink(self.ctx.queue_path(queue, qid))
        except OSError:
            return
        for log in names.STATUS_LOGS:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.ctx.queue_path(log, qid))
        self.ctx.emit(QueueRemoved(queue=queue, reason=reason), qid, sid)


class Destinations:
    """Postfix's per-destination concurrency: at most ``limit`` deliveries to a
    destination (a next hop, or for local one recipient's Maildir) at once, so
    parallel deliveries do not just queue up on the same locks and disk."""

    def __init__(self) -> None:
        self.slots: dict[tuple[str, str], tuple[asyncio.Semaphore, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def slot(self, key: tuple[str, str], limit: int) -> AsyncIterator[None]:
        sem, users = self.slots.setdefault(key, (asyncio.Semaphore(limit), [0]))
        users[0] += 1
        try:
            async with sem:
                yield
        finally:
            users[0] -= 1
            if not users[0]:  # forget idle destinations: memory stays bounded
                del self.slots[key]


def _mtime(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat().st_mtime
    except OSError:
        return 0.0


DAEMON = Qmgr

if __name__ == "__main__":
    main(DAEMON)
