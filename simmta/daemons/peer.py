"""peer: a remote SMTP server standing for "the Internet".

NAME
    peer - the simulated next hop
DESCRIPTION
    The default next hop for every non-local domain: it accepts mail for any
    address and stores it in ``peer/Maildir`` of the instance, so relaying,
    deferral, retry and bouncing can be shown without a network. Faults are
    switched at run time (``simmta peer fault ...``): ``down`` closes every
    connection before the greeting, ``tempfail`` answers 451 to RCPT,
    ``permfail`` answers 550 to RCPT, ``slow`` waits 2 s before each reply.
SECURITY
    Not part of the MTA. It runs unprivileged, outside the chroot.
"""

import asyncio
import socket

from simmta.core import maildir
from simmta.core.records import SmtpReject
from simmta.core.skeleton import Daemon, main
from simmta.core.smtpserver import Envelope, Handler, InstrumentedSMTP, Session, serve_session

SLOW_DELAY = 2.0


class PeerHandler(Handler):
    def __init__(self, peer: "Peer"):
        self.peer = peer

    @property
    def fault(self) -> str:
        return self.peer.ctx.faults.get("peer", "none")

    async def _pace(self) -> None:
        if self.fault == "slow":
            await asyncio.sleep(SLOW_DELAY)

    async def handle_RCPT(
        self, server: InstrumentedSMTP, session: Session, envelope: Envelope, addr: str, options: list[str]
    ) -> str:
        await self._pace()
        if self.fault == "tempfail":
            return "451 4.3.0 Temporary failure (fault injected at the peer)"
        if self.fault == "permfail":
            return f"550 5.1.1 <{addr}>: Recipient address rejected (fault injected at the peer)"
        envelope.rcpt_tos.append(addr)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: InstrumentedSMTP, session: Session, envelope: Envelope) -> str:
        await self._pace()
        content = (envelope.original_content or b"").replace(b"\r\n", b"\n")
        head = (
            f"Return-Path: <{envelope.mail_from}>\nX-Peer-Recipients: {', '.join(envelope.rcpt_tos)}\n"
        ).encode("utf-8", "replace")
        maildir.deliver(self.peer.ctx.instance.peer_maildir, [head, content])
        return "250 2.0.0 Ok: stored by the peer"


class Peer(Daemon):
    def pre_init(self) -> None:
        maildir.create(self.ctx.instance.peer_maildir)

    async def handle_socket(self, conn: socket.socket) -> None:
        if self.ctx.faults.get("peer") == "down":
            self.ctx.emit(SmtpReject(code="-", text="peer is down: connection closed at once"))
            return
        cfg = self.ctx.config
        handler = PeerHandler(self)
        await serve_session(
            conn,
            lambda: InstrumentedSMTP(
                handler,
                self.ctx,
                hostname="peer.example.net",
                ident="peer (simmta's Internet)",
                data_size_limit=None,
                timeout=cfg.smtpd_timeout,
                line_length_limit=10000,
                soft_errors=1000,
                hard_errors=1000,
                error_sleep=0,
                junk_limit=1000,
            ),
        )


DAEMON = Peer

if __name__ == "__main__":
    main(DAEMON)
