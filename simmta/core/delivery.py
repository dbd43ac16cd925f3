"""The delivery-agent side of qmgr's delivery protocol (shared by local and smtp).

Request (from qmgr)::

    {"request": "deliver", "queue": "active", "qid": QID,
     "recipients": [{"address": A, "offset": N}, ...]}

The agent opens the queue file itself (qmgr never ships message content),
checks that every recipient offset names a pending recipient record of that
file, delivers, and answers per recipient::

    {"status": "ok", "recipients": [{"address", "status": ok|defer|fail,
      "dsn": "2.0.0", "reason", "where"}]}

As Postfix's agents do (deliver_completed()), the agent itself marks each
delivered recipient done in the queue file before it answers: if the agent
or qmgr dies between the delivery and qmgr's reading of the answer, the
recipient is not delivered again.

Trust: the request comes from qmgr, the queue file from the queue directory;
both are checked here before an agent acts on them.
"""

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from simmta.core import ipc, names
from simmta.core import queue as qf
from simmta.core.records import DeliveryBounced, DeliveryDeferred, DeliveryDelivered, Record
from simmta.core.skeleton import Context, Daemon


@dataclass
class RecipientStatus:
    address: str
    status: names.Status
    dsn: str
    reason: str
    where: str

    def record(self, via: str) -> Record:
        """The delivery event this outcome is."""
        if self.status == names.OK:
            return DeliveryDelivered(rcpt=self.address, via=via, where=self.where, dsn=self.dsn)
        if self.status == names.DEFER:
            return DeliveryDeferred(rcpt=self.address, via=via, reason=self.reason, dsn=self.dsn)
        return DeliveryBounced(rcpt=self.address, via=via, reason=self.reason, dsn=self.dsn)


async def read_queue_request(
    ctx: Context, conn: ipc.Conn, request: str, items: str
) -> tuple[dict[str, Any], list[Any], qf.QueueFile]:
    """A request from qmgr about a message in active/: (request, its list, the queue file).

    Shared by the delivery agents and bounce; raises ProtocolError or CorruptQueueFile.
    """
    req = await conn.read_json()
    qid = ipc.field(req, "qid", str)
    listed = ipc.field(req, items, list)
    if req.get("request") != request or req.get("queue") != names.ACTIVE or not qf.is_qid(qid) or not listed:
        raise ipc.ProtocolError(f"bad {request} request")
    return req, listed, qf.read(ctx.queue_path(names.ACTIVE, qid))


class DeliveryAgent(Daemon):
    via: ClassVar[str] = ""

    async def deliver(
        self, msg: qf.QueueFile, rcpts: list[dict[str, Any]], req: dict[str, Any]
    ) -> list[RecipientStatus]:
        raise NotImplementedError

    async def handle(self, conn: ipc.Conn) -> None:
        ctx = self.ctx
        try:
            req, rcpts, msg = await read_queue_request(ctx, conn, names.REQ_DELIVER, "recipients")
            pending = {r.offset: r.address for r in msg.pending}
            for r in rcpts:
                if not isinstance(r, dict) or pending.get(r.get("offset", -1)) != r.get("address"):
                    raise ipc.ProtocolError("recipient does not match the queue file")
        except (ipc.ProtocolError, qf.CorruptQueueFile) as e:
            await conn.reply(names.DEFER, error=str(e))
            return
        results = await self.deliver(msg, rcpts, req)
        offsets = {r["address"]: r["offset"] for r in rcpts}
        for res in results:
            if res.status == names.OK and res.address in offsets:  # before qmgr hears of it: a crash
                qf.mark_done_anywhere(ctx.queue, msg.qid, offsets[res.address])  # now is no duplicate
        for res in results:
            ctx.emit(res.record(self.via), msg.qid, msg.sid)
        await conn.reply(names.OK, recipients=[asdict(r) for r in results])
