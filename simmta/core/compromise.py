"""The compromise lab: a fixed attacker script a daemon runs as if its code were taken over.

``simmta lab compromise SERVICE`` (only with ``simmta run --lab``, only over the
loopback control socket) makes one process of SERVICE run ``run_script``: the
attempts an intruder in that process would make first, each reported with the
kernel's answer (the errno name, or "ok"), never a declared one.

Harmless by construction, whatever the privilege:
- every path is fixed here, below the instance (``lab/``, the lab letter in
  alice's mail directory, ``tmp/`` of bob's Maildir, the queue), none comes from a request;
- the Maildir write creates a new file with O_EXCL|O_NOFOLLOW and removes it;
- "alter a queued message" appends to the lab's own canary in ``hold/``, never
  to a real message (once 250 is sent a message is never lost);
- the signal is signal 0 through a pidfd, to pids of this instance master named;
- the port is bound on 127.0.0.1, closed at once, never listened on;
- "start a program" forks and execve()s /bin/true with an empty environment;
- the walk of /proc/self/fd only looks (fstat), it escapes nothing.

``predict`` gives the answers a kernel would give for a profile's process when
nothing is enforced (simulated mode); they are shown as "predicted, not enforced".

Trust: runs inside a daemon (untrusted by design here); master checks the shape of
what it reports, and the paths it may touch are computed from the instance alone.
"""

import contextlib
import errno
import os
import signal
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ATTEMPTS = (
    "read-secret",
    "read-mail",
    "write-maildir",
    "read-queue",
    "alter-canary",
    "signal-daemon",
    "bind-low-port",
    "setuid-0",
    "write-outside",
    "exec-true",
    "proc-fd",
)
TITLES = {
    "read-secret": "read the root-only secret master placed in lab/",
    "read-mail": "read another user's delivered mail (alice's)",
    "write-maildir": "write a file into a user's Maildir (bob's tmp/)",
    "read-queue": "read every queued message",
    "alter-canary": "alter a queued message (the lab's canary in hold/)",
    "signal-daemon": "send signal 0 to another daemon of this instance (pidfd)",
    "bind-low-port": "bind a privileged port on 127.0.0.1 (closed at once)",
    "setuid-0": "regain root: setuid(0)",
    "write-outside": "write outside the jail (lab/outside)",
    "exec-true": "start a program: fork, execve /bin/true, empty environment",
    "proc-fd": "find a descriptor from before the chroot (walk /proc/self/fd)",
}
LOW_PORT = 1023
# alice's mail as the lab stands it in: a letter in her mail directory (0700, hers), beside
# her Maildir and not in it, so no mail reader, count or lesson takes it for real mail.
LETTER = "lab-letter"


@dataclass(frozen=True)
class Targets:
    """Where the script aims, all below the instance; ``queue`` as this process sees it."""

    instance: Path
    queue: Path
    canary: str  # queue ID of the lab's canary in hold/
    daemon_pid: int  # another daemon of this instance (qmgr)
    daemon: str

    @property
    def lab(self) -> Path:
        return self.instance / "lab"

    def paths(self) -> dict[str, Path]:
        return {
            "read-secret": self.lab / "secret",
            "read-mail": self.instance / "mail" / "alice" / LETTER,
            "write-maildir": self.instance / "mail" / "bob" / "Maildir" / "tmp",
            "read-queue": self.queue,
            "alter-canary": self.queue / "hold" / self.canary,
            "write-outside": self.lab / "outside",
        }


def _errno(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, "error")


def _read(path: Path) -> str:
    with open(path, "rb") as f:
        return f"read {len(f.read(4096))} bytes"


def _create(directory: Path) -> str:
    path = directory / f"lab-intrusion.{os.getpid()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, b"written by the lab's intruder\n")
    finally:
        os.close(fd)
        os.unlink(path)
    return f"created (and removed) {path.name}"


def _read_queue(queue: Path) -> str:
    read = 0
    for q in ("incoming", "active", "deferred", "hold"):
        for entry in os.scandir(queue / q):
            with open(entry.path, "rb") as f:
                f.read(4096)
            read += 1
    return f"read {read} queued message(s)"


def _alter(path: Path) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
    try:
        os.write(fd, b"X")
    finally:
        os.close(fd)
    return "appended a byte to the canary"


def _signal(pid: int) -> str:
    if pid <= 0:
        raise OSError(errno.ESRCH, "no such daemon")
    fd = os.pidfd_open(pid)
    try:
        signal.pidfd_send_signal(fd, 0)
    finally:
        os.close(fd)
    return f"signal 0 delivered to pid {pid}"


def _bind() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", LOW_PORT))
    return f"bound 127.0.0.1:{LOW_PORT} (closed at once)"


def _setuid() -> str:
    os.setuid(0)
    return "uid is now 0"


def _exec() -> str:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: nothing but execve
        os.close(r)
        try:
            os.execve("/bin/true", ["true"], {})
        except OSError as e:
            os.write(w, str(e.errno).encode())
        os._exit(127)
    os.close(w)
    failed = os.read(r, 16)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if failed:
        raise OSError(int(failed), os.strerror(int(failed)))
    return f"/bin/true ran as uid {os.geteuid()} (exit {os.waitstatus_to_exitcode(status)})"


def _proc_fd() -> str:
    names = os.listdir("/proc/self/fd")
    dirs = []
    for n in names:
        with contextlib.suppress(OSError, ValueError):
            if stat.S_ISDIR(os.fstat(int(n)).st_mode):
                dirs.append(n)
    return f"{len(names)} descriptors, directories: {', '.join(dirs) or 'none'}"


def run_script(t: Targets) -> list[dict[str, str]]:
    """Every attempt in order: {"attempt", "target", "outcome" ("ok" or an errno name), "detail"}."""
    p = t.paths()
    steps: dict[str, tuple[str, Callable[[], str]]] = {
        "read-secret": (str(p["read-secret"]), lambda: _read(p["read-secret"])),
        "read-mail": (str(p["read-mail"]), lambda: _read(p["read-mail"])),
        "write-maildir": (str(p["write-maildir"]), lambda: _create(p["write-maildir"])),
        "read-queue": (str(p["read-queue"]), lambda: _read_queue(p["read-queue"])),
        "alter-canary": (str(p["alter-canary"]), lambda: _alter(p["alter-canary"])),
        "signal-daemon": (f"{t.daemon}[{t.daemon_pid}]", lambda: _signal(t.daemon_pid)),
        "bind-low-port": (f"127.0.0.1:{LOW_PORT}", _bind),
        "setuid-0": ("uid 0", _setuid),
        "write-outside": (str(p["write-outside"]), lambda: _create(p["write-outside"])),
        "exec-true": ("/bin/true", _exec),
        "proc-fd": ("/proc/self/fd", _proc_fd),
    }
    out = []
    for name in ATTEMPTS:
        target, attempt = steps[name]
        try:
            outcome, detail = "ok", attempt()
        except OSError as e:
            outcome, detail = _errno(e), e.strerror or ""
        out.append({"attempt": name, "target": target, "outcome": outcome, "detail": detail})
    return out


def predict(
    svc: Any, profile: Any, ids: dict[str, tuple[int, int]], daemon_account: str, unprivileged_port_start: int
) -> dict[str, str]:
    """What the kernel would answer for ``svc``'s process if the profile were enforced."""
    uid, gid = ids[svc.account]
    euid = ids[svc.setuid][0] if svc.setuid else uid
    root = euid == 0
    jail = svc.chroot
    queue_uid = ids[profile.queue_owner][0]
    queue_gid = (
        profile.gid_of(profile.queue_group, ids["mail_owner"][1]) if profile.group_shared_queue else queue_uid
    )
    queue_ok = root or euid == queue_uid or gid == queue_gid

    walled = "ok" if root else ("ENOENT" if jail else "EACCES")  # root-only, or outside the jail

    target_uid = ids[daemon_account][0]
    return {
        "read-secret": walled,
        "read-mail": walled,
        "write-maildir": walled,
        "read-queue": "ok" if queue_ok else "EACCES",
        "alter-canary": "ok" if queue_ok else "EACCES",
        "signal-daemon": "ok" if root or target_uid in (uid, euid) else "EPERM",
        "bind-low-port": "ok" if root or unprivileged_port_start <= LOW_PORT else "EACCES",
        "setuid-0": "ok" if root else "EPERM",
        "write-outside": walled,
        "exec-true": "ENOENT" if jail else "ok",
        "proc-fd": "ENOENT" if jail else "ok",
    }


def unprivileged_port_start() -> int:
    """net.ipv4.ip_unprivileged_port_start (containers often lower it; 1024 if unreadable)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024
