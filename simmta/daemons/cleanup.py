"""cleanup: completes a message's headers and writes its queue file.

NAME
    cleanup - canonicalize and enqueue a message
DESCRIPTION
    Takes a message from smtpd, pickup or bounce over IPC, normalizes line ends
    to LF, refuses content with message_reject_characters (550 5.6.0; NUL by
    default) after removing message_strip_characters, counts Received:
    headers (a mail loop past hopcount_limit is refused with 554 5.4.0),
    discards header text past header_size_limit, adds the missing Received:,
    Message-ID: and Date: headers, writes ``incoming/<QID>`` with an end
    record, fsyncs the file and the directory, answers "ok" (only now may
    smtpd say 250), and wakes qmgr.
    A local failure (disk full, unwritable queue) removes the partial file and
    answers "defer" (451 4.3.0) with no internal detail; the event says why.
SECURITY
    Unprivileged (mail_owner), chrooted into the queue directory. Its input
    comes from other daemons that face the network: every field is checked.
"""

import email.utils
import errno
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

from simmta.core import address, clients, config, ipc, names
from simmta.core import queue as qf
from simmta.core.events import safe_text
from simmta.core.records import IpcResponse, QueueCreated, QueueRemoved, SmtpLimit
from simmta.core.skeleton import Daemon, main

_HEADER = re.compile(rb"^[!-9;-~]+:")
_RECEIVED = re.compile(rb"^received:", re.IGNORECASE)


def _split_headers(content: bytes, limit: int) -> tuple[list[bytes], bytes, int, bool]:
    """(header lines kept, body, received count, headers truncated)."""
    headers: list[bytes] = []
    pos, size, received, cut = 0, 0, 0, False
    while pos < len(content):
        nl = content.find(b"\n", pos)
        end = len(content) if nl < 0 else nl + 1
        line = content[pos:end]
        if line in (b"\n", b""):
            pos = end
            break
        is_cont = line[:1] in (b" ", b"\t") and headers
        if not (is_cont or _HEADER.match(line)):
            break  # not a header: the body starts here (no blank line)
        if _RECEIVED.match(line):
            received += 1
        size += len(line)
        if size > limit:
            cut = True  # excess header text is discarded, as in Postfix
        else:
            headers.append(line if line.endswith(b"\n") else line + b"\n")
        pos = end
    return headers, content[pos:], received, cut


def _each(chars: bytes) -> list[bytes]:
    return [chars[i : i + 1] for i in range(len(chars))]


def _subject(headers: list[bytes]) -> str:
    """The Subject: text for the event stream (neutralised and cut there)."""
    for h in headers:
        if h[:8].lower() == b"subject:":
            return safe_text(h[8:].strip(), 120)
    return ""


def _has(headers: list[bytes], name: bytes) -> bool:
    prefix = name.lower() + b":"
    return any(h[: len(prefix)].lower() == prefix for h in headers)


class Cleanup(Daemon):
    def pre_init(self) -> None:
        email.utils.format_datetime(datetime.now(UTC))  # load what formatting needs

    async def handle(self, conn: ipc.Conn) -> None:
        ctx, cfg = self.ctx, self.ctx.config
        try:
            req = await conn.read_json()
            sender = ipc.field(req, "sender", str)
            rcpts = ipc.field(req, "recipients", list)
            attrs = ipc.field(req, "attrs", dict)
            if (
                not rcpts
                or len(rcpts) > cfg.smtpd_recipient_limit
                or not all(isinstance(r, str) and 0 < len(r) <= 256 for r in rcpts)
                or len(sender) > 256
            ):
                raise ipc.ProtocolError("bad envelope")
            content = await conn.read_content(cfg.message_size_limit + 65536)
        except ipc.ProtocolError as e:
            ctx.emit(IpcResponse(to=names.CLEANUP, what="queue", outcome=f"protocol error: {e}"))
            await conn.reply(names.DEFER, code="451 4.3.0", text="Error: internal protocol error")
            return
        status, fields = self.accept(sender, rcpts, attrs, content)
        await conn.reply(status, **fields)
        if status == names.OK:
            await self.wake_qmgr(fields["qid"], attrs)

    def accept(
        self, sender: str, rcpts: list[str], attrs: dict, content: bytes
    ) -> tuple[names.Status, dict[str, str]]:
        """Queue one checked envelope and message: ("ok", qid), or why not (the reply)."""
        ctx, cfg = self.ctx, self.ctx.config
        sid = attrs.get("sid") if isinstance(attrs.get("sid"), str) else None
        rcpts = list(dict.fromkeys(rcpts))  # one copy per recipient, whoever sent the list
        if strip := config.characters(cfg.message_strip_characters):
            content = content.translate(None, strip)
        if any(content.find(c) >= 0 for c in _each(config.characters(cfg.message_reject_characters))):
            ctx.emit(SmtpLimit(limit="message_reject_characters", code="550 5.6.0"), sid=sid)
            return names.FAIL, {
                "code": "550 5.6.0",
                "text": "Error: message content contains illegal characters",
            }
        # LF line ends; a stray CR left over becomes a space (cleanup_replace_stray_cr_lf):
        # a mail reader or a next hop could take it for a line end and see a header
        # or a command the sender smuggled in.
        content = content.replace(b"\r\n", b"\n")
        if cfg.cleanup_replace_stray_cr_lf:
            content = content.replace(b"\r", b" ")
        headers, body, hops, cut = _split_headers(content, cfg.header_size_limit)
        if hops >= cfg.hopcount_limit:  # as Postfix: the limit-th Received: is a loop
            ctx.emit(SmtpLimit(limit="hopcount_limit", code="554 5.4.0", hops=hops), sid=sid)
            return names.FAIL, {"code": "554 5.4.0", "text": "Error: too many hops"}
        announced: list[str] = []

        def announce(qid: str, size: int) -> None:
            """Before the file is marked complete, when qmgr may see it: cause before effect."""
            if cut:
                ctx.emit(SmtpLimit(limit="header_size_limit", code="-", kept=cfg.header_size_limit), qid, sid)
            ctx.emit(
                QueueCreated(
                    queue=names.INCOMING,
                    size=size,
                    sender=sender,
                    recipients=rcpts[:20],
                    origin=str(attrs.get("origin", "?")),
                    subject=_subject(headers),
                ),
                qid,
                sid,
            )
            ctx.emitter.flush()
            announced.append(qid)

        try:
            qid = self.enqueue(sender, rcpts, attrs, headers, body, announce)
        except OSError as e:
            reason = errno.errorcode.get(e.errno or 0, "error")
            ctx.emit(
                QueueRemoved(
                    queue=names.INCOMING, reason=f"write failed ({reason}: {e.strerror}); nothing queued"
                ),
                announced[0] if announced else None,
                sid,
            )
            return names.DEFER, {"code": "451 4.3.0", "text": "Error: queue file write error"}
        return names.OK, {"qid": qid}

    async def wake_qmgr(self, qid: str, attrs: dict) -> None:
        sid = attrs.get("sid") if isinstance(attrs.get("sid"), str) else None
        await clients.qmgr_trigger(
            self.ctx, names.TRIGGER_INCOMING, "wake up: new mail in incoming", qid, sid
        )

    def enqueue(
        self,
        sender: str,
        rcpts: list[str],
        attrs: dict,
        headers: list[bytes],
        body: bytes,
        announce: Callable[[str, int], None],
    ) -> str:
        """Write, announce and commit one queue file; its queue ID."""
        ctx, cfg = self.ctx, self.ctx.config
        if ctx.faults.get("queue") == "full":
            raise OSError(errno.ENOSPC, "No space left on device (injected fault)")
        w = qf.QueueWriter(ctx.queue_path(names.INCOMING), group_access=ctx.group_queue)
        try:
            now = time.time()
            stamp = email.utils.format_datetime(datetime.fromtimestamp(now, UTC))
            helo = address.printable(str(attrs.get("helo") or "localhost"))[:64]
            client = address.printable(str(attrs.get("client") or "local"))[:64]
            proto = address.printable(str(attrs.get("protocol") or "local"))[:16]
            rcvd = f"Received: from {helo} ({client})\n\tby {cfg.myhostname} (simmta) with {proto} id {w.qid}"
            if len(rcpts) == 1:
                rcvd += f"\n\tfor <{rcpts[0]}>"
            added = [(rcvd + f"; {stamp}\n").encode("utf-8", "replace")]
            if not _has(headers, b"message-id"):
                added.append(f"Message-ID: <{w.qid}.{int(now)}@{cfg.myhostname}>\n".encode())
            if not _has(headers, b"date"):
                added.append(f"Date: {stamp}\n".encode())
            if not _has(headers, b"from") and sender:
                added.append(f"From: <{sender}>\n".encode("utf-8", "replace"))
            all_headers = b"".join([added[0], *headers, *added[1:]])
            w.write(*qf.envelope_records(now, attrs, sender, rcpts))
            ctx.crash_point("half-written", w.qid)
            w.write(*qf.record_parts(names.REC_CONTENT, all_headers, b"\n", body))
            ctx.crash_point("before-fsync", w.qid)
            announce(w.qid, len(all_headers) + 1 + len(body))
            w.commit()
            return w.qid
        except BaseException:
            w.abort()
            raise


DAEMON = Cleanup

if __name__ == "__main__":
    main(DAEMON)
