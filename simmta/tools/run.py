"""``simmta run | stop | status | config``: start, stop and inspect an MTA.

Trust: runs as the invoking user (root for real privilege separation).
"""

import argparse
import json
import os
import shutil
import signal
import time
from typing import Any

from simmta.cli import add_profile_option
from simmta.core import config as config_mod
from simmta.core import privilege
from simmta.core.errors import SimmtaError
from simmta.core.instance import Instance


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("run", parents=[parent], help="run the MTA (master) in the foreground")
    p.add_argument("--smtp-port", type=int, metavar="N", help="SMTP port (0: any free port; default 2525)")
    p.add_argument("--peer-port", type=int, metavar="N", help="the peer's port (default: any free port)")
    p.add_argument(
        "--lab",
        action="store_true",
        help="allow lab attempts (daemons try what their privilege should forbid)",
    )
    add_profile_option(p)
    p.add_argument(
        "--privilege",
        choices=privilege.ASKABLE,
        default=None,
        help="not root: the best mode available (auto, the default, or $SIMMTA_PRIVILEGE), "
        "or ask for a lesser one to compare",
    )
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("stop", parents=[parent], help="stop a running MTA (SIGTERM to master)")
    p.set_defaults(func=cmd_stop)
    p = sub.add_parser(
        "clean",
        parents=[parent],
        help="remove a stopped instance's directory (rootless: from inside its namespace)",
    )
    p.set_defaults(func=cmd_clean, in_namespace=True)
    p = sub.add_parser("status", parents=[parent], help="is it running, on which ports, how privileged")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("config", parents=[parent], help="print the effective main parameters (like postconf)")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("-d", "--defaults", action="store_true", help="show the defaults instead")
    p.set_defaults(func=cmd_config)


def cmd_run(args: argparse.Namespace) -> int:
    from simmta.master.main import run

    want = args.privilege or os.environ.get("SIMMTA_PRIVILEGE") or "auto"
    if want not in privilege.ASKABLE:
        raise SimmtaError(f"SIMMTA_PRIVILEGE={want!r}: expected one of {', '.join(privilege.ASKABLE)}")
    return run(Instance(args.instance), args.smtp_port, args.peer_port, args.lab, want, args.profile)


def cmd_stop(args: argparse.Namespace) -> int:
    inst = Instance(args.instance)
    pid = int(inst.status()["master_pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not _running(pid):
            print(f"simmta: stopped master [{pid}]")
            return 0
        time.sleep(0.05)
    raise SimmtaError(f"master [{pid}] did not stop within 15 s")


def cmd_clean(args: argparse.Namespace) -> int:
    """Remove the whole instance directory. Files a rootless MTA created belong to the
    student's subordinate uids, which the student cannot remove from the host; the
    namespace (entered before this runs, see cli.main) makes them the student's again."""
    inst = Instance(args.instance)
    try:
        pid = inst.status()["master_pid"]
    except SimmtaError:
        pid = None  # stopped (or died): safe to remove
    if pid is not None:
        raise SimmtaError(f"master [{pid}] is running for {inst.path}: 'simmta stop' first")
    if not inst.path.exists():
        print(f"simmta: nothing to clean at {inst.path}")
        return 0
    if not (inst.queue.is_dir() or inst.run.is_dir()):
        raise SimmtaError(
            f"{inst.path} does not look like a simmta instance (no queue/ or run/): not removed"
        )
    errors: list[str] = []
    shutil.rmtree(inst.path, onerror=lambda _f, p, e: errors.append(f"{p}: {e[1]}"))
    if errors:
        raise SimmtaError(f"could not remove {len(errors)} file(s), e.g. {errors[0]}")
    print(f"simmta: removed {inst.path}")
    return 0


def _running(pid: int) -> bool:
    """Alive and not a zombie (whoever started master may not have reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def live_status(inst: Instance) -> dict[str, Any]:
    """Master's live status over the control socket (status.json if that fails)."""
    from simmta.core import control

    static = inst.status()
    try:
        reply = control.request(inst.control_socket, "status")
        reply.pop("ok", None)
        return reply
    except SimmtaError:
        return static


def cmd_status(args: argparse.Namespace) -> int:
    inst = Instance(args.instance)
    st = live_status(inst)
    if args.json:
        print(json.dumps(st, indent=1))
        return 0
    from rich.console import Console  # here, not at the top: master (simmta run) never loads rich
    from rich.table import Table

    c = Console()
    c.print(f"master [bold]{st['master_pid']}[/] instance {st['instance']}", highlight=False)
    c.print(
        f"SMTP {st['smtp']['host']}:{st['smtp']['port']}   peer (the Internet) "
        f"{st['peer']['host']}:{st['peer']['port']}",
        highlight=False,
    )
    for line in privilege.describe(st.get("privilege") or {"mode": st["privilege_mode"]}):
        c.print(line, highlight=False, markup=False)
    t = Table("service", "pids")
    for s in st["services"]:
        t.add_row(s["name"], " ".join(map(str, s["pids"])) or "-")
    c.print(t)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    inst = Instance(args.instance)
    cfg = config_mod.defaults() if args.defaults else inst.config()
    unknown = [n for n in args.names if n not in cfg]
    if unknown:
        raise SimmtaError(f"unknown parameter: {', '.join(unknown)}")
    for name in args.names or cfg:
        print(f"{name} = {_show(cfg[name])}")
    return 0


def _show(v: Any) -> str:
    if isinstance(v, tuple | list):
        return ", ".join(map(str, v))
    if isinstance(v, dict):
        return ", ".join(f"{k}={x}" for k, x in v.items())
    if isinstance(v, float) and v.is_integer():
        return f"{int(v)}s"
    return str(v)
