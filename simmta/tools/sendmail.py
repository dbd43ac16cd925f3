"""``simmta sendmail``: local submission as the invoking user, no set-uid, no set-gid.

The message (read from standard input, to end of file) is written into the
queue's ``maildrop/`` directory as a queue-format file: created 0600 while
being written, fsynced, then made 0644 ("complete") and pickup is triggered.
maildrop/ is a sticky, world-writable, unlistable directory (mode 1733, the
early Postfix design): any local user can drop mail, nobody can list or read
another's drop, and no program needs extra privilege. The trade-off, and the
reason Postfix later moved to a set-gid ``postdrop``: a world-writable
directory lets any local user fill the queue file system, so pickup treats
every file as hostile and trusts only the file's owner as the kernel reports
it. No delivery runs as a child of this process: pickup, started by master,
does the rest. Works while the MTA is down (pickup catches up at start).

Trust: runs as an ordinary user; it can only write into maildrop/.
"""

import argparse
import os
import pwd
import socket
import sys
import time
from typing import Any

from simmta.core import address, disk, names
from simmta.core import queue as qf
from simmta.core.errors import SimmtaError
from simmta.core.instance import Instance


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "sendmail",
        parents=[parent],
        help="submit a message from standard input as the invoking user (via maildrop)",
    )
    p.add_argument("-f", dest="sender", help="envelope sender (default: you@mydomain)")
    p.add_argument(
        "-i",
        "-oi",
        dest="ignore_dots",
        action="store_true",
        help="accepted for compatibility (input always ends at end of file)",
    )
    p.add_argument("recipients", nargs="+")
    p.set_defaults(func=cmd_sendmail)


def submit(inst: Instance, sender: str, recipients: list[str], content: bytes) -> str:
    """Drop one message into maildrop/ and wake pickup; returns the maildrop file name."""
    for a in [*recipients, *([sender] if sender else [])]:
        if why := address.syntax_error(a):
            raise SimmtaError(f"bad address {a!r}: {why}")
    drop = inst.queue / names.MAILDROP
    name = f"{os.getpid():X}{time.monotonic_ns():X}"
    path = drop / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileNotFoundError:
        raise SimmtaError(
            f"no maildrop directory at {drop}: has 'simmta run' ever set up this instance?"
        ) from None
    except PermissionError:
        raise SimmtaError(f"cannot write into {drop}") from None
    try:
        content = content.replace(b"\r\n", b"\n")
        data = b"".join(
            [
                *qf.envelope_records(time.time(), {"origin": "sendmail"}, sender, recipients),
                qf.record(names.REC_CONTENT, content),
                qf.record(names.REC_END, b""),
            ]
        )
        os.write(fd, data)
        disk.fsync(fd, path)
        os.fchmod(fd, 0o644)  # complete: pickup may take it now
    except OSError as e:
        os.close(fd)
        os.unlink(path)
        raise SimmtaError(f"cannot write the message: {e.strerror}") from None
    os.close(fd)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(inst.queue / names.PUBLIC / names.PICKUP))
            s.sendall(names.TRIGGER_WAKEUP)
    except OSError:
        pass  # MTA down: pickup finds the file when it starts
    return name


def login_name() -> str:
    """The invoking user's login name, as Postfix's sendmail takes it (getpwuid, not $USER,
    which root's shells often lack), or the uid when the password database has no entry."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("LOGNAME") or os.environ.get("USER") or str(os.getuid())


def cmd_sendmail(args: argparse.Namespace) -> int:
    inst = Instance(args.instance)
    cfg = inst.config()
    user = login_name()
    sender = args.sender if args.sender is not None else f"{user}@{cfg.mydomain}"
    content = sys.stdin.buffer.read(cfg.message_size_limit + 1)
    if len(content) > cfg.message_size_limit:
        raise SimmtaError(f"message too big (message_size_limit is {cfg.message_size_limit} bytes)")
    submit(inst, sender, args.recipients, content)
    return 0
