"""``simmta ps``: every simmta process as the kernel sees it, from /proc.

master names the processes (pid, service); the privilege columns are read by
this tool itself from ``/proc/<pid>/status`` and ``/proc/<pid>/root`` (the
same fields you would read for a real Postfix), compared with the services
table, and any difference is flagged. In rootless and partial mode each uid is
shown twice: inside the user namespace and as the host sees it. What a mode
only simulates is said plainly on each row, as expected, not as an error.

Plain text, one row per process, fitted to the terminal (80 columns when
piped): the columns that cannot shrink come first, the note wraps below.

Trust: reads /proc; prints text inert.
"""

import argparse
import json
import shutil
import textwrap
from typing import Any

from simmta.core import control, names, privilege, userns
from simmta.core.events import safe_text
from simmta.core.instance import Instance


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ps", parents=[parent], help="processes with their observed privileges")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ps)


def observed_processes(inst: Instance) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    reply = control.request(inst.control_socket, "ps")
    cfg = inst.config()
    table = inst.services(reply.get("profile"))
    ids = {k: (v[0], v[1]) for k, v in reply.get("ids", {}).items()}  # as master allocated them
    setup = userns.Setup.from_dict(reply.get("privilege") or {"mode": reply["privilege_mode"]})
    master = next((int(p["pid"]) for p in reply["processes"] if p["service"] == "master"), None)
    ns = userns.NsView.of(master) if master else None
    rows = []
    for p in reply["processes"]:
        obs = privilege.observe(int(p["pid"]), ns)
        if obs is None:
            continue  # exited meanwhile
        svc = table.by_name.get(p["service"])
        want = privilege.expected(svc, cfg, inst.queue, setup, ids)
        rows.append(
            {
                "pid": obs.pid,
                "ppid": p["ppid"],
                "service": p["service"],
                "state": p["state"],
                "program": p.get("program", names.MASTER),
                "account": p.get("account", "root"),
                "setuid": p.get("setuid", ""),
                "life": p.get("life", "resident"),
                "uid": obs.uid,
                "gid": obs.gid,
                "host_uid": obs.host_uid,
                "host_gid": obs.host_gid,
                "groups": obs.groups,
                "caps": obs.caps,
                "cap_eff": obs.cap_eff,
                "no_new_privs": obs.no_new_privs,
                "root": obs.root,
                "chrooted": obs.root != "/",
                "boundary": setup.mode,
                "expected": want,
                "mismatch": privilege.mismatches(obs, want),
                "served": p.get("served", 0),
                "simulated_steps": privilege.simulated_steps(svc, cfg, inst.queue, setup.mode, ids),
            }
        )
    return rows, setup.as_dict()


def _root(path: str, inst: Instance) -> str:
    return "queue" if path == str(inst.queue) else path


def render(rows: list[dict[str, Any]], setup: dict[str, Any], inst: Instance, width: int) -> list[str]:
    out = [w for d in privilege.describe(setup) for w in textwrap.wrap(d, width, subsequent_indent="  ")]
    head = f"{'PID':>7} {'SERVICE':<8} {'STATE':<8} {'UID':>6} {'HOST UID':>9} {'GID':>6} {'ROOT':<6} CHECK"
    out.append(head)
    for r in rows:
        uid, host = r["uid"][1], r["host_uid"][1]  # effective ids
        check = "MISMATCH: " + "; ".join(r["mismatch"]) if r["mismatch"] else r["simulated_steps"] or "ok"
        line = (
            f"{r['pid']:>7} {safe_text(r['service'], 8):<8} {safe_text(r['state'], 8):<8} "
            f"{uid:>6} {host:>9} {r['gid'][1]:>6} {safe_text(_root(r['root'], inst), 40):<6} "
        )
        room = max(width - len(line), 20)
        wrapped = textwrap.wrap(safe_text(check, 400), room) or [""]
        out.append(line + wrapped[0])
        out += [" " * (width - room) + w for w in wrapped[1:]]
    out += textwrap.wrap(
        "UID: effective uid (inside the user namespace, if any); HOST UID: as the "
        f"host's kernel sees it; ROOT 'queue' is the chroot jail {inst.queue}",
        width,
    )
    return out


def programs(rows: list[dict[str, Any]], profile: dict[str, Any], width: int) -> list[str]:
    """What each service is in the profile's design, and the profile's notes."""
    out = [f"profile {profile.get('name', '?')} ({profile.get('title', '')}):"]
    seen = set()
    for r in rows:
        if r["service"] in seen:
            continue
        seen.add(r["service"])
        if r["service"] == names.MASTER:
            what = "simmta's master: scaffolding around the profile, not one of its processes"
        else:
            what = (
                f"{r['program']}, as {r['account']}"
                + (
                    f", set-uid {r['setuid']} (EMULATED: real uid {r['account']}, effective/saved "
                    f"{r['setuid']})"
                    if r["setuid"]
                    else ""
                )
                + f"; {r['life']}"
            )
        out += textwrap.wrap(
            f"{r['service']}: {safe_text(what, 300)}", width, initial_indent="  ", subsequent_indent="    "
        )
    for note in profile.get("notes", []):
        out += textwrap.wrap(
            f"note: {safe_text(note, 400)}", width, initial_indent="  ", subsequent_indent="    "
        )
    return out


def cmd_ps(args: argparse.Namespace) -> int:
    inst = Instance(args.instance)
    rows, setup = observed_processes(inst)
    profile = control.request(inst.control_socket, "status").get("profile_info") or {}
    if args.json:
        print(
            json.dumps(
                {
                    "privilege_mode": setup["mode"],
                    "privilege": setup,
                    "profile": profile.get("name"),
                    "processes": rows,
                },
                indent=1,
            )
        )
        return 0
    width = max(shutil.get_terminal_size((80, 24)).columns, 60)
    for line in render(rows, setup, inst, width) + programs(rows, profile, width):
        print(line)
    return 0
