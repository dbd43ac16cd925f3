"""local: delivers to a local user's Maildir, writing as that user.

NAME
    local - local delivery agent
DESCRIPTION
    qmgr sends a delivery request (queue, QID, recipients with their record
    offsets); local opens the queue file itself, resolves each recipient to a
    local user through alias_maps and local_users (a local part is looked up,
    never turned into a path: "../x", "a/b" or control characters simply name
    no user), and delivers into ``mail/<user>/Maildir``: tmp/, fsync, link
    into new/, fsync new/. Unknown users are a permanent failure (5.1.1), so
    qmgr has bounce send the sender a DSN. It answers per recipient.
SECURITY
    Keeps root, like Postfix's local, because it must act as each recipient:
    the write happens with the recipient's uid and gid (seteuid/setegid, each
    switch a privilege/step event), then it switches back (in rootless mode too,
    with the recipient's uid mapped onto the subordinate range). The real and
    saved uid stay 0 throughout, so code running as the recipient could switch
    back too (the lab's regain-root in local shows it). In partial and simulated
    mode the write happens as the invoking user.
"""

import os
from pathlib import Path
from typing import Any

from simmta.core import address, maildir, names, privilege
from simmta.core import queue as qf
from simmta.core.delivery import DeliveryAgent, RecipientStatus
from simmta.core.skeleton import main


class Local(DeliveryAgent):
    via = names.LOCAL

    def pre_init(self) -> None:
        if privilege.uids_enforced(self.ctx.mode):
            os.setgroups([])  # root, but with no supplementary groups
        # A lab attempt happens where a hole would be exploited: while acting as a
        # recipient (the first local user, alice by default), only the effective uid switched.
        uid = next(iter(self.ctx.config.local_users.values()))
        self.ctx.lab_identity = lambda: privilege.acting_as(uid, uid, self.ctx.mode)

    async def deliver(
        self, msg: qf.QueueFile, rcpts: list[dict[str, Any]], req: dict[str, Any]
    ) -> list[RecipientStatus]:
        cfg = self.ctx.config
        content = msg.content()
        out = []
        for r in rcpts:
            addr = r["address"]
            user = address.local_user(addr.rpartition("@")[0], cfg)
            if user is None:
                out.append(RecipientStatus(addr, names.FAIL, "5.1.1", f"<{addr}>: unknown user", ""))
                continue
            prefix = (f"Return-Path: <{msg.sender}>\nDelivered-To: {addr}\n").encode("utf-8", "replace")
            try:
                path = self._write(user, [prefix, content], msg.qid)
            except OSError as e:
                out.append(
                    RecipientStatus(addr, names.DEFER, "4.2.0", f"cannot write mailbox: {e.strerror}", "")
                )
                continue
            out.append(
                RecipientStatus(
                    addr, names.OK, "2.0.0", "delivered to maildir", f"{user}/Maildir/new/{path.name}"
                )
            )
        return out

    def _write(self, user: str, parts: list[bytes], qid: str) -> Path:
        # Synchronous on purpose: seteuid applies to the whole process.
        uid = self.ctx.config.local_users[user]
        with privilege.acting_as(uid, uid, self.ctx.mode, emit=self.ctx.emit):
            return maildir.deliver(
                self.ctx.instance.maildir(user),
                parts,
                before_link=lambda: self.ctx.crash_point("before-link", qid),
                qid=qid,
            )


DAEMON = Local

if __name__ == "__main__":
    main(DAEMON)
