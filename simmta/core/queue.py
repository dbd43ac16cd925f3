"""Queue files: the on-disk record format, queue IDs, and moves between queues.

A queue file is a sequence of typed records (as in Postfix): one type byte, a
4-byte big-endian length, the payload.

    V  format version ("simmta-queue 1")
    T  arrival time (Unix seconds, text)
    A  attributes (JSON: client, helo, sid, origin, submitter ...)
    S  sender ("" is the null sender <>)
    R  recipient still to deliver      D  recipient done (flipped in place)
    M  message content (headers and body, LF line ends)
    E  end: the file is complete. A file without it is never delivered.

cleanup creates the file with mode 0600 and sets 0700 once it is complete and
fsynced; qmgr only takes files with the owner-execute bit (Postfix's rule).
Queue IDs are Postfix's short IDs: 5 hex digits of microseconds, then the
inode number in hex; unique among queued messages because inode numbers are.
Deferred messages carry their next retry time as the file's mtime.

Trust: every reader treats a queue file as untrusted input; damage raises
``CorruptQueueFile`` and the file goes to ``corrupt/``.
"""

import contextlib
import json
import mmap
import os
import stat
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simmta.core import address, disk, names

VERSION = b"simmta-queue 1"
_HDR = struct.Struct("!cI")
MODE_WRITING = 0o600
MODE_COMPLETE = 0o700
GROUP_ACCESS = 0o070  # added where several uids share the queue through its group (qmail)
SMALL_FILE = 256 * 1024  # read whole; larger queue files are mapped
MAX_ADDRESS = 512


class CorruptQueueFile(Exception):
    """A queue file that cannot be parsed; it belongs in corrupt/."""


def make_qid(inode: int, usec: int) -> str:
    return f"{usec % 1000000:05X}{inode:X}"


def is_qid(name: str) -> bool:
    return 6 <= len(name) <= 24 and all(c in "0123456789ABCDEF" for c in name)


def record(kind: bytes, payload: bytes) -> bytes:
    return _HDR.pack(kind, len(payload)) + payload


def record_parts(kind: bytes, *parts: bytes) -> list[bytes]:
    """A record whose payload is several buffers, for writev without copying."""
    return [_HDR.pack(kind, sum(len(p) for p in parts)), *parts]


class QueueWriter:
    """Creates one queue file in a directory; ``qid`` is known before content."""

    def __init__(self, directory: Path, group_access: bool = False):
        self.directory = directory
        self.group = GROUP_ACCESS & ~0o010 if group_access else 0  # rw while writing, rwx when done
        tmp = directory / f"tmp.{os.getpid()}.{time.monotonic_ns()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODE_WRITING)
        if self.group:
            os.fchmod(fd, MODE_WRITING | self.group)
        st = os.fstat(fd)
        self.qid = make_qid(st.st_ino, int(time.time() * 1e6))
        self.path = directory / self.qid
        disk.rename(tmp, self.path, self.qid)
        self.fd = fd
        self.size = 0

    def write(self, *buffers: bytes) -> None:
        """Write buffers with one writev (no joining copy of the message)."""
        total = sum(len(b) for b in buffers)
        n = os.writev(self.fd, buffers)
        if n < total:  # short write (rare on a regular file): finish by hand
            rest = memoryview(b"".join(buffers))[n:]
            while rest:
                rest = rest[os.write(self.fd, rest) :]
        self.size += total

    def commit(self) -> None:
        """End record, mark complete, fsync file and directory: now it is queued."""
        self.write(record(names.REC_END, b""))
        os.fchmod(self.fd, MODE_COMPLETE | (GROUP_ACCESS if self.group else 0))
        disk.fsync(self.fd, self.path, self.qid)
        os.close(self.fd)
        self.fd = -1
        disk.fsync_dir(self.directory, self.qid)

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def envelope_records(
    arrival: float, attrs: dict[str, Any], sender: str, recipients: list[str]
) -> list[bytes]:
    out = [
        record(names.REC_VERSION, VERSION),
        record(names.REC_TIME, repr(arrival).encode()),
        record(names.REC_ATTR, json.dumps(attrs, separators=(",", ":")).encode()),
        record(names.REC_SENDER, sender.encode()),
    ]
    out += [record(names.REC_RCPT, r.encode()) for r in recipients]
    return out


@dataclass
class Recipient:
    address: str
    offset: int  # of the record's type byte, for marking it done in place
    done: bool


@dataclass
class QueueFile:
    qid: str
    path: Path
    arrival: float
    attrs: dict[str, Any]
    sender: str
    recipients: list[Recipient]
    content_offset: int
    content_length: int
    size: int
    mtime: float
    records: list[tuple[str, int, int]] = field(default_factory=list)  # (type, offset, length)
    data: bytes | None = field(default=None, repr=False)  # the whole file, if it was small

    @property
    def sid(self) -> str | None:
        """The SMTP session that brought the message in (to join its events), if any."""
        sid = self.attrs.get("sid")
        return sid if isinstance(sid, str) else None

    @property
    def pending(self) -> list[Recipient]:
        return [r for r in self.recipients if not r.done]

    def content(self) -> bytes:
        if self.data is not None:
            return self.data[self.content_offset : self.content_offset + self.content_length]
        with open(self.path, "rb") as f:
            f.seek(self.content_offset)
            return f.read(self.content_length)

    def summary(self) -> dict[str, Any]:
        return {
            "qid": self.qid,
            "size": self.content_length,
            "sender": self.sender,
            "recipients": [r.address for r in self.pending],
            "arrival": self.arrival,
            "next_retry": self.mtime,
        }


def read(path: Path, require_complete: bool = True) -> QueueFile:
    """Parse a queue file; CorruptQueueFile on any damage.

    A small file is read whole and kept (its content is then at hand without
    opening it again); a large one is mapped, and its content read on demand.
    """
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_size == 0:
                raise CorruptQueueFile("empty file")
            if st.st_size <= SMALL_FILE:
                small = f.read()
                parsed = _parse(path, small, st, require_complete)
                parsed.data = small
                return parsed
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as e:
        raise CorruptQueueFile(f"cannot read: {e.strerror}") from None
    try:
        return _parse(path, data, st, require_complete)
    finally:
        data.close()


def _parse(path: Path, data: bytes | mmap.mmap, st: os.stat_result, require_complete: bool) -> QueueFile:
    pos, end = 0, len(data)
    arrival: float | None = None
    attrs: dict[str, Any] = {}
    sender: str | None = None
    recipients: list[Recipient] = []
    content = (0, 0)
    records: list[tuple[str, int, int]] = []
    complete = False
    while pos < end:
        if pos + _HDR.size > end:
            raise CorruptQueueFile(f"truncated record header at offset {pos}")
        kind, length = _HDR.unpack_from(data, pos)
        start = pos + _HDR.size
        if start + length > end:
            raise CorruptQueueFile(f"truncated {kind!r} record at offset {pos}")
        payload = data[start : start + length] if kind != names.REC_CONTENT else b""
        records.append((kind.decode("latin-1"), pos, length))
        try:
            if kind == names.REC_VERSION:
                if payload != VERSION:
                    raise CorruptQueueFile("unknown format version")
            elif kind == names.REC_TIME:
                arrival = float(payload.decode("ascii"))
            elif kind == names.REC_ATTR:
                attrs = json.loads(payload)
                if not isinstance(attrs, dict):
                    raise CorruptQueueFile("attributes are not an object")
            elif kind == names.REC_SENDER:
                sender = _address(payload)
            elif kind in (names.REC_RCPT, names.REC_DONE):
                recipients.append(Recipient(_address(payload), pos, kind == names.REC_DONE))
            elif kind == names.REC_CONTENT:
                content = (start, length)
            elif kind == names.REC_END:
                complete = True
                pos = start
                break
            else:
                raise CorruptQueueFile(f"unknown record type {kind!r} at offset {pos}")
        except (ValueError, UnicodeDecodeError) as e:
            raise CorruptQueueFile(f"bad {kind!r} record at offset {pos}: {e}") from None
        pos = start + length
    if require_complete and not complete:
        raise CorruptQueueFile("no end record (incomplete file)")
    if complete and pos != end:
        raise CorruptQueueFile("data after the end record")
    if arrival is None or sender is None or not recipients or (content == (0, 0) and complete):
        raise CorruptQueueFile("missing arrival time, sender, recipients or content")
    return QueueFile(
        path.name,
        path,
        arrival,
        attrs,
        sender,
        recipients,
        content[0],
        content[1],
        st.st_size,
        st.st_mtime,
        records,
    )


def _address(payload: bytes) -> str:
    text = payload.decode("utf-8")
    if len(text) > MAX_ADDRESS or address.CONTROL.search(text):
        raise ValueError("bad address")
    return text


def mark_done(path: Path, offset: int) -> None:
    """Flip a recipient record from R to D in place (as Postfix's qmgr does)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, names.REC_DONE, offset)
    finally:
        os.close(fd)


def mark_done_anywhere(queue_root: Path, qid: str, offset: int) -> bool:
    """mark_done wherever the file is now (a restarted qmgr may have moved it out of
    active/); False if it is nowhere or the record there is not a recipient."""
    for q in (names.ACTIVE, names.INCOMING, names.DEFERRED, names.HOLD):
        path = queue_root / q / qid
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            if os.pread(fd, 1, offset) not in (b"R", b"D"):
                return False
            os.pwrite(fd, b"D", offset)
            return True
        finally:
            os.close(fd)
    return False


def is_complete_mode(st: os.stat_result) -> bool:
    return bool(st.st_mode & stat.S_IXUSR)


def move(queue_root: Path, qid: str, src: str, dst: str) -> Path:
    target = queue_root / dst / qid
    disk.rename(queue_root / src / qid, target, qid)
    return target


def find(queue_root: Path, qid: str, queues: tuple[str, ...]) -> tuple[str, Path] | None:
    for q in queues:
        p = queue_root / q / qid
        if p.exists():
            return q, p
    return None


def append_status(queue_root: Path, log: str, qid: str, entries: list[dict[str, Any]]) -> None:
    """Per-message status log (defer/ or bounce/): JSON lines, one per recipient."""
    with open(queue_root / log / qid, "a", encoding="utf-8") as f:
        for e in entries:
            f.write(json.dumps(e, separators=(",", ":")) + "\n")


def read_status(queue_root: Path, log: str, qid: str) -> list[dict[str, Any]]:
    try:
        with open(queue_root / log / qid, encoding="utf-8") as f:
            out = []
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if isinstance(e, dict):
                    out.append(e)
            return out
    except OSError:
        return []
