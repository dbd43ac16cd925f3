"""``simmta ctl ...`` and ``simmta peer fault ...``: live control of a running MTA.

Everything goes through master's control socket (only the instance owner or
root may use it); see simmta.core.control for the operations.
"""

import argparse
import json
from typing import Any

from simmta.core import control
from simmta.core.control import LAB_ACTIONS, PACE_MODES, SIGNALS
from simmta.core.instance import Instance
from simmta.core.names import PEER_FAULTS


def register(sub: Any, instance: argparse.ArgumentParser) -> None:
    parent = argparse.ArgumentParser(add_help=False, parents=[instance])
    parent.add_argument("--json", action="store_true", help="master's answer as JSON")
    p = sub.add_parser("ctl", parents=[parent], help="live control: kill, faults, crash points, pacing, lab")
    cs = p.add_subparsers(dest="ctl", metavar="ACTION", required=True)
    k = cs.add_parser("kill", parents=[parent], help="signal a process of a service")
    k.add_argument("service")
    k.add_argument("--signal", default="TERM", type=str.upper, choices=SIGNALS)
    k.add_argument("--pid", type=int)
    k.set_defaults(func=lambda a: _do(a, "kill", service=a.service, signal=a.signal, pid=a.pid))
    f = cs.add_parser("fault", parents=[parent], help="inject a fault: peer MODE | queue full|none")
    f.add_argument("target", choices=("peer", "queue"))
    f.add_argument("value")
    f.set_defaults(func=lambda a: _do(a, "fault", target=a.target, value=a.value))
    c = cs.add_parser("crash", parents=[parent], help="arm a crash point (one shot), or 'off'")
    c.add_argument("service")
    c.add_argument("point")
    c.set_defaults(func=lambda a: _do(a, "crash", service=a.service, point=a.point))
    pc = cs.add_parser("pace", parents=[parent], help="pace hand-offs: live, slow or step")
    pc.add_argument("mode", choices=PACE_MODES)
    pc.add_argument("--delay-ms", type=int, default=500)
    pc.set_defaults(func=lambda a: _do(a, "pace", mode=a.mode, delay_ms=a.delay_ms))
    st = cs.add_parser("step", parents=[parent], help="release one waiting hop (step pacing)")
    st.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="if no hop is waiting yet, wait this long (at most 30 s) for one",
    )
    st.set_defaults(func=lambda a: _do(a, "step", wait=a.wait))
    lab = cs.add_parser("lab", parents=[parent], help="a lab attempt (needs 'simmta run --lab')")
    lab.add_argument("action", choices=LAB_ACTIONS)
    lab.add_argument("--service", default="smtpd")
    lab.set_defaults(func=lambda a: _do(a, "lab", action=a.action, service=a.service))
    sc = cs.add_parser(
        "scan",
        parents=[parent],
        help="list set-uid/set-gid files in the instance and in simmta's installation",
    )
    sc.set_defaults(func=_scan)

    p = sub.add_parser("peer", parents=[parent], help="the simulated Internet: set its fault")
    ps = p.add_subparsers(dest="peer", metavar="ACTION", required=True)
    f = ps.add_parser("fault", parents=[parent], help="none | down | tempfail | permfail | slow")
    f.add_argument("value", choices=PEER_FAULTS)
    f.set_defaults(func=lambda a: _do(a, "fault", target="peer", value=a.value))


def _scan(args: argparse.Namespace) -> int:
    reply = control.request(Instance(args.instance).control_socket, "scan", timeout=60)
    if args.json:
        print(json.dumps(reply))
        return 0
    print(f"scanned {reply['checked']} files under:")
    print("\n".join(f"  {root}" for root in reply["roots"]))
    print("set-uid or set-gid files: " + (", ".join(reply["setid"]) or "none"))
    print(f"maildrop/: {reply['maildrop']}")
    print(f"fs.protected_hardlinks = {reply['protected_hardlinks']}")
    return 0


def _do(args: argparse.Namespace, op: str, **fields: Any) -> int:
    inst = Instance(args.instance)
    fields = {k: v for k, v in fields.items() if v is not None}
    reply = control.request(inst.control_socket, op, **fields)
    if args.json:
        reply.pop("ok", None)
        print(json.dumps(reply))
    else:
        print(control.describe(op, fields, reply))
    return 0
