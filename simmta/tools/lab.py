"""``simmta lab compromise SERVICE`` and ``simmta lab compare``: the blast radius of a hole.

``compromise`` asks a running MTA (started with ``--lab``) to make one process
of SERVICE run the lab's fixed attacker script (simmta.core.compromise) and
prints each attempt with the kernel's answer. ``compare`` starts each profile
in turn on free loopback ports, runs the same script in its Internet-facing
SMTP process, and prints the profile x attempt matrix, each column labelled
with the privilege mode it was taken in; where the mode enforces nothing, the
cells are the predicted errnos, labelled "predicted, not enforced".

Trust: runs as the invoking user; talks to master's control socket only.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from simmta.core import compromise, control, privilege
from simmta.core.errors import SimmtaError
from simmta.core.instance import Instance
from simmta.core.pyexec import python_module
from simmta.core.services import PROFILES, load

START_TIMEOUT = 60.0


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("lab", parents=[parent], help="the compromise lab: what a hole in a daemon reaches")
    ls = p.add_subparsers(dest="lab", metavar="ACTION", required=True)
    c = ls.add_parser(
        "compromise",
        parents=[parent],
        help="make a process run the attacker script (needs 'simmta run --lab')",
    )
    c.add_argument("service", help="service or program name (smtpd, qmail-smtpd ...)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compromise)
    m = ls.add_parser(
        "compare", parents=[parent], help="the same script against the SMTP server of every profile"
    )
    m.add_argument("--json", action="store_true")
    m.add_argument(
        "--profile",
        action="append",
        choices=tuple(PROFILES),
        help="only these profiles (repeatable; default: all)",
    )
    m.set_defaults(func=cmd_compare)


def outcome_cells(report: dict[str, Any]) -> dict[str, str]:
    """attempt -> what to show: the kernel's answer, or the prediction where nothing is enforced."""
    if "predicted" in report:
        return {a: f"{o} (predicted)" for a, o in report["predicted"].items()}
    return {r["attempt"]: r["outcome"] for r in report["results"]}


def mode_label(report: dict[str, Any]) -> str:
    """How far the cells of one report are the kernel's: every view of the lab says it this way."""
    mode = report["mode"]
    if not privilege.uids_enforced(mode):
        return f"{mode}: predicted, not enforced"
    if mode == privilege.ROOTLESS:
        return (
            f"{mode}: the kernel's answers in a user namespace (its uids are host uids of the"
            " subordinate range; its root has no capability outside the namespace)"
        )
    return f"{mode}: the kernel's answers"


def account_label(report: dict[str, Any]) -> str:
    """The compromised process's account, and the host uid it really is where the two differ."""
    seen = report.get("privilege") or {}
    uid, host = seen.get("uid"), seen.get("host_uid")
    if uid and host and uid != host:
        return f"{report['account']} (host uid {host[1]})"
    return str(report["account"])


def render_compromise(report: dict[str, Any]) -> list[str]:
    who = f"{report['program']} [{report['pid']}] as {account_label(report)}" + (
        f" (set-uid {report['setuid']}, emulated)" if report.get("setuid") else ""
    )
    out = [f"compromised {who}, profile {report['profile']}, {mode_label(report)}"]
    predicted = report.get("predicted", {})
    for r in report["results"]:
        shown = (
            f"{predicted[r['attempt']]} predicted, not enforced (here: {r['outcome']})"
            if predicted
            else r["outcome"]
        )
        out.append(f"  {r['attempt']:<14} {shown:<10} {r['target']}: {r['detail']}")
    out.append(f"  net.ipv4.ip_unprivileged_port_start = {report['ip_unprivileged_port_start']}")
    return out


def render_matrix(reports: list[dict[str, Any]]) -> list[str]:
    cells = [outcome_cells(r) for r in reports]
    width = 2 + max(14, *(max(len(r["program"]), len("as " + account_label(r))) for r in reports))
    out = [
        " " * 15 + "".join(f"{r['profile']:<{width}}" for r in reports),
        " " * 15 + "".join(f"{r['program']:<{width}}" for r in reports),
        " " * 15 + "".join(f"{'as ' + account_label(r):<{width}}" for r in reports),
    ]
    for a in compromise.ATTEMPTS:
        out.append(f"{a:<15}" + "".join(f"{c.get(a, '-'):<{width}}" for c in cells))
    out += [f"{r['profile']}: {mode_label(r)}" for r in reports]
    out += [f"{a}: {t}" for a, t in compromise.TITLES.items()]
    return out


def cmd_compromise(args: argparse.Namespace) -> int:
    inst = Instance(args.instance)
    report = control.request(inst.control_socket, "compromise", timeout=30, service=args.service)
    report.pop("ok", None)
    if args.json:
        print(json.dumps(report))
    else:
        print("\n".join(render_compromise(report)))
    return 0


def compromise_profile(profile: str) -> dict[str, Any]:
    """Start ``profile`` with --lab in a temporary instance, compromise its SMTP server, stop it."""
    base = Path(tempfile.mkdtemp(prefix=f"simmta-lab-{profile}-"))
    base.chmod(0o711)  # as root, the daemons' uids must reach the queue below
    inst = Instance(base / "instance")
    log = open(base / "run.out", "wb")  # noqa: SIM115 (closed below)
    child = subprocess.Popen(
        python_module(
            "simmta", "run", "--instance", str(inst.path), "--smtp-port", "0", "--lab", "--profile", profile
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                inst.status()
                break
            except SimmtaError:
                if child.poll() is not None or time.monotonic() > deadline:
                    raise SimmtaError(
                        f"the {profile} MTA did not start: "
                        + (base / "run.out").read_text(errors="replace")[-400:]
                    ) from None
                time.sleep(0.05)
        service = load(None, profile).internet_facing().name
        report = control.request(inst.control_socket, "compromise", timeout=30, service=service)
        report.pop("ok", None)
        return report
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGTERM)
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(child.pid, signal.SIGKILL)
                child.wait()
        log.close()
        subprocess.run(
            python_module("simmta", "clean", "--instance", str(inst.path)), capture_output=True, timeout=60
        )
        shutil.rmtree(base, ignore_errors=True)


def cmd_compare(args: argparse.Namespace) -> int:
    reports = [compromise_profile(p) for p in (args.profile or PROFILES)]
    if args.json:
        print(json.dumps({"attempts": list(compromise.ATTEMPTS), "reports": reports}))
    else:
        print("\n".join(render_matrix(reports)))
    return 0
