"""Privilege: the drop (chroot, groups, gid, uid), acting as a recipient, and
the observer that reads what the kernel really enforces from /proc.

The privilege mode is named everywhere (status, ps, events, the TUI, lessons):

- ``real``: master runs as root; each unprivileged service switches to the
  ids the services table gives it (``service_ids``) after its setup, each
  chroot service changes its root to the queue directory first.
- ``rootless``: the same, kernel-enforced, inside a user namespace whose
  uids are the student's subordinate range (see simmta.core.userns): uid U
  there is host uid base + U - 1; the host's root is never involved.
- ``partial``: a user namespace with one uid: chroot is real, the uid and
  group steps are only reported.
- ``simulated``: not root and no namespace: every step is reported, marked
  "simulated", and nothing claims it was enforced.

Every step emits its own event from the function that performs it, so what is
shown is what was done. Trust: runs as root in master and before the drop.
"""

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from simmta.core import names, userns
from simmta.core.errors import SimmtaError
from simmta.core.events import Emitter
from simmta.core.pyexec import python_module
from simmta.core.records import PrivilegeStep, Record

REAL = "real"
ROOTLESS = userns.ROOTLESS
PARTIAL = userns.PARTIAL
SIMULATED = userns.SIMULATED
MODES = (REAL, ROOTLESS, PARTIAL, SIMULATED)
# What each mode stands for, in one line (status, ps, banner, TUI).
MEANING = {
    REAL: "root: uid/gid drops and chroot are enforced by the kernel",
    ROOTLESS: (
        "enforced by the kernel inside a user namespace: each daemon's uid is one of your "
        "subordinate uids and chroot is real; the host's root is untouched, and your own uid "
        "owns the namespace (you, not the daemons, can still reach everything)"
    ),
    PARTIAL: (
        "a user namespace with only your own uid: chroot is real, but every daemon runs as "
        "you, so the uid separation is simulated"
    ),
    SIMULATED: "not root and no user namespace: uid/gid drops and chroot are NOT enforced (simulated)",
}


def uids_enforced(mode: str) -> bool:
    """Does the kernel really switch uids and gids in this mode?"""
    return mode in (REAL, ROOTLESS)


def chroot_enforced(mode: str) -> bool:
    return mode in (REAL, ROOTLESS, PARTIAL)


def service_ids(
    svc: Any, cfg: Any, accounts: dict[str, tuple[int, int]] | None = None
) -> tuple[int, int] | None:
    """The (uid, gid) a service switches to, or None if it keeps root.

    The peer ("the Internet") has ids of its own; every other service runs as
    its account in the profile (``accounts``: name -> ids, see
    simmta.core.services.Profile.ids), by default mail_owner if unprivileged.
    Any table uid works in rootless mode: it is mapped onto the subordinate range.
    """
    if svc.command == names.PEER and svc.unpriv:
        return accounts[names.PEER] if accounts and names.PEER in accounts else (cfg.peer_uid, cfg.peer_gid)
    account = getattr(svc, "account", "mail_owner" if svc.unpriv else "root")
    if account == "root":
        return None
    if accounts and account in accounts:
        return accounts[account]
    return cfg.mail_owner_uid, cfg.mail_owner_gid


def service_euid(svc: Any, accounts: dict[str, tuple[int, int]] | None) -> int | None:
    """The effective (and saved) uid of an emulated set-uid program, else None."""
    owner = getattr(svc, "setuid", "")
    return accounts[owner][0] if owner and accounts and owner in accounts else None


def table_uids(cfg: Any) -> list[int]:
    """Every uid the configuration gives a process or a mailbox (the range must map them)."""
    return [cfg.mail_owner_uid, cfg.mail_owner_gid, cfg.peer_uid, cfg.peer_gid, *cfg.local_users.values()]


ASKABLE = ("auto", ROOTLESS, PARTIAL, SIMULATED)  # what ``simmta run --privilege`` accepts


def establish(cfg: Any, want: str = "auto") -> userns.Setup:
    """Find this process's privilege mode and, for rootless or partial, enter the
    user namespace (this very process becomes master there, as uid 0).

    ``want`` may ask for a lesser mode than the best available (``simulated``
    to compare, ``partial``); never for more.
    """
    if os.geteuid() == 0:
        return userns.Setup(REAL, user="root", uid=0, gid=0)
    if want == SIMULATED:
        return userns.Setup(
            SIMULATED,
            missing="asked for with --privilege simulated",
            fix="simmta run (without --privilege)",
            uid=os.getuid(),
            gid=os.getgid(),
        )
    s = userns.probe(max(table_uids(cfg)))
    if want == ROOTLESS and s.mode != ROOTLESS:
        raise SimmtaError(f"rootless mode is not available: {s.missing} (fix: {s.fix})")
    if want == PARTIAL and s.mode == ROOTLESS:
        s = userns.Setup(
            PARTIAL,
            "asked for with --privilege partial",
            "simmta run (without --privilege)",
            s.user,
            s.uid,
            s.gid,
        )
    if s.mode in (ROOTLESS, PARTIAL):
        userns.enter(s)
    return s


def _has_foreign_files(top: Path) -> bool:
    """Does anything below ``top`` belong to another uid (or hide from us)?"""
    me = os.getuid()
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                for e in it:
                    st = e.stat(follow_symlinks=False)
                    if st.st_uid != me:
                        return True
                    if e.is_dir(follow_symlinks=False):
                        stack.append(Path(e.path))
        except PermissionError:
            return True
        except OSError:
            continue
    return False


def remove_instance(path: Path) -> None:
    """Remove a stopped instance's directory, whatever mode made it (lessons, bench).

    Files of a rootless instance belong to the subordinate range: ``simmta clean``
    in a child removes them from inside a namespace (this process may have
    threads, and the kernel lets no threaded process enter one).
    """
    if not path.exists():
        return
    if os.geteuid() != 0 and _has_foreign_files(path):
        subprocess.run(
            python_module("simmta", "clean", "--instance", str(path)),
            capture_output=True,
            timeout=120,
            check=False,
        )
    shutil.rmtree(path, ignore_errors=True)


def enter_instance(inst: Any) -> str:
    """For a tool that reads or removes an instance's files as an ordinary user: if
    they belong to a rootless instance's range, get into its namespace (master's
    if it runs, a new one with the same map if master is gone). Returns how."""
    if os.geteuid() == 0:
        return ""
    try:
        status = inst.status()
    except SimmtaError:
        status = None
    if status is not None:
        if status.get("privilege_mode") != ROOTLESS:
            return ""
        userns.join(int(status["master_pid"]))
        return "joined master's user namespace"
    if not _has_foreign_files(inst.path):
        return ""
    s = userns.probe(max(table_uids(inst.config())))
    if s.mode != ROOTLESS:
        raise SimmtaError(
            f"{inst.queue} belongs to uids of a subordinate range, and rootless mode "
            f"is not available now to reach them: {s.missing} (fix: {s.fix})"
        )
    userns.enter(s)
    return "entered a new user namespace with the same map"


def describe(setup: dict[str, Any]) -> list[str]:
    """The privilege mode in plain words: what it enforces, what it rests on, how to get more."""
    mode = setup.get("mode", SIMULATED)
    lines = [f"privilege {mode.upper()}: {MEANING.get(mode, '?')}"]
    uids, gids = setup.get("uids"), setup.get("gids")
    if mode == ROOTLESS and uids and gids:
        lines.append(
            f"uid U in the namespace is host uid {uids['start']} + U - 1 (your subordinate "
            f"range {uids['start']}-{uids['start'] + uids['count'] - 1}); uid 0 is you "
            f"({setup.get('uid')}). newuidmap and newgidmap, set-uid root helpers from the "
            f"uidmap package, were run once to write these maps"
        )
    if setup.get("missing"):
        lines.append(f"why not more: {setup['missing']}")
    if setup.get("fix"):
        lines.append(f"to get more: {setup['fix']}")
    return lines


def drop_privileges(
    emitter: Emitter,
    *,
    chroot_dir: Path | None,
    uid: int | None,
    gid: int | None,
    mode: str,
    euid: int | None = None,
    account: str = "",
    setuid_account: str = "",
) -> None:
    """Change root (if asked), then clear groups and switch gid and uid (if asked).

    With ``euid``, the process is left as the kernel leaves a set-uid program
    its caller ran: real uid ``uid``, effective and saved uid ``euid``. An
    emulation (a Python program cannot be set-uid): the root scaffolding sets
    these ids itself, and the step says so.

    Irreversible in real mode: afterwards an attempt to regain uid 0 fails, and
    that failure is reported too.
    """

    def step(name: str, target: Any, action: Any) -> None:
        enforced = chroot_enforced(mode) if name == "chroot" else uids_enforced(mode)
        if not enforced:
            emitter.emit(
                PrivilegeStep(
                    step=name, target=target, mode=mode, outcome=f"simulated: would {name} {target}"
                )
            )
            return
        action()
        emitter.emit(PrivilegeStep(step=name, target=target, mode=mode, outcome="done"))

    if chroot_dir is not None:

        def do_chroot() -> None:
            os.chroot(chroot_dir)
            os.chdir("/")

        step("chroot", str(chroot_dir), do_chroot)
    if uid is not None and gid is not None:
        step("setgroups", [], lambda: os.setgroups([]))
        step("setgid", gid, lambda: os.setresgid(gid, gid, gid))
        if euid is None:
            step("setuid", uid, lambda: os.setresuid(uid, uid, uid))
        else:
            step(
                "setuid-emulated",
                f"real {uid} ({account}), effective/saved {euid} "
                f"({setuid_account}): EMULATED set-uid program",
                lambda: os.setresuid(uid, euid, euid),
            )
        if uids_enforced(mode):
            try:
                os.setuid(0)
                outcome = "FAILED: regained uid 0"
            except PermissionError:
                outcome = "refused by the kernel (EPERM): the drop is irreversible"
            emitter.emit(PrivilegeStep(step="regain-root", target=0, mode=mode, outcome=outcome))


@contextlib.contextmanager
def acting_as(uid: int, gid: int, mode: str, emit: Callable[[Record], None] | None = None) -> Iterator[None]:
    """Run the body with effective uid/gid of a recipient (real, rootless), then back to root.

    Only the effective ids change (seteuid): the real and saved uid stay 0, which
    is how the process gets root back afterwards, and why a hole exploited in the
    body could do the same (setuid(2) to the saved uid needs no privilege).
    """

    def step(target: int) -> None:  # each change is an event, from here where it happens
        if emit is not None:
            emit(
                PrivilegeStep(
                    step="seteuid",
                    target=target,
                    mode=mode,
                    outcome="done" if uids_enforced(mode) else f"simulated: would seteuid {target}",
                )
            )

    step(uid)
    if not uids_enforced(mode):
        yield
        step(0)
        return
    os.setegid(gid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        step(0)


@dataclass
class Observation:
    pid: int
    uid: list[int]  # real, effective, saved, filesystem: inside the namespace, if any
    gid: list[int]
    groups: list[int]
    caps: str  # none / partial / full
    cap_eff: str
    no_new_privs: bool
    root: str
    host_uid: list[int]  # the same ids as the host's kernel sees them (= uid outside a namespace)
    host_gid: list[int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ids(value: str) -> list[int]:
    return [int(x) for x in value.split()]


def observe(pid: int, ns: "userns.NsView | None" = None) -> Observation | None:
    """What /proc says about ``pid`` (None if it is gone or not readable).

    ``ns``: the namespace master runs in, to give each id both inside and on the host.
    """
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
    uid, gid = _ids(fields.get("Uid", "")), _ids(fields.get("Gid", ""))
    inside_uid, host_uid = ns.split(uid, "uid") if ns else (uid, uid)
    inside_gid, host_gid = ns.split(gid, "gid") if ns else (gid, gid)
    return Observation(
        pid=pid,
        uid=inside_uid,
        gid=inside_gid,
        groups=_ids(fields.get("Groups", "")),
        caps=caps,
        cap_eff=cap_eff,
        no_new_privs=fields.get("NoNewPrivs", "0") == "1",
        root=root,
        host_uid=host_uid,
        host_gid=host_gid,
    )


def expected(
    svc: Any,
    cfg: Any,
    queue_dir: Path,
    setup: "userns.Setup",
    accounts: dict[str, tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """What the services table says a process of ``svc`` (None: master) should look like.

    ``setup``: the mode and who started master (root in a namespace). ``uid``
    and ``gid`` are as seen inside the namespace, ``host_uid`` as the host sees it.
    For an emulated set-uid program ``uid`` lists real, effective, saved and
    filesystem uid.
    """
    mode = setup.mode
    ids = service_ids(svc, cfg, accounts) if svc is not None else None
    if uids_enforced(mode) and ids is not None:
        uid, gid = ids
    elif mode == SIMULATED:
        uid, gid = setup.uid, setup.gid
    else:
        uid, gid = 0, 0
    want: dict[str, Any] = {
        "uid": uid,
        "gid": gid,
        "root": str(queue_dir) if svc is not None and svc.chroot and chroot_enforced(mode) else "/",
        "groups_cleared": uids_enforced(mode) and uid != 0,
        "host_uid": setup.host_uid(uid) if mode in (ROOTLESS, PARTIAL) else uid,
    }
    if mode == ROOTLESS and uid != 0:
        want["host_uid_not"] = [0, setup.uid]  # never root's, never the student's own
    euid = service_euid(svc, accounts) if svc is not None and uids_enforced(mode) else None
    if euid is not None:
        want["uid"] = [uid, euid, euid, euid]
        want["host_uid"] = [
            want["host_uid"],
            *[setup.host_uid(euid) if mode in (ROOTLESS, PARTIAL) else euid] * 3,
        ]
    return want


def simulated_steps(
    svc: Any, cfg: Any, queue_dir: Path, mode: str, accounts: dict[str, tuple[int, int]] | None = None
) -> str:
    """What the table asks of ``svc`` (None: master) that this mode only reports, in
    plain words ('' when the kernel enforces all of it). Expected, not an error:
    e.g. the invoking user's supplementary groups stay, since nothing can clear them."""
    steps = []
    if svc is None:
        if mode == SIMULATED:
            steps.append("run as root")
    else:
        ids = service_ids(svc, cfg, accounts)
        if svc.chroot and not chroot_enforced(mode):
            steps.append(f"chroot to {queue_dir}")
        if ids is not None and not uids_enforced(mode):
            steps.append(f"switch to uid {ids[0]} gid {ids[1]} and clear its groups")
            if (euid := service_euid(svc, accounts)) is not None:
                steps.append(f"take effective uid {euid} ({svc.setuid}), as its set-uid program would")
        elif ids is None and not uids_enforced(mode) and svc.command == names.LOCAL:
            steps.append("write each mailbox as its user")
    return "simulated: would " + ", ".join(steps) if steps else ""


def mismatches(obs: Observation, want: dict[str, Any]) -> list[str]:
    """Loud differences between what was observed and what the table says."""
    out = []
    uids = want["uid"] if isinstance(want["uid"], list) else [want["uid"]] * len(obs.uid)
    if obs.uid != uids:
        out.append(f"uid is {obs.uid}, table says {want['uid']}")
    if any(g != want["gid"] for g in obs.gid):
        out.append(f"gid is {obs.gid}, table says {want['gid']}")
    host = want.get("host_uid")
    hosts = host if isinstance(host, list) else [host] * len(obs.host_uid)
    if host is not None and obs.host_uid != hosts:
        out.append(f"host uid is {obs.host_uid}, the namespace's map says {host}")
    for forbidden in want.get("host_uid_not", ()):
        if forbidden in obs.host_uid:
            out.append(f"host uid {forbidden} is root's or the student's own")
    if want["groups_cleared"] and obs.groups:
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
            ruid, euid, suid = os.getresuid()
            return "succeeded", f"uid is now 0 (real, effective, saved: {ruid}, {euid}, {suid})"
    except OSError as e:
        name = errno.errorcode.get(e.errno or 0, "error")
        why = {
            "ENOENT": "not there: outside the chroot jail (or missing)",
            "EACCES": "permission denied by the file's owner and mode",
            "EPERM": "operation not permitted for this uid",
        }.get(name, e.strerror or "")
        return f"refused ({name})", why
    return "unknown action", action
