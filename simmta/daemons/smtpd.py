"""smtpd: the SMTP server, the only part of the MTA a remote client talks to.

NAME
    smtpd - SMTP server (aiosmtpd, hardened by simmta.core.smtpserver)
DESCRIPTION
    Serves one client connection at a time on the listening socket master
    bound (so a root master could bind port 25 for an unprivileged smtpd).
    ESMTP with SIZE, 8BITMIME and ENHANCEDSTATUSCODES; enforces
    message_size_limit, line_length_limit, smtpd_recipient_limit, the error and
    junk-command limits, smtpd_timeout and smtpd_client_connection_count_limit
    (shared between smtpd processes by simmta.core.anvil). Refuses unknown
    local recipients at RCPT (local_recipient_maps). Relays only for clients in
    mynetworks; otherwise only local domains are accepted. HELP is answered as
    Postfix 3.9 and later answer it (``214 2.0.0 Commands: ...``). At end of DATA it
    streams the message to cleanup and answers ``250 2.0.0 Ok: queued as QID``
    only after cleanup reports the queue file durable; a local failure is
    ``451 4.3.0`` with no internal detail.
SECURITY
    Faces the Internet. Unprivileged (mail_owner) and chrooted into the queue
    directory: it can reach cleanup's socket and nothing of the mailboxes.
"""

import asyncio
import contextlib
import functools
import ipaddress
import socket
from typing import Any

from simmta.core import address, anvil, clients, names
from simmta.core.records import SmtpLimit, SmtpReject
from simmta.core.skeleton import Context, Daemon, main
from simmta.core.smtpserver import Envelope, Handler, InstrumentedSMTP, Session, serve_session

Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


@functools.cache
def _networks(cidrs: tuple[str, ...]) -> Networks:
    return tuple(ipaddress.ip_network(n) for n in cidrs)


@functools.lru_cache(maxsize=256)
def _address(host: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(host)


def _client_in(peer: Any, networks: Networks) -> bool:
    try:
        client = _address(peer[0])
    except (ValueError, TypeError, IndexError):
        return False
    return any(client in n for n in networks)


def listed_networks(cfg: Any, networks: tuple[str, ...]) -> Networks:
    """A list of networks where "$mynetworks" stands for mynetworks, parsed."""
    return _networks(tuple(n for x in networks for n in (cfg.mynetworks if x == "$mynetworks" else [x])))


def forbids_bare_newline(cfg: Any, exclusions: Networks, peer: Any) -> bool:
    """smtpd_forbid_bare_newline = reject, and the client is not in its exclusion list."""
    return cfg.smtpd_forbid_bare_newline == "reject" and not _client_in(peer, exclusions)


class SmtpdHandler(Handler):
    """aiosmtpd hooks: policy at MAIL/RCPT, the hand-off to cleanup at DATA."""

    def __init__(self, ctx: Context, proto_ref: list[InstrumentedSMTP], forbid_bare_lf: bool):
        self.ctx = ctx
        self.forbid_bare_lf = forbid_bare_lf
        self.cfg = ctx.config
        self.proto = proto_ref
        self.networks = _networks(tuple(self.cfg.mynetworks))
        self.pending: set[asyncio.Task[Any]] = set()

    def session_id(self) -> str:
        return self.proto[0].sid if self.proto else "-"

    def _reject(self, status: str) -> str:
        self.ctx.emit(SmtpReject(code=status[:9], text=status[10:]), sid=self.session_id())
        return status

    async def handle_MAIL(
        self, server: InstrumentedSMTP, session: Session, envelope: Envelope, addr: str, options: list[str]
    ) -> str:
        # The null sender stays "<>" here: aiosmtpd takes an empty one for "no MAIL yet".
        if addr != "<>" and (why := address.syntax_error(addr)):
            return self._reject(f"501 5.1.7 Bad sender address syntax: {why}")
        envelope.mail_from = addr
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: InstrumentedSMTP, session: Session, envelope: Envelope, addr: str, options: list[str]
    ) -> str:
        # Every accepted RCPT counts, repeats included, as Postfix counts them.
        count = envelope.__dict__.get("simmta_rcpt_count", 0)
        if count >= self.cfg.smtpd_recipient_limit:
            self.ctx.emit(SmtpLimit(limit="smtpd_recipient_limit", code="452 4.5.3"), sid=self.session_id())
            return "452 4.5.3 Error: too many recipients"
        if addr.lower() == "postmaster":  # RFC 5321 4.5.1: <Postmaster> with no domain, any case
            addr = f"{addr}@{self.cfg.mydomain}"
        if why := address.syntax_error(addr):
            return self._reject(f"501 5.1.3 Bad recipient address syntax: {why}")
        if status := self._recipient_policy(addr, session):
            return self._reject(status)
        envelope.__dict__["simmta_rcpt_count"] = count + 1
        seen: set[str] = envelope.__dict__.setdefault("simmta_rcpts", set())  # new per MAIL
        local, _, domain = addr.rpartition("@")
        key = f"{local}@{domain.lower()}"
        if key in seen:
            return "250 2.1.5 Ok"  # a duplicate: delivered once, as Postfix's cleanup does
        seen.add(key)
        envelope.rcpt_tos.append(addr)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Ok"

    def _recipient_policy(self, addr: str, session: Session) -> str | None:
        """The refusal for a recipient, or None: relay control, then the local recipient table."""
        local = addr.rpartition("@")[0]
        route = address.resolve(addr, self.cfg)
        if route.transport != "local":
            return None if self._trusted(session) else f"554 5.7.1 <{addr}>: Relay access denied"
        if address.routing_syntax(local) and not self._trusted(session):
            return f"554 5.7.1 <{addr}>: Relay access denied"  # a percent hack or bang path
        unlisted = self.cfg.smtpd_reject_unlisted_recipient and not address.listed_recipient(local, self.cfg)
        if unlisted or address.routing_syntax(local) or address.unsafe_local_part(local):
            return f"550 5.1.1 <{addr}>: Recipient address rejected: User unknown in local recipient table"
        return None

    def _trusted(self, session: Session) -> bool:
        return _client_in(session.peer, self.networks)

    async def handle_DATA(self, server: InstrumentedSMTP, session: Session, envelope: Envelope) -> str:
        content: bytes = envelope.original_content or b""
        bare_lf = content.count(b"\n") != content.count(b"\r\n")
        if self.forbid_bare_lf and bare_lf:
            return self._reject("550 5.5.2 Error: bare <LF> received")
        peer = session.peer if isinstance(session.peer, tuple) else ("?", 0)
        request = {
            "sender": "" if envelope.mail_from == "<>" else envelope.mail_from,
            "recipients": list(envelope.rcpt_tos),
            "attrs": {
                "client": f"{peer[0]}",
                "helo": session.host_name or "unknown",
                "protocol": "ESMTP" if session.extended_smtp else "SMTP",
                "sid": self.session_id(),
                "origin": "smtp",
            },
        }
        # Shielded: if the client vanishes now, the commit still completes or
        # fails as a whole; the message is queued once or not at all.
        task = asyncio.ensure_future(self._to_cleanup(request, content))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
        server.hold_timeout()  # a 421 now would make the client resend a queued message
        try:
            reply = await asyncio.shield(task)
        finally:
            server.restart_timeout()
        self.ctx.crash_point("before-reply", reply.get("qid"))
        status = reply.get("status")
        if status == names.OK and isinstance(reply.get("qid"), str):
            server.qid = reply["qid"]  # from now on the session's events carry it
            return f"250 2.0.0 Ok: queued as {reply['qid']}"
        if status == names.FAIL:
            return self._reject(f"{reply.get('code', '554 5.0.0')} {reply.get('text', 'Error')}")
        return self._reject("451 4.3.0 Error: queue file write error")

    async def _to_cleanup(self, request: dict[str, Any], content: bytes) -> dict[str, Any]:
        """cleanup's reply to ``request`` (sender, recipients, attrs) with ``content``."""
        return await clients.cleanup_queue(
            self.ctx, **request, content=content, hop="queue this message", sid=self.session_id()
        )


PREGREET_REPLY = b"554 5.5.0 Error: SMTP protocol synchronization\r\n"


def talks_first(conn: socket.socket) -> bool:
    """True if the client sent something before our greeting (it cannot have seen it)."""
    try:
        return bool(conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except OSError:  # BlockingIOError: nothing yet, as it should be
        return False


class Smtpd(Daemon):
    # The configuration's network lists, parsed once per process (not twice per session).
    @functools.cached_property
    def event_limit_exceptions(self) -> Networks:
        return listed_networks(self.ctx.config, self.ctx.config.smtpd_client_event_limit_exceptions)

    @functools.cached_property
    def bare_newline_exclusions(self) -> Networks:
        return listed_networks(self.ctx.config, self.ctx.config.smtpd_forbid_bare_newline_exclusions)

    def handler(self, ref: list[InstrumentedSMTP], forbid_bare_lf: bool) -> SmtpdHandler:
        """The aiosmtpd hooks for one session (a composition may hand off differently)."""
        return SmtpdHandler(self.ctx, ref, forbid_bare_lf)

    async def handle_socket(self, conn: socket.socket) -> None:
        ctx, cfg = self.ctx, self.ctx.config
        if talks_first(conn):  # Postfix's smtpd_forbid_unauth_pipelining: a spambot's hallmark
            ctx.emit(SmtpLimit(limit="smtpd_forbid_unauth_pipelining", code="554 5.5.0"))
            with contextlib.suppress(OSError):
                await asyncio.get_running_loop().sock_sendall(conn, PREGREET_REPLY)
            return
        try:
            peer = conn.getpeername()
        except OSError:  # gone already
            return
        limit = cfg.smtpd_client_connection_count_limit
        slot = None
        if limit and not _client_in(peer, self.event_limit_exceptions):
            slot = anvil.take(ctx.queue_path(names.ANVIL), peer[0], limit)
            if slot is None:
                ctx.emit(
                    SmtpLimit(
                        limit="smtpd_client_connection_count_limit",
                        code="421 4.7.0",
                        client=f"{peer[0]}:{peer[1]}",
                    )
                )
                with contextlib.suppress(OSError):
                    await asyncio.get_running_loop().sock_sendall(
                        conn,
                        f"421 4.7.0 {cfg.myhostname} Error: too many connections from {peer[0]}\r\n".encode(),
                    )
                return
        try:
            await self._session(conn, peer)
        finally:
            if slot is not None:
                slot.release()

    async def _session(self, conn: socket.socket, peer: Any) -> None:
        ctx, cfg = self.ctx, self.ctx.config
        ref: list[InstrumentedSMTP] = []
        forbid_bare_lf = forbids_bare_newline(cfg, self.bare_newline_exclusions, peer)
        handler = self.handler(ref, forbid_bare_lf)

        def make() -> InstrumentedSMTP:
            proto = InstrumentedSMTP(
                handler,
                ctx,
                hostname=cfg.myhostname,
                ident="simmta",
                data_size_limit=cfg.message_size_limit,
                timeout=cfg.smtpd_timeout,
                line_length_limit=cfg.line_length_limit,
                soft_errors=cfg.smtpd_soft_error_limit,
                hard_errors=cfg.smtpd_hard_error_limit,
                error_sleep=cfg.smtpd_error_sleep_time,
                junk_limit=cfg.smtpd_junk_command_limit,
                forbid_bare_lf=forbid_bare_lf,
                strict_envelopes=cfg.strict_rfc821_envelopes,
                postfix_help=True,
            )
            ref.append(proto)
            return proto

        await serve_session(conn, make)
        if handler.pending:  # let a commit that outlived its client finish
            await asyncio.gather(*handler.pending, return_exceptions=True)


DAEMON = Smtpd

if __name__ == "__main__":
    main(DAEMON)
