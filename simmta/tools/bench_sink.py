"""A baseline SMTP server for ``simmta bench``: aiosmtpd straight into a Maildir.

    python -m simmta.tools.bench_sink --maildir DIR [--port 0] [--no-fsync]

One process, no queue, no queue manager, no delivery agent: each message is
written to DIR/tmp, fsync'ed (unless --no-fsync), and renamed into DIR/new
before the 250. It answers "how fast is Python + aiosmtpd alone on this
machine", the floor under any Python MTA, and it is the stand-in target the
bench tests run against. It prints its port on the first line of stdout once
it listens, and stops on SIGTERM or SIGINT.

Trust: a test fixture; listens on loopback only, accepts any sender and
recipient, and writes nothing outside DIR.
"""

import argparse
import asyncio
import os
import signal
import socket
import sys
from itertools import count
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

LOOPBACK = "127.0.0.1"


class MaildirHandler:
    """aiosmtpd handler: DATA goes to the Maildir, durably when asked."""

    def __init__(self, maildir: Path, fsync: bool):
        self.maildir = maildir
        self.fsync = fsync
        self.serial = count()
        self.host = socket.gethostname().replace("/", "_").replace(":", "_")
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        stamp = int(asyncio.get_running_loop().time() * 1e6)
        name = f"{stamp}.P{os.getpid()}Q{next(self.serial)}.{self.host}"
        tmp = self.maildir / "tmp" / name
        content = envelope.original_content or b""
        with open(tmp, "wb") as f:
            f.write(content)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.rename(tmp, self.maildir / "new" / name)
        return "250 2.0.0 Ok: delivered"


async def serve(maildir: Path, port: int, fsync: bool) -> None:
    loop = asyncio.get_running_loop()
    handler = MaildirHandler(maildir, fsync)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.simmta.test", ident="simmta bench_sink"),
        LOOPBACK,
        port,
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m simmta.tools.bench_sink",
        description="aiosmtpd straight into a Maildir (a baseline)",
    )
    p.add_argument("--maildir", type=Path, required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--no-fsync", dest="fsync", action="store_false")
    args: Any = p.parse_args(argv)
    asyncio.run(serve(args.maildir, args.port, args.fsync))
    return 0


if __name__ == "__main__":
    sys.exit(main())
