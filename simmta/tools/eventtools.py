"""``simmta events`` (follow the stream) and ``simmta record`` (save it).

Both are ordinary bus subscribers (only the instance owner or root is let in).
A recording is the stream as JSON lines, snapshot first: the TUI replays it,
and it is the deterministic fixture for UI tests.

Trust: every line from the bus is validated before use; text is printed inert.
"""

import argparse
import sys
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.text import Text

from simmta.core import busclient, events
from simmta.core.errors import SimmtaError
from simmta.core.events import read_recording
from simmta.core.instance import Instance


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("events", parents=[parent], help="follow the event stream")
    p.add_argument("--json", action="store_true", help="raw JSON lines")
    p.add_argument("--kind", action="append", help="only these kinds (repeatable)")
    p.add_argument("--service", action="append", help="only these services (repeatable)")
    p.add_argument("--qid", help="only this queue ID (or SMTP session id)")
    p.add_argument("--count", type=int, help="stop after this many events")
    p.set_defaults(func=cmd_events)
    p = sub.add_parser("record", parents=[parent], help="record the event stream to a file")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.add_argument("--count", type=int, help="stop after this many events")
    p.set_defaults(func=cmd_record)


def follow(inst: Instance) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """(raw line, event) from the live bus, snapshot first."""
    try:
        sock = busclient.connect(inst.bus_socket)
    except OSError as e:
        raise SimmtaError(str(e)) from None
    for n, (raw, event, problem) in enumerate(busclient.lines(sock), 1):
        if event is None:
            print(f"simmta: bus line {n} skipped: {problem}", file=sys.stderr)
        else:
            yield raw, event
    raise SimmtaError("the bus closed the connection (master stopped, or refused us)")


def matches(e: dict[str, Any], args: argparse.Namespace) -> bool:
    if args.kind and e["kind"] not in args.kind and e["kind"] != "snapshot":
        return False
    if args.service and e["service"] not in args.service:
        return False
    return not args.qid or args.qid in (e.get("qid"), e.get("sid"))


def describe(e: dict[str, Any]) -> Text:
    data = e["data"]
    if e["kind"] == "snapshot":
        return Text(f"snapshot: {len(data['processes'])} processes, privilege {data['privilege_mode']}")
    parts = [f"{k}={v}" for k, v in data.items() if not isinstance(v, dict | list) or len(str(v)) < 80]
    return Text(" ".join(events.safe_text(p, 200) for p in parts))


def cmd_events(args: argparse.Namespace) -> int:
    inst = Instance(args.instance)
    console = Console(highlight=False)
    seen = 0
    for raw, e in follow(inst):
        if not matches(e, args):
            continue
        if args.json:
            sys.stdout.buffer.write(raw)
            sys.stdout.flush()
        else:
            head = Text.assemble((f"{e['seq']:>6} ", "dim"), (f"{e['service']:<8}", "bold"),
                                 f" {e['kind']}/{e['type']:<10} ",
                                 (f"{e.get('qid') or e.get('sid') or '-':<14} ", "cyan"))
            console.print(head + describe(e))
        seen += 1
        if args.count and seen >= args.count:
            break
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    inst = Instance(args.instance)
    n = 0
    with open(args.output, "wb") as out:
        try:
            for raw, _ in follow(inst):
                out.write(raw)
                out.flush()
                n += 1
                if args.count and n >= args.count:
                    break
        except SimmtaError:
            if n == 0:
                raise
    print(f"simmta: recorded {n} events to {args.output}", file=sys.stderr)
    return 0


__all__ = ["follow", "read_recording"]
