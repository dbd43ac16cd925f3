"""sendmail: the SMTP dialogue and the queue write in one process (the sendmail profile).

NAME
    sendmail - Sendmail's per-connection SMTP child, composed from smtpd and cleanup
DESCRIPTION
    The composition module of the sendmail profile: smtpd's dialogue and policy
    unchanged, but at end of DATA the same process writes the queue file itself
    with cleanup's code (headers, records, fsync, then 250) instead of handing
    the message to another process. Nothing here is new mail logic: it only
    moves the boundary, which is the point of the profile.
SECURITY
    Runs as root, faces the Internet, and writes the queue: a hole in the SMTP
    parser is a hole in a root process that owns the queue, as in Sendmail
    before 8.12 (see lessons "Blast radius" and "Three ways to build an MTA").
"""

from typing import Any

from simmta.core import names
from simmta.core.records import IpcRequest, IpcResponse
from simmta.core.skeleton import Context, main
from simmta.core.smtpserver import InstrumentedSMTP
from simmta.daemons.cleanup import Cleanup
from simmta.daemons.smtpd import Smtpd, SmtpdHandler


class QueueWritingHandler(SmtpdHandler):
    """smtpd's handler whose hand-off to cleanup is a call in this process."""

    def __init__(
        self, ctx: Context, proto_ref: list[InstrumentedSMTP], forbid_bare_lf: bool, writer: Cleanup
    ):
        super().__init__(ctx, proto_ref, forbid_bare_lf)
        self.writer = writer

    async def _to_cleanup(self, request: dict[str, Any], content: bytes) -> dict[str, Any]:
        sid = self.session_id()
        self.ctx.emit(IpcRequest(to="(this process)", what="write the queue file"), sid=sid)
        status, fields = self.writer.accept(
            request["sender"], request["recipients"], request["attrs"], content
        )
        self.ctx.emit(IpcResponse(to="(this process)", what="queue", outcome=status), fields.get("qid"), sid)
        if status == names.OK:
            await self.writer.wake_qmgr(fields["qid"], request["attrs"])
        return {"status": status, **fields}


class Sendmail(Smtpd):
    def pre_init(self) -> None:
        self.writer = Cleanup(self.ctx)
        self.writer.pre_init()

    def handler(self, ref: list[InstrumentedSMTP], forbid_bare_lf: bool) -> SmtpdHandler:
        return QueueWritingHandler(self.ctx, ref, forbid_bare_lf, self.writer)


DAEMON = Sendmail

if __name__ == "__main__":
    main(DAEMON)
