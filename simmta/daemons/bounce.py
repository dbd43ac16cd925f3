"""bounce: writes delivery status notifications (RFC 3464) back to the sender.

NAME
    bounce - DSN generator
DESCRIPTION
    qmgr asks for a DSN listing a message's permanently failed recipients.
    bounce reads the original queue file itself, builds a multipart/report
    (a human-readable part, a message/delivery-status part, and the original
    headers as text/rfc822-headers) from the null sender ``<>``, and injects
    it through cleanup like any other message. A DSN has the null sender, so
    if it fails in turn qmgr discards it: a bounce is never bounced.
SECURITY
    Unprivileged (mail_owner), chrooted. Failure reasons come from remote
    servers: they are flattened to one line of printable text before use.
"""

import email.utils
import re
import time
from datetime import UTC, datetime
from typing import Any

from simmta.core import clients, ipc, names
from simmta.core import queue as qf
from simmta.core.delivery import read_queue_request
from simmta.core.records import DeliveryBounce
from simmta.core.skeleton import Daemon, main

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")
MAX_ORIGINAL_HEADERS = 64 * 1024


def one_line(text: Any, limit: int = 300) -> str:
    return _UNSAFE.sub(" ", str(text))[:limit]


def build_dsn(myhostname: str, qid: str, msg: qf.QueueFile, failed: list[dict[str, Any]]) -> bytes:
    now = time.time()
    stamp = email.utils.format_datetime(datetime.fromtimestamp(now, UTC))
    arrival = email.utils.format_datetime(datetime.fromtimestamp(msg.arrival, UTC))
    boundary = f"{qid}.{int(now)}/{myhostname}"
    content = msg.content()
    end = content.find(b"\n\n")
    headers = content[: end + 1 if end >= 0 else len(content)][:MAX_ORIGINAL_HEADERS]
    lines = "\n".join(f"<{one_line(f['address'])}>: {one_line(f['reason'])}" for f in failed)
    per_rcpt = "\n".join(
        f"Final-Recipient: rfc822; {one_line(f['address'])}\nAction: failed\n"
        f"Status: {one_line(f.get('dsn') or '5.0.0', 16)}\n"
        f"Diagnostic-Code: X-Simmta; {one_line(f['reason'])}\n"
        for f in failed
    )
    text = f"""From: MAILER-DAEMON@{myhostname} (Mail Delivery System)
To: <{msg.sender}>
Subject: Undelivered Mail Returned to Sender
Date: {stamp}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="{boundary}"

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host {myhostname}.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

{lines}

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; {myhostname}
X-Simmta-Queue-ID: {msg.qid}
Arrival-Date: {arrival}

{per_rcpt}
--{boundary}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

"""
    return text.encode("utf-8", "replace") + headers + f"\n--{boundary}--\n".encode()


class Bounce(Daemon):
    def pre_init(self) -> None:
        email.utils.format_datetime(datetime.now(UTC))

    async def handle(self, conn: ipc.Conn) -> None:
        ctx = self.ctx
        try:
            _, failed, msg = await read_queue_request(ctx, conn, names.REQ_BOUNCE, "failed")
            if not all(isinstance(f, dict) and isinstance(f.get("address"), str) for f in failed):
                raise ipc.ProtocolError("bad bounce request")
        except (ipc.ProtocolError, qf.CorruptQueueFile) as e:
            await conn.reply(names.DEFER, error=str(e))
            return
        if msg.sender == "":
            await conn.reply(names.OK, note="null sender: a bounce is never bounced")
            return
        qid = msg.qid
        sid = msg.sid
        dsn = build_dsn(ctx.config.myhostname, qid, msg, failed)
        reply = await clients.cleanup_queue(
            ctx,
            "",
            [msg.sender],
            {
                "origin": "bounce",
                "protocol": "local",
                "client": "bounce",
                "helo": ctx.config.myhostname,
                "orig_qid": qid,
            },
            dsn,
            hop="queue a DSN",
            qid=qid,
            sid=sid,
            what="queue a DSN",
        )
        if reply.get("status") != names.OK:
            await conn.reply(names.DEFER, error="cleanup could not queue the DSN")
            return
        ctx.emit(
            DeliveryBounce(
                orig_qid=qid,
                sender=msg.sender,
                recipients=[f["address"] for f in failed],
                dsn_qid=reply.get("qid"),
            ),
            qid,
            sid,
        )
        await conn.reply(names.OK, dsn_qid=reply.get("qid"))


DAEMON = Bounce

if __name__ == "__main__":
    main(DAEMON)
