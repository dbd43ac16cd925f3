"""The durable file operations mail depends on, counted: fsync, rename and link.

Queue files (``simmta.core.queue``) and Maildir deliveries
(``simmta.core.maildir``) make a message durable only through these
functions, so what a message costs the disk need not be stated: with
``disk_events = true`` in main.toml each call that returned becomes an event
(``disk/fsync``, ``disk/rename``, ``disk/link``) naming the message and the
path, and lesson 9 counts them live. The daemon skeleton sets ``report``;
without it (the default, tools outside master) the calls are plain os calls.
Counting in the caller instead of tracing the kernel (``simmta bench
--syscalls`` does that, with strace) needs no tool on the machine, and it is
complete because no other code of simmta's daemons calls fsync, rename or
link.

Trust: simmta's own code; paths come from the caller, never from events.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from simmta.core.records import DiskFsync, DiskLink, DiskRename, Record

# Set by the daemon skeleton when disk_events is on: emits one record for the message.
report: Callable[[Record, str | None], object] | None = None


def _short(path: Path | str) -> str:
    """The last two parts of a path (``incoming/ABC``, ``new/1701...``): enough to tell
    which file or directory, whatever the process's root."""
    return "/".join([part for part in Path(path).parts if part != "/"][-2:])


def fsync(fd: int, path: Path | str, qid: str | None = None) -> None:
    """fsync(2) a file open for writing."""
    os.fsync(fd)
    if report is not None:
        report(DiskFsync(path=_short(path), directory=False), qid)


def fsync_dir(path: Path, qid: str | None = None) -> None:
    """fsync(2) a directory, so that a rename, link or create in it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if report is not None:
        report(DiskFsync(path=_short(path), directory=True), qid)


def rename(src: Path, dst: Path, qid: str | None = None) -> None:
    os.rename(src, dst)
    if report is not None:
        report(DiskRename(src=_short(src), dst=_short(dst)), qid)


def link(src: Path, dst: Path, qid: str | None = None) -> None:
    os.link(src, dst)
    if report is not None:
        report(DiskLink(src=_short(src), dst=_short(dst)), qid)
