"""smtp: the SMTP client that relays mail to the next hop.

NAME
    smtp - SMTP delivery agent
DESCRIPTION
    For a delivery request from qmgr it opens the queue file, connects to the
    next hop (the peer, relayhost, or a transport_maps entry; no DNS), and
    speaks ESMTP with a timeout on every step. Per recipient: 2xx delivered,
    4xx deferred, 5xx bounced; a failure before any recipient (connection
    refused, lost connection, 4xx greeting) defers them all. On the wire only
    CRLF line ends, dot-stuffing, lines folded at 998 octets, and no stray CR
    (replaced by a space, as Postfix 3.9's cleanup_replace_stray_cr_lf does).
SECURITY
    Faces the Internet (the replies it parses are hostile). Unprivileged
    (mail_owner) and chrooted into the queue directory.
"""

import asyncio
import contextlib
import re
from typing import Any

from simmta.core import names
from simmta.core import queue as qf
from simmta.core.config import check_nexthop
from simmta.core.delivery import DeliveryAgent, RecipientStatus
from simmta.core.events import reply_text, safe_text
from simmta.core.records import SmtpCommand, SmtpReply
from simmta.core.skeleton import main

MAX_REPLY_LINES = 100
_DSN = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")


class SmtpError(Exception):
    """The conversation failed: every recipient not yet settled gets ``status``."""

    def __init__(self, status: names.Status, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def wire_format(content: bytes) -> bytes:
    """LF-ended content to SMTP DATA: CRLF, dot-stuffed, lines <= 998, and a stray
    CR (whatever cleanup_replace_stray_cr_lf left in the queue file) replaced by a
    space: simmta never hands a smuggling payload to a weaker next hop."""
    content = content.replace(b"\r", b" ")
    lines = content.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for line in lines:
        while len(line) > 998:
            out.append(line[:998])
            line = b" " + line[998:]
        out.append(b"." + line if line.startswith(b".") else line)
    return b"\r\n".join(out) + b"\r\n.\r\n"


class Conversation:
    """One SMTP client session, with its transcript emitted as events."""

    def __init__(self, agent: "Smtp", qid: str, sid: str | None):
        self.agent, self.qid, self.sid = agent, qid, sid
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self, host: str, port: int, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                self.reader, self.writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            raise SmtpError(names.DEFER, f"connect to {host}:{port}: timed out") from None
        except OSError as e:
            raise SmtpError(names.DEFER, f"connect to {host}:{port}: {e.strerror or e}") from None

    async def reply(self, timeout: float) -> tuple[int, str]:
        assert self.reader is not None
        lines: list[str] = []
        try:
            async with asyncio.timeout(timeout):
                while len(lines) < MAX_REPLY_LINES:
                    raw = await self.reader.readline()
                    if not raw.endswith(b"\n"):
                        raise SmtpError(names.DEFER, "lost connection with the next hop")
                    line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
                    lines.append(line)
                    if len(line) < 4 or line[3] != "-":
                        break
        except TimeoutError:
            raise SmtpError(names.DEFER, "timeout waiting for the next hop's reply") from None
        except (OSError, ValueError) as e:  # ValueError: a line past the stream limit
            raise SmtpError(names.DEFER, f"lost connection with the next hop ({type(e).__name__})") from None
        text = " ".join(line[4:] for line in lines)
        self.agent.ctx.emit(SmtpReply(line=reply_text(lines), peer=True), self.qid, self.sid)
        code = lines[-1][:3]
        if not code.isdigit() or code[0] not in "2345":
            raise SmtpError(names.DEFER, f"malformed reply from the next hop: {safe_text(lines[-1], 80)}")
        return int(code), text

    async def command(self, line: str, timeout: float) -> tuple[int, str]:
        assert self.writer is not None
        self.agent.ctx.emit(SmtpCommand(line=safe_text(line), peer=True), self.qid, self.sid)
        self.agent.ctx.emitter.flush()  # before the peer can tell of it
        try:
            self.writer.write(line.encode("utf-8", "replace") + b"\r\n")
            await self.writer.drain()
        except OSError:
            raise SmtpError(names.DEFER, "lost connection with the next hop") from None
        return await self.reply(timeout)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _status(code: int) -> names.Status:
    return names.OK if code < 400 else names.DEFER if code < 500 else names.FAIL


def _dsn(code: int, text: str) -> str:
    first = text.split(" ", 1)[0]
    return first if _DSN.match(first) else f"{str(code)[0]}.0.0"


class Smtp(DeliveryAgent):
    via = names.SMTP

    def nexthop(self, hop: str) -> tuple[str, int]:
        if hop in ("", "peer"):
            peer = self.ctx.spec["peer"]
            return peer["host"], int(peer["port"])
        host, _, port = hop.rpartition(":")
        return host.strip("[]"), int(port)

    async def deliver(
        self, msg: qf.QueueFile, rcpts: list[dict[str, Any]], req: dict[str, Any]
    ) -> list[RecipientStatus]:
        cfg = self.ctx.config
        sid = msg.sid
        try:
            host, port = self.nexthop(check_nexthop(req.get("nexthop", "")))
        except (ValueError, TypeError):
            return [
                RecipientStatus(r["address"], names.DEFER, "4.3.5", "bad next hop in request", "")
                for r in rcpts
            ]
        where = f"{host}:{port}"
        settled: dict[str, RecipientStatus] = {}
        conv = Conversation(self, msg.qid, sid)
        try:
            await conv.connect(host, port, cfg.smtp_connect_timeout)
            t = cfg.smtp_helo_timeout
            code, text = await conv.reply(t)
            if code >= 400:
                raise SmtpError(_status(code), f"host {where} refused to talk to me: {code} {text}")
            code, text = await conv.command(f"EHLO {cfg.myhostname}", t)
            if code >= 400:
                code, text = await conv.command(f"HELO {cfg.myhostname}", t)
                if code >= 400:
                    raise SmtpError(_status(code), f"host {where} said: {code} {text} (in reply to HELO)")
            code, text = await conv.command(f"MAIL FROM:<{msg.sender}>", t)
            if code >= 400:
                raise SmtpError(_status(code), f"host {where} said: {code} {text} (in reply to MAIL FROM)")
            accepted = []
            for r in rcpts:
                code, text = await conv.command(f"RCPT TO:<{r['address']}>", t)
                if code >= 400:
                    settled[r["address"]] = RecipientStatus(
                        r["address"],
                        _status(code),
                        _dsn(code, text),
                        f"host {where} said: {code} {text} (in reply to RCPT TO)",
                        "",
                    )
                else:
                    accepted.append(r["address"])
            if accepted:
                code, text = await conv.command("DATA", t)
                if code != 354:
                    raise SmtpError(
                        _status(code) if code >= 400 else names.DEFER,
                        f"host {where} said: {code} {text} (in reply to DATA)",
                    )
                self.ctx.emit(SmtpCommand(line="<message content> .", peer=True), msg.qid, sid)
                self.ctx.emitter.flush()
                conv.writer.write(wire_format(msg.content()))  # type: ignore[union-attr]
                self.ctx.crash_point("after-data", msg.qid)
                code, text = await conv.reply(cfg.smtp_data_done_timeout)
                for a in accepted:
                    settled[a] = RecipientStatus(
                        a,
                        _status(code),
                        _dsn(code, text),
                        f"host {where} said: {code} {text}" + ("" if code < 400 else " (end of data)"),
                        where if code < 400 else "",
                    )
            with contextlib.suppress(SmtpError):
                await conv.command("QUIT", 5.0)
        except SmtpError as e:
            for r in rcpts:
                if r["address"] not in settled:
                    settled[r["address"]] = RecipientStatus(
                        r["address"], e.status, "4.4.1" if e.status == names.DEFER else "5.0.0", e.reason, ""
                    )
        finally:
            conv.close()
        return [settled[r["address"]] for r in rcpts]


DAEMON = Smtp

if __name__ == "__main__":
    main(DAEMON)
