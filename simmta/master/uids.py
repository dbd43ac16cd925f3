"""The instance's uid block: which uids its processes run as, and a claim on them.

A profile names accounts as offsets from mail_owner_uid (simmta.core.services),
and local_users own the Maildirs. Run as root, every one of these uids must be
nobody else's: not a host account (``/etc/passwd``, ``/etc/group``), and not a
uid of another running simmta instance, or a compromised daemon of one
instance could signal or read the other's processes and files.

The claim is an abstract Unix socket bound per uid (``\\0simmta-uid-N``): the
kernel makes the bind exclusive across the host (one network namespace) and
drops it when master dies, so no lock file is left behind and concurrent
instances (tests, ``simmta trilogy``) cannot both take a uid. With
``uid_allocation = "auto"`` (the default) master moves the whole block by
16 until it is free; with ``"fixed"`` it refuses to start, naming the clash.

Trust: master, as root, before any child exists.
"""

import grp
import pwd
import socket
from typing import Any

from simmta.core import config
from simmta.core.config import Config
from simmta.core.errors import SimmtaError
from simmta.core.instance import Instance
from simmta.core.services import ROOT, UID_BLOCK, ServiceTable

MAX_MOVES = 256


def shifted(cfg: Config, by: int) -> Config:
    """The same configuration with every uid and gid of the block moved by ``by``."""
    return config.apply(
        cfg,
        {
            "mail_owner_uid": cfg.mail_owner_uid + by,
            "mail_owner_gid": cfg.mail_owner_gid + by,
            "peer_uid": cfg.peer_uid + by,
            "peer_gid": cfg.peer_gid + by,
            "local_users": {u: uid + by for u, uid in cfg.local_users.items()},
        },
    )


def wanted(table: ServiceTable, cfg: Config) -> dict[int, str]:
    """Every uid and gid the instance uses, with what uses it (root excluded)."""
    ids = table.profile.ids(cfg)
    out: dict[int, str] = {}
    for name, (uid, gid) in ids.items():
        if name != ROOT:
            out[uid] = f"uid of {table.profile.name} account {name!r}"
            out.setdefault(gid, f"gid of {table.profile.name} account {name!r}")
    for user, uid in cfg.local_users.items():
        if uid in out:
            raise SimmtaError(
                f"local user {user!r} has uid {uid}, which is also the {out[uid]}; "
                f"local_users must lie outside mail_owner_uid .. +{UID_BLOCK - 1}"
            )
        out[uid] = f"uid of local user {user!r}"
    return out


def _host_clash(uid: int, what: str) -> str:
    for lookup, kind in ((pwd.getpwuid, "host account"), (grp.getgrgid, "host group")):
        try:
            entry: Any = lookup(uid)
        except KeyError:
            continue
        return f"{what} is {uid}, which belongs to the {kind} {entry[0]!r}"
    return ""


def _claim(ids: dict[int, str]) -> tuple[list[socket.socket], str]:
    held: list[socket.socket] = []
    for uid, what in sorted(ids.items()):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.bind(f"\0simmta-uid-{uid}")
        except OSError:
            s.close()
            for h in held:
                h.close()
            return [], f"{what} is {uid}, which another running simmta instance uses"
        held.append(s)
    return held, ""


def allocate(
    table: ServiceTable, cfg: Config, moved: int | None = None
) -> tuple[Config, list[socket.socket], int]:
    """A configuration whose uids are free, the claims that keep them so (real mode), and
    how far the block was moved. ``moved``: where this instance's block was last time;
    its queue files and mailboxes belong to those uids, so it is taken again or refused."""
    if moved is not None:
        tried = shifted(cfg, moved)
        ids = wanted(table, tried)
        clash = next((c for uid, what in sorted(ids.items()) if (c := _host_clash(uid, what))), "")
        held, clash = ([], clash) if clash else _claim(ids)
        if not held:
            raise SimmtaError(
                f"cannot start: {clash}; this instance's files belong to those uids "
                f"(its block was moved by {moved}): stop the other instance first"
            )
        return tried, held, moved
    tried, by = cfg, 0
    for _ in range(MAX_MOVES if cfg.uid_allocation == "auto" else 1):
        ids = wanted(table, tried)
        clash = next((c for uid, what in sorted(ids.items()) if (c := _host_clash(uid, what))), "")
        if not clash:
            held, clash = _claim(ids)
            if held:
                return tried, held, by
        if cfg.uid_allocation == "fixed":
            raise SimmtaError(
                f"cannot start: {clash} (choose another mail_owner_uid in main.toml, "
                'or uid_allocation = "auto")'
            )
        tried, by = shifted(tried, UID_BLOCK), by + UID_BLOCK
    raise SimmtaError(f"cannot start: no free uid block after {MAX_MOVES} tries (last: {clash})")


def allocate_for(inst: Instance, table: ServiceTable, cfg: Config) -> tuple[Config, list[socket.socket]]:
    """``allocate`` for an instance, remembering the block in ``DIR/uid-block`` so that a
    restart finds its queue files and mailboxes owned by the uids it runs as."""
    record = inst.path / "uid-block"
    try:
        moved: int | None = int(record.read_text())
    except (OSError, ValueError):
        moved = None
    cfg, held, by = allocate(table, cfg, moved)
    record.write_text(f"{by}\n")
    return cfg, held
