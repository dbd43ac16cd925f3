"""Create and secure an instance's directory tree (Postfix's post-install).

Ownership and modes as in Postfix: queue directories belong to mail_owner with
mode 0700, ``private/`` 0700, ``public/`` 0711 (only the pickup trigger is
reachable by users), ``maildrop/`` 1733 (sticky, write-only drop directory),
mailboxes belong to their user (0700), ``run/`` and ``log/`` to the instance
owner (0700). In rootless mode the same ids are those of the user namespace
(the subordinate range on the host). In partial and simulated mode the invoking
user owns everything and only the modes are applied. No file here ever gets a set-uid or set-gid bit.

The profile names the queue's owner and group. Where they differ (qmail:
qmailq owns the queue, qmails and qmailr reach it through group qmail), the
message queues get group access and the set-gid bit *on the directory*, so
every queue file belongs to the group whichever uid created it (BSD's rule).

Trust: master, as root, before any child exists.
"""

import os
import time
from pathlib import Path

from simmta.core import compromise, maildir, names, privilege
from simmta.core import queue as qf
from simmta.core.config import Config
from simmta.core.errors import SimmtaError
from simmta.core.instance import QUEUE_SUBDIRS, Instance
from simmta.core.services import ROOT, Profile

MAILDROP_MODE = 0o1733
PUBLIC_MODE = 0o711


def _own(path: Path, mode: int, uid: int, gid: int, real: bool) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if real:
        os.chown(path, uid, gid)
    os.chmod(path, mode)


def check_reachable(inst: Instance) -> None:
    """In real mode unprivileged daemons (qmgr) must be able to walk to the queue."""
    for parent in [inst.path, *inst.path.parents]:
        if not os.stat(parent).st_mode & 0o001:
            raise SimmtaError(
                f"{parent} is not searchable by other users (mode "
                f"{oct(os.stat(parent).st_mode & 0o777)}), so mail_owner could not "
                f"reach {inst.queue}; choose an instance elsewhere "
                f"(e.g. --instance /var/tmp/simmta) or chmod o+x {parent}"
            )


def queue_ids(profile: Profile, cfg: Config) -> tuple[int, int]:
    """Owner uid and group gid of the queue directories."""
    ids = profile.ids(cfg)
    return ids[profile.queue_owner][0], (
        0 if profile.queue_group == ROOT else profile.gid_of(profile.queue_group, cfg.mail_owner_gid)
    )


def prepare(inst: Instance, cfg: Config, mode: str, profile: Profile) -> None:
    real = privilege.uids_enforced(mode)  # chown is possible (root, or root of a mapped range)
    owner = (os.getuid(), os.getgid())
    queue = queue_ids(profile, cfg)
    shared = 0o2070 if profile.group_shared_queue else 0  # group rwx, set-gid directory
    _own(inst.path, 0o755, *owner, real=False)
    if real:
        check_reachable(inst)
    _own(inst.queue, 0o755, 0, 0, real)
    for sub in QUEUE_SUBDIRS:
        m = {
            names.MAILDROP: MAILDROP_MODE,
            names.PUBLIC: PUBLIC_MODE,
            names.PRIVATE: 0o700 | (shared & 0o2010),
        }.get(sub, 0o700 | shared)
        _own(inst.queue / sub, m, *queue, real=real)
    _own(inst.mail, 0o755, 0, 0, real)
    for user, uid in cfg.local_users.items():
        _own(inst.mail / user, 0o700, uid, uid, real)
        maildir.create(inst.maildir(user))
        if real:
            for p in (inst.maildir(user), *(inst.maildir(user) / s for s in ("tmp", "new", "cur"))):
                os.chown(p, uid, uid)
    peer = (cfg.peer_uid, cfg.peer_gid)
    _own(inst.peer_maildir.parent, 0o700, *peer, real=real)
    maildir.create(inst.peer_maildir)
    if real:
        for p in (inst.peer_maildir, *(inst.peer_maildir / s for s in ("tmp", "new", "cur"))):
            os.chown(p, *peer)
    _own(inst.run, 0o700, *owner, real=False)
    _own(inst.log, 0o700, *owner, real=False)


def place_lab(inst: Instance, cfg: Config, mode: str, profile: Profile) -> str:
    """What the lab's attempts aim at, all below the instance: a file only root may
    read (lab/secret), a letter only alice may read, lab/outside (a directory only
    root may write), and a canary message in hold/ (never delivered, the only queued
    message the lab may alter). Returns the canary's queue ID."""
    real = privilege.uids_enforced(mode)
    inst.lab.mkdir(mode=0o700, exist_ok=True)
    os.chmod(inst.lab, 0o755)
    secret = inst.lab / "secret"
    secret.write_text("the root-only secret: if you can read this, the wall did not hold\n")
    os.chmod(secret, 0o600)
    _own(inst.lab / "outside", 0o755, 0, 0, real)
    alice = cfg.local_users.get("alice")
    letter = inst.mail / "alice" / compromise.LETTER
    letter.write_text("Subject: for alice only\n\nif anyone else can read this, the wall did not hold\n")
    os.chmod(letter, 0o600)
    if real and alice is not None:
        os.chown(letter, alice, alice)
    w = qf.QueueWriter(inst.queue / names.HOLD, group_access=profile.group_shared_queue)
    try:
        w.write(
            *qf.envelope_records(
                time.time(), {"origin": "lab canary"}, "lab@simmta.test", ["canary@simmta.test"]
            )
        )
        w.write(*qf.record_parts(b"M", b"Subject: the lab's canary (never delivered)\n\ncanary\n"))
        w.commit()
    except BaseException:
        w.abort()
        raise
    if real:
        os.chown(w.path, *queue_ids(profile, cfg))
    return w.qid
