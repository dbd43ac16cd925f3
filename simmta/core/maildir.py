"""Maildir delivery: write in tmp/, fsync, link into new/ and unlink from tmp/, fsync new/.

Used by local (as the recipient) and by the peer. A message is visible in
new/ only once it is complete and durable, so a crash leaves at most a stray
file in tmp/, never a half message in new/.

Trust: the caller chooses the Maildir path; nothing here builds a path from
message or address text.
"""

import contextlib
import itertools
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from simmta.core.queue import fsync_dir

_counter = itertools.count()
_HOST = socket.gethostname().replace("/", "_").replace(":", "_")


def unique_name() -> str:
    now = time.time()
    return f"{int(now)}.M{int(now * 1e6) % 1000000}P{os.getpid()}Q{next(_counter)}.{_HOST}"


def create(path: Path, mode: int = 0o700) -> None:
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, exist_ok=True, mode=mode)


def deliver(maildir: Path, parts: list[bytes], before_link: Callable[[], None] | None = None) -> Path:
    """Write ``parts`` as one new message; return its path in new/."""
    name = unique_name()
    tmp = maildir / "tmp" / name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        total = sum(len(p) for p in parts)
        n = os.writev(fd, parts)
        if n < total:
            rest = memoryview(b"".join(parts))[n:]
            while rest:
                rest = rest[os.write(fd, rest) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    if before_link is not None:
        before_link()
    final = maildir / "new" / name
    try:  # link and unlink, as qmail's and Postfix's Maildir code do: rename()
        os.link(tmp, final)  # across directories takes a lock the whole filesystem shares
    finally:
        os.unlink(tmp)  # linked or not, nothing stays behind in tmp/
    fsync_dir(maildir / "new")
    return final


def count(maildir: Path) -> int:
    """Messages in new/ and cur/."""
    n = 0
    for sub in ("new", "cur"):
        with contextlib.suppress(FileNotFoundError):
            n += sum(1 for _ in os.scandir(maildir / sub))
    return n
