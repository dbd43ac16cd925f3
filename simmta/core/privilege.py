"""Privilege: the drop (chroot, groups, gid, uid), acting as a recipient, and
the observer that reads what the kernel really enforces from /proc.

Real mode: master runs as root, each unprivileged service switches to the
fixed ``mail_owner`` ids after its setup, each chroot service changes its root
to the queue directory first. Simulated mode (not root): the same steps are
reported, each marked "simulated", and nothing claims they were enforced.

Every step emits its own event from the function that performs it, so what is
shown is what was done. Trust: runs as root in master and before the drop.
"""

import contextlib
import errno
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from simmta.core.events import Emitter

REAL = "real"
SIMULATED = "simulated"


def current_mode() -> str:
    return REAL if os.geteuid() == 0 else SIMULATED


def drop_privileges(emitter: Emitter, *, chroot_dir: Path | None, uid: int | None,
                    gid: int | None, mode: str) -> None:
    """Change root (if asked), then clear groups and switch gid and uid (if asked).

    Irreversible in real mode: afterwards an attempt to regain uid 0 fails, and
    that failure is reported too.
    """
    def step(name: str, target: Any, action: Any) -> None:
        if mode == SIMULATED:
            emitter.emit("privilege", "step", step=name, target=target, mode=mode,
                         outcome=f"simulated: would {name} {target}")
            return
        action()
        emitter.emit("privilege", "step", step=name, target=target, mode=mode, outcome="done")

    if chroot_dir is not None:
        def do_chroot() -> None:
            os.chroot(chroot_dir)
            os.chdir("/")
        step("chroot", str(chroot_dir), do_chroot)
    if uid is not None and gid is not None:
        step("setgroups", [], lambda: os.setgroups([]))
        step("setgid", gid, lambda: os.setresgid(gid, gid, gid))
        step("setuid", uid, lambda: os.setresuid(uid, uid, uid))
        if mode == REAL:
            try:
                os.setuid(0)
                outcome = "FAILED: regained uid 0"
            except PermissionError:
                outcome = "refused by the kernel (EPERM): the drop is irreversible"
            emitter.emit("privilege", "step", step="regain-root", target=0, mode=mode,
                         outcome=outcome)


@contextlib.contextmanager
def acting_as(uid: int, gid: int, mode: str) -> Iterator[None]:
    """Run the body with effective uid/gid of a recipient (real mode), then back to root."""
    if mode != REAL:
        yield
        return
    os.setegid(gid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@dataclass
class Observation:
    pid: int
    uid: list[int]  # real, effective, saved, filesystem
    gid: list[int]
    groups: list[int]
    caps: str  # none / partial / full
    cap_eff: str
    no_new_privs: bool
    root: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def observe(pid: int) -> Observation | None:
    """What /proc says about ``pid`` (None if it is gone or not readable)."""
    fields: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        root = os.readlink(f"/proc/{pid}/root")
    except OSError:
        return None
    cap_eff = fields.get("CapEff", "0")
    cap_bnd = fields.get("CapBnd", "0")
    eff = int(cap_eff, 16)
    caps = "none" if eff == 0 else "full" if eff == int(cap_bnd, 16) else "partial"
    return Observation(
        pid=pid,
        uid=[int(x) for x in fields.get("Uid", "").split()],
        gid=[int(x) for x in fields.get("Gid", "").split()],
        groups=[int(x) for x in fields.get("Groups", "").split()],
        caps=caps,
        cap_eff=cap_eff,
        no_new_privs=fields.get("NoNewPrivs", "0") == "1",
        root=root,
    )


def expected(*, unpriv: bool, chroot: bool, mode: str, queue_dir: Path,
             mail_owner: tuple[int, int]) -> dict[str, Any]:
    """What the services table says a process of a service should look like."""
    if mode == REAL:
        uid, gid = mail_owner if unpriv else (0, 0)
        return {"uid": uid, "gid": gid, "root": str(queue_dir) if chroot else "/"}
    return {"uid": os.getuid(), "gid": os.getgid(), "root": "/"}


def mismatches(obs: Observation, want: dict[str, Any]) -> list[str]:
    """Loud differences between what was observed and what the table says."""
    out = []
    if any(u != want["uid"] for u in obs.uid):
        out.append(f"uid is {obs.uid}, table says {want['uid']}")
    if any(g != want["gid"] for g in obs.gid):
        out.append(f"gid is {obs.gid}, table says {want['gid']}")
    if want["uid"] != 0 and obs.groups:
        out.append(f"supplementary groups {obs.groups} not cleared")
    if obs.root != want["root"]:
        out.append(f"root directory is {obs.root}, table says {want['root']}")
    return out


def lab_attempt(action: str, path: Path) -> tuple[str, str]:
    """Try something privilege should forbid; (outcome, detail) as the kernel answered."""
    try:
        if action == "read-secret":
            with open(path, "rb") as f:
                f.read(64)
            return "succeeded", f"read {path}"
        if action == "write-maildir":
            p = path / f"lab-intrusion.{os.getpid()}"
            with open(p, "xb") as f:
                f.write(b"written by an intruder\n")
            os.unlink(p)
            return "succeeded", f"wrote into {path}"
        if action == "regain-root":
            os.setuid(0)
            return "succeeded", "uid is now 0"
    except OSError as e:
        name = errno.errorcode.get(e.errno or 0, "error")
        why = {"ENOENT": "not there: outside the chroot jail (or missing)",
               "EACCES": "permission denied by the file's owner and mode",
               "EPERM": "operation not permitted for this uid"}.get(name, e.strerror or "")
        return f"refused ({name})", why
    return "unknown action", action
