"""Maildir delivery: write in tmp/, fsync, link into new/ and unlink from tmp/, fsync new/.

Used by local (as the recipient) and by the peer. A message is visible in
new/ only once it is complete and durable, so a crash leaves at most a stray
file in tmp/, never a half message in new/. ``letters`` and ``read`` are the
reader's side (master counts, the TUI's Mailboxes view): bounded reads of
what new/ and cur/ hold, the queue ID taken from simmta's own Received: line.

Trust: the caller chooses the Maildir path; nothing here builds a path from
message or address text. What a letter says is the sender's text, returned
raw (bytes decoded with backslash escapes) and bounded: rendering it inert is
the viewer's job.
"""

import contextlib
import errno
import itertools
import os
import re
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simmta.core import disk

_counter = itertools.count()
_HOST = socket.gethostname().replace("/", "_").replace(":", "_")


def unique_name() -> str:
    now = time.time()
    return f"{int(now)}.M{int(now * 1e6) % 1000000}P{os.getpid()}Q{next(_counter)}.{_HOST}"


def create(path: Path, mode: int = 0o700) -> None:
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, exist_ok=True, mode=mode)


def deliver(
    maildir: Path,
    parts: list[bytes],
    before_link: Callable[[], None] | None = None,
    qid: str | None = None,
) -> Path:
    """Write ``parts`` as one new message (of queue file ``qid``); return its path in new/."""
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
        disk.fsync(fd, tmp, qid)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    if before_link is not None:
        before_link()
    final = maildir / "new" / name
    try:  # link and unlink, as qmail's and Postfix's Maildir code do: rename()
        disk.link(tmp, final, qid)  # across directories takes a lock the whole filesystem shares
    finally:
        os.unlink(tmp)  # linked or not, nothing stays behind in tmp/
    disk.fsync_dir(maildir / "new", qid)
    return final


def count(maildir: Path) -> int:
    """Messages in new/ and cur/."""
    n = 0
    for sub in ("new", "cur"):
        with contextlib.suppress(FileNotFoundError):
            n += sum(1 for _ in os.scandir(maildir / sub))
    return n


MAX_READ = 64 * 1024  # bytes of one letter read at most
HEAD_READ = 8 * 1024  # bytes read to list a letter (its headers)
MAX_LETTERS = 500  # letters listed per Maildir at most (the newest)
# cleanup's trace line: "Received: from H (C)\n\tby HOST (simmta) with PROTO id QID"
_QID = re.compile(rb"\(simmta\) with \S+ id ([0-9A-Za-z]{1,32})")


@dataclass(frozen=True)
class Letter:
    """One delivered message as its Maildir lists it."""

    path: Path
    mtime: float
    size: int
    headers: tuple[tuple[str, str], ...]  # (name, value), unfolded, in order (from HEAD_READ bytes)
    qid: str  # from simmta's Received: line ("" if it has none)

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k.lower() == name.lower()), "")


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def split_headers(raw: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """(headers, body) of a message's bytes; continuation lines are joined to their header."""
    head, sep, body = raw.partition(b"\n\n")
    if not sep:  # no blank line read: all of it is header (or cut)
        head, body = raw, b""
    headers: list[tuple[str, str]] = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + " " + _decode(line.strip()))
        elif b":" in line:
            key, _, rest = line.partition(b":")
            headers.append((_decode(key), _decode(rest.strip())))
    return headers, body


def read(path: Path, limit: int = MAX_READ) -> tuple[bytes, int]:
    """The first ``limit`` bytes of a letter and its whole size: a regular file, never
    through a symlink, a FIFO or a device (master reads them for viewers, see ``op_letter``)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return f.read(limit), st.st_size


WIRE_HEADERS = ("from", "to", "subject", "date")  # what a listing sent over control carries


def to_wire(letter: Letter) -> dict[str, Any]:
    """A letter as master's ``mail`` control operation lists it (JSON)."""
    headers = [[k, v] for k, v in letter.headers if k.lower() in WIRE_HEADERS]
    return {
        "path": str(letter.path),
        "mtime": letter.mtime,
        "size": letter.size,
        "headers": headers,
        "qid": letter.qid,
    }


def from_wire(d: dict[str, Any]) -> Letter:
    """A listed letter back from its JSON (values from master: typed again here)."""
    headers = tuple((str(k), str(v)) for k, v in d["headers"])
    return Letter(Path(str(d["path"])), float(d["mtime"]), int(d["size"]), headers, str(d["qid"]))


def letters(maildir: Path, limit: int = MAX_LETTERS, known: dict[str, Letter] | None = None) -> list[Letter]:
    """The letters in new/ and cur/, oldest first (the newest ``limit``); those in ``known``
    (by path: a Maildir file never changes under its name) are not read again. Raises OSError
    (e.g. PermissionError: a Maildir is its user's, mode 0700) if the Maildir cannot be read."""
    entries: list[tuple[float, str]] = []
    for sub in ("new", "cur"):
        try:
            with os.scandir(maildir / sub) as it:
                for e in it:
                    with contextlib.suppress(FileNotFoundError):  # read (moved to cur/) or deleted
                        if e.is_file(follow_symlinks=False):
                            entries.append((e.stat().st_mtime, e.path))
        except FileNotFoundError:
            continue
    entries.sort()
    out = []
    for mtime, path in entries[-limit:]:
        letter = (known or {}).get(path)
        if letter is None:
            try:
                raw, size = read(Path(path), HEAD_READ)
            except FileNotFoundError:
                continue
            headers, _ = split_headers(raw)
            found = _QID.search(raw)
            letter = Letter(Path(path), mtime, size, tuple(headers), found.group(1).decode() if found else "")
        out.append(letter)
    return out
