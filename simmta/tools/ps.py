"""``simmta ps``: every simmta process as the kernel sees it, from /proc.

master names the processes (pid, service); the privilege columns are read by
this tool itself from ``/proc/<pid>/status`` and ``/proc/<pid>/root`` (the
same fields you would read for a real Postfix), compared with the services
table, and any difference is flagged. In simulated mode every row says so.

Trust: reads /proc; prints text inert.
"""

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from simmta.core import control, privilege
from simmta.core.instance import Instance


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ps", parents=[parent], help="processes with their observed privileges")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ps)


def observed_processes(inst: Instance) -> tuple[list[dict[str, Any]], str]:
    reply = control.request(inst.control_socket, "ps")
    cfg = inst.config()
    table = inst.services()
    mode = reply["privilege_mode"]
    rows = []
    for p in reply["processes"]:
        obs = privilege.observe(int(p["pid"]))
        if obs is None:
            continue  # exited meanwhile
        svc = table.by_name.get(p["service"])
        if svc is None:  # master
            want = {"uid": 0, "gid": 0, "root": "/"} if mode == privilege.REAL else \
                privilege.expected(unpriv=False, chroot=False, mode=mode, queue_dir=inst.queue,
                                   mail_owner=(0, 0))
        else:
            want = privilege.expected(unpriv=svc.unpriv, chroot=svc.chroot, mode=mode,
                                      queue_dir=inst.queue,
                                      mail_owner=(cfg.mail_owner_uid, cfg.mail_owner_gid))
        mism = privilege.mismatches(obs, want) if svc is not None or mode == privilege.REAL else []
        would = ""
        if mode == privilege.SIMULATED and svc is not None:
            steps = ([f"chroot to {inst.queue}"] if svc.chroot else []) + (
                [f"switch to uid {cfg.mail_owner_uid} gid {cfg.mail_owner_gid}"] if svc.unpriv
                else ["keep root (act as each recipient)" if svc.name == "local" else "keep root"])
            would = "simulated: would " + ", ".join(steps)
        rows.append({"pid": obs.pid, "ppid": p["ppid"], "service": p["service"], "state": p["state"],
                     "uid": obs.uid, "gid": obs.gid, "groups": obs.groups, "caps": obs.caps,
                     "cap_eff": obs.cap_eff, "no_new_privs": obs.no_new_privs, "root": obs.root,
                     "chrooted": obs.root != "/", "boundary": mode, "expected": want,
                     "mismatch": mism, "served": p.get("served", 0), "simulated_steps": would})
    return rows, mode


def cmd_ps(args: argparse.Namespace) -> int:
    inst = Instance(args.instance)
    rows, mode = observed_processes(inst)
    if args.json:
        print(json.dumps({"privilege_mode": mode, "processes": rows}, indent=1))
        return 0
    c = Console()
    if mode == privilege.SIMULATED:
        c.print("[bold]SIMULATED[/]: simmta is not running as root, so the uid/gid drops and the "
                "chroot below are NOT enforced by the kernel (run 'sudo simmta run' for the real thing)")
    t = Table("PID", "PPID", "SERVICE", "STATE", "UID r/e", "GID r/e", "GROUPS", "CAPS", "ROOT",
              "BOUNDARY", title=f"simmta processes ({mode})")
    for r in rows:
        flag = Text(" MISMATCH: " + "; ".join(r["mismatch"]), style="bold red") if r["mismatch"] else ""
        t.add_row(str(r["pid"]), str(r["ppid"]), r["service"], r["state"],
                  f"{r['uid'][0]}/{r['uid'][1]}", f"{r['gid'][0]}/{r['gid'][1]}",
                  ",".join(map(str, r["groups"])) or "-", r["caps"],
                  Text(r["root"]), Text.assemble(r["boundary"], flag))
    c.print(t)
    return 0
