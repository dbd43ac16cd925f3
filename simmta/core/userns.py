"""Rootless privilege: a user namespace holding the student's subordinate uid range.

An ordinary user cannot switch uid or chroot. Inside a user namespace that
maps uid 0 to the user and uids 1..N onto the user's subordinate range
(``/etc/subuid``, ``/etc/subgid``), the kernel lets master be root *there*:
each daemon then switches to the uid the services table gives it, which the
kernel enforces as host uid ``base + uid - 1``, and chroots for real. What it
rests on: ``newuidmap``/``newgidmap`` (package uidmap) are set-uid root
helpers; simmta runs each once, to write the namespace's maps, and they only
grant the ranges root listed for this user. The host's root is never mapped
into the namespace, so nothing inside can act as it.

Modes (``probe`` finds the best one, trying each for real in a throwaway child,
since a namespace can be created while capabilities inside are denied, as
Ubuntu 24.04's AppArmor does):

- ``rootless``: the full range is mapped; uid separation and chroot enforced.
- ``partial``: user namespaces work but no range (or no newuidmap): only the
  user's own uid is mapped (as 0), so chroot is real, uid separation simulated.
- ``simulated``: no namespace at all; ``Setup.missing`` says why and
  ``Setup.fix`` the one command that would help.

``enter`` puts the calling process itself into a new namespace (master, or a
CLI tool whose master is gone); ``join`` puts it into a running master's.
Both need a single-threaded process (the kernel refuses otherwise).

Trust: runs as the invoking user, before anything else in the process.
"""

import contextlib
import ctypes
import errno
import os
import pwd
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from simmta.core.errors import SimmtaError

ROOTLESS = "rootless"
PARTIAL = "partial"
SIMULATED = "simulated"

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
SUBUID, SUBGID = Path("/etc/subuid"), Path("/etc/subgid")
DEFAULT_COUNT = 65536  # what useradd gives an ordinary user

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(path: str, nstype: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, nstype), f"setns {path}")
    finally:
        os.close(fd)


def make_mounts_private() -> None:
    """Nothing mounted inside propagates to the host (and none of the host's mounts here)."""
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")


@dataclass(frozen=True)
class IdRange:
    """A subordinate range: inside ids 1..count are host ids start..start+count-1."""

    start: int
    count: int

    def host(self, inside: int) -> int:
        return self.start + inside - 1


def subordinate(path: Path, user: str, uid: int) -> IdRange | None:
    """The user's first entry in /etc/subuid or /etc/subgid (by name or by number)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user, str(uid)) and parts[1].isdigit() and parts[2].isdigit():
            return IdRange(int(parts[1]), int(parts[2]))
    return None


def _free_range() -> int:
    """A start for a new range above every range already listed (for the hint)."""
    top = 100000
    for path in (SUBUID, SUBGID):
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                parts = line.split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    top = max(top, int(parts[1]) + int(parts[2]))
    return top


@dataclass
class Setup:
    """The privilege mode found (or entered) for this process, and what it rests on."""

    mode: str
    missing: str = ""  # what prevents a better mode ("" for rootless)
    fix: str = ""  # the one command that would give a better mode
    user: str = ""
    uid: int = -1  # the invoking user's host uid (root inside the namespace)
    gid: int = -1
    uids: IdRange | None = None
    gids: IdRange | None = None
    uid_map: list[list[int]] = field(default_factory=list)  # as /proc/self/uid_map, once entered

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Setup":
        d = dict(d)
        for key in ("uids", "gids"):
            d[key] = IdRange(**d[key]) if d.get(key) else None
        return cls(**d)

    def host_uid(self, inside: int) -> int:
        """The host uid the kernel gives a process with ``inside`` in the namespace."""
        if inside == 0:
            return self.uid
        if self.uids is None or not 0 < inside <= self.uids.count:
            return -1  # not mapped: the kernel shows such a process as the overflow uid
        return self.uids.host(inside)


def _uidmap_tool_args(pid: int, own: int, rng: IdRange) -> list[str]:
    return [str(pid), "0", str(own), "1", "1", str(rng.start), str(rng.count)]


def _map_from_outside(pid: int, s: Setup) -> str:
    """Run newuidmap/newgidmap on ``pid`` (from the parent namespace); '' or what failed."""
    assert s.uids and s.gids
    for tool, own, rng in (("newuidmap", s.uid, s.uids), ("newgidmap", s.gid, s.gids)):
        r = subprocess.run([tool, *_uidmap_tool_args(pid, own, rng)], capture_output=True, timeout=20)
        if r.returncode != 0:
            return f"{tool}: {r.stderr.decode(errors='replace').strip() or f'exit {r.returncode}'}"
    return ""


def _map_self_only(uid: int, gid: int) -> None:
    """Partial mode: map just our own uid and gid to 0 (no helper; setgroups denied)."""
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
    Path("/proc/self/gid_map").write_text(f"0 {gid} 1")


def _unshare_and_map(s: Setup) -> None:
    """Put this process into a new user + mount namespace mapped as ``s`` says.

    For the full range a helper child, still outside, runs newuidmap/newgidmap
    on us once we have unshared (a set-uid helper does nothing from inside).
    """
    if s.mode == PARTIAL:
        unshare(CLONE_NEWUSER | CLONE_NEWNS)
        _map_self_only(s.uid, s.gid)
    else:
        me = os.getpid()
        go_r, go_w = os.pipe()
        res_r, res_w = os.pipe()
        helper = os.fork()
        if helper == 0:  # pragma: no cover (child)
            try:
                os.close(go_w)
                os.close(res_r)
                if os.read(go_r, 1) == b"u":
                    os.write(res_w, _map_from_outside(me, s).encode()[:2000])
            finally:
                os._exit(0)
        os.close(go_r)
        os.close(res_w)
        try:
            unshare(CLONE_NEWUSER | CLONE_NEWNS)
            os.write(go_w, b"u")
        finally:
            os.close(go_w)
            failed = _read_all(res_r, helper)
        if failed:
            raise OSError(errno.EPERM, failed.decode(errors="replace"))
    make_mounts_private()


def _read_all(fd: int, child: int) -> bytes:
    """Everything a child writes into the pipe ``fd`` until it exits (then reaped)."""
    out = b""
    while chunk := os.read(fd, 4096):
        out += chunk
    os.close(fd)
    os.waitpid(child, 0)
    return out


def _try_in_child(s: Setup) -> str:
    """In a throwaway child: enter a namespace as ``s`` says and try what master will
    need (chroot; for rootless also setgroups, setresgid, setresuid). '' if all worked."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (child)
        os.close(r)
        try:
            _unshare_and_map(s)
            os.chroot("/")
            if s.mode == ROOTLESS:
                os.setgroups([])
                os.setresgid(1, 1, 1)
                os.setresuid(1, 1, 1)
            result = ""
        except OSError as e:
            result = str(e.strerror or e) if e.strerror else str(e)
            result = f"{result} ({errno.errorcode.get(e.errno or 0, '?')})"
        except Exception as e:
            result = f"{type(e).__name__}: {e}"
        os.write(w, result.encode()[:2000] or b"-")
        os._exit(0)
    os.close(w)
    out = _read_all(r, pid)
    return "" if out == b"-" else out.decode(errors="replace") or "the probe died"


def _userns_disabled() -> str:
    with contextlib.suppress(OSError, ValueError):
        if int(Path("/proc/sys/user/max_user_namespaces").read_text()) == 0:
            return "sudo sysctl -w user.max_user_namespaces=15000"
    with contextlib.suppress(OSError, ValueError):
        if int(Path("/proc/sys/kernel/unprivileged_userns_clone").read_text()) == 0:
            return "sudo sysctl -w kernel.unprivileged_userns_clone=1"
    return ""


def probe(max_uid: int) -> Setup:
    """The best mode this (non-root) user can have, each candidate tried for real.

    ``max_uid``: the highest uid the services table and configuration use, so
    the range must map it.
    """
    uid, gid = os.getuid(), os.getgid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    base = Setup(SIMULATED, user=user, uid=uid, gid=gid)
    if fix := _userns_disabled():
        return Setup(**{**base.as_dict(), "missing": "unprivileged user namespaces are disabled", "fix": fix})
    uids, gids = subordinate(SUBUID, user, uid), subordinate(SUBGID, user, uid)
    why_not_rootless, fix = "", ""
    if not (shutil.which("newuidmap") and shutil.which("newgidmap")):
        why_not_rootless, fix = "newuidmap/newgidmap are not installed", "sudo apt-get install uidmap"
    elif uids is None or gids is None:
        which = " and ".join(str(p) for p, r in ((SUBUID, uids), (SUBGID, gids)) if r is None)
        start = _free_range()
        why_not_rootless = f"no subordinate range for {user} in {which}"
        fix = (
            f"sudo usermod --add-subuids {start}-{start + DEFAULT_COUNT - 1} "
            f"--add-subgids {start}-{start + DEFAULT_COUNT - 1} {user}"
        )
    elif min(uids.count, gids.count) < max_uid:
        why_not_rootless = (
            f"the subordinate range of {user} has {min(uids.count, gids.count)} ids; "
            f"the services table needs uid {max_uid}"
        )
        fix = f"give {user} a range of {DEFAULT_COUNT} in {SUBUID} and {SUBGID} (sudo usermod ...)"
    else:
        full = Setup(ROOTLESS, user=user, uid=uid, gid=gid, uids=uids, gids=gids)
        failed = _try_in_child(full)
        if not failed:
            return full
        why_not_rootless = f"the user namespace was created but refused: {failed}"
        fix = apparmor_fix()
    partial = Setup(PARTIAL, why_not_rootless, fix, user, uid, gid)
    failed = _try_in_child(partial)
    if not failed:
        return partial
    return Setup(
        SIMULATED,
        f"{why_not_rootless}; and a user namespace of one uid failed: {failed}",
        apparmor_fix() or fix,
        user,
        uid,
        gid,
    )


def apparmor_fix() -> str:
    """Ubuntu 24.04 denies capabilities in unprivileged user namespaces by default."""
    knob = Path("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
    with contextlib.suppress(OSError, ValueError):
        if int(knob.read_text()) == 1:
            return "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
    return ""


def enter(s: Setup) -> Setup:
    """Move this process into a new namespace as ``s`` says; afterwards it is uid 0 there."""
    try:
        _unshare_and_map(s)
    except OSError as e:
        raise SimmtaError(f"cannot set up the {s.mode} user namespace: {e.strerror or e}") from None
    s.uid_map = read_map("/proc/self/uid_map")
    return s


def read_map(path: str) -> list[list[int]]:
    """A uid_map/gid_map as (inside, outside, count) rows."""
    rows = []
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            a, b, c = (int(x) for x in line.split())
            rows.append([a, b, c])
    return rows


def same_userns(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/user") == os.readlink("/proc/self/ns/user")
    except OSError:
        return False


def join(pid: int) -> None:
    """Enter master's user and mount namespaces (we own them, so the kernel lets us)."""
    if same_userns(pid):
        return
    try:
        setns(f"/proc/{pid}/ns/user", CLONE_NEWUSER)
        setns(f"/proc/{pid}/ns/mnt", CLONE_NEWNS)
    except OSError as e:
        raise SimmtaError(f"cannot enter the user namespace of master [{pid}]: {e.strerror or e}") from None


class IdMap:
    """Translate uids between a namespace and the host, from a process's uid_map as we see it."""

    def __init__(self, rows: list[list[int]]):
        self.rows = rows

    @classmethod
    def of(cls, pid: int, which: str = "uid") -> "IdMap":
        return cls(read_map(f"/proc/{pid}/{which}_map"))

    def to_host(self, inside: int) -> int | None:
        for a, b, c in self.rows:
            if a <= inside < a + c:
                return b + inside - a
        return None

    def to_inside(self, host: int) -> int | None:
        for a, b, c in self.rows:
            if b <= host < b + c:
                return a + host - b
        return None


@dataclass
class NsView:
    """Master's namespace as this process sees it: ids read from /proc are
    inside ids if we are in it too, host ids otherwise."""

    uids: IdMap
    gids: IdMap
    inside: bool

    @classmethod
    def of(cls, pid: int) -> "NsView | None":
        """None when ``pid`` is in the initial namespace (every id is its own)."""
        rows = read_map(f"/proc/{pid}/uid_map")
        if not rows or rows == [[0, 0, 4294967295]]:
            return None
        return cls(IdMap(rows), IdMap.of(pid, "gid"), same_userns(pid))

    def split(self, ids: list[int], which: str) -> tuple[list[int], list[int]]:
        """(inside, host) for ids read from /proc; -1 where the map has no such id."""
        m = self.uids if which == "uid" else self.gids
        if self.inside:
            return ids, [-1 if (h := m.to_host(i)) is None else h for i in ids]
        return [-1 if (i := m.to_inside(h)) is None else i for h in ids], ids


def describe_uid(ns: NsView | None, uid: int) -> str:
    """A uid this process read (a file's owner), as ``simmta ps`` shows ids: inside the
    namespace and on the host, e.g. ``uid 0 (host uid 1001)``; just ``uid N`` outside one."""
    if ns is None:
        return f"uid {uid}"
    inside, host = ns.split([uid], "uid")
    return f"uid {inside[0]} (host uid {host[0]})"
