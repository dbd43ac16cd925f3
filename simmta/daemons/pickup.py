"""pickup: takes local submissions from maildrop/ and feeds them to cleanup.

NAME
    pickup - local mail pickup
DESCRIPTION
    ``simmta sendmail`` (running as the submitting user, with no set-uid or
    set-gid help) drops a complete file into ``maildrop/`` and sends a ``W``
    trigger; pickup also scans every ``wakeup`` seconds and at start, so mail
    dropped while the MTA was down is picked up later. Each file is hostile
    input: it is parsed with the queue-file reader, checked field by field, and
    the submitter is the file's owner as the kernel reports it, not whatever
    the file claims. Good files go to cleanup and are removed from maildrop/;
    damaged ones are removed with an event saying why.
SECURITY
    Unprivileged (mail_owner), chrooted into the queue directory. No delivery
    ever runs as a child of the submitting user's process.
"""

import asyncio
import os
import stat

from simmta.core import address, clients, ipc, names, userns
from simmta.core import queue as qf
from simmta.core.records import QueueRemoved
from simmta.core.skeleton import Daemon, main

MAILDROP_READY = stat.S_IROTH  # sendmail sets 0644 when the file is complete


class Pickup(Daemon):
    resident = True

    def pre_init(self) -> None:
        # Before the chroot hides /proc: rootless, a file's owner is a uid inside
        # the namespace (the student is uid 0 there); events name the host uid too.
        self.ns = userns.NsView.of(os.getpid())

    def post_init(self) -> None:
        self.wake = asyncio.Event()

    async def handle(self, conn: ipc.Conn) -> None:
        await conn.read_some(64)
        self.wake.set()

    async def background(self) -> None:
        self.wake.set()
        while True:
            try:
                async with asyncio.timeout(self.ctx.service.wakeup or 60):
                    await self.wake.wait()
            except TimeoutError:
                pass
            self.wake.clear()
            for entry in sorted(os.scandir(self.ctx.queue_path(names.MAILDROP)), key=lambda e: e.name):
                await self.pick_up(entry)

    async def pick_up(self, entry: os.DirEntry[str]) -> None:
        ctx = self.ctx
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            return
        if not stat.S_ISREG(st.st_mode) or not st.st_mode & MAILDROP_READY:
            return  # still being written (or not a plain file at all)
        path = ctx.queue_path(names.MAILDROP, entry.name)
        try:
            msg = qf.read(path)
            bad = [a for a in [r.address for r in msg.recipients] if address.syntax_error(a)]
            if msg.sender and address.syntax_error(msg.sender):
                bad.append(msg.sender)
            if bad:
                raise qf.CorruptQueueFile(f"bad address syntax: {bad[0][:80]!r}")
        except qf.CorruptQueueFile as e:
            self.discard(path, f"damaged maildrop file from {userns.describe_uid(self.ns, st.st_uid)}: {e}")
            return
        reply = await clients.cleanup_queue(
            ctx,
            msg.sender,
            [r.address for r in msg.recipients],
            {
                "origin": "pickup",
                "protocol": "local",
                "client": "local",
                "helo": f"uid {st.st_uid}",
                "submitter_uid": st.st_uid,
            },
            msg.content(),
            hop="queue a local submission",
        )
        if reply.get("status") == names.OK:
            who = userns.describe_uid(self.ns, st.st_uid)
            self.discard(path, f"picked up as {reply.get('qid')} (submitted by {who})")
        elif reply.get("status") == names.FAIL:
            self.discard(path, f"refused by cleanup: {reply.get('code')} {reply.get('text')}")

    def discard(self, path: os.PathLike[str], reason: str) -> None:
        try:
            os.unlink(path)
        except OSError:
            return
        self.ctx.emit(QueueRemoved(queue=names.MAILDROP, reason=reason))


DAEMON = Pickup

if __name__ == "__main__":
    main(DAEMON)
