"""``simmta events`` (follow the stream) and ``simmta record`` (save it).

Both are ordinary bus subscribers (only the instance owner or root is let in).
``simmta events --since 10m`` (or ``--from-start``) first prints what master's
bus kept of the recent past (simmta.master.history: only what was streamed
while someone watched, bounded), then stops, or with ``--follow`` goes on live.
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

from simmta.core import busclient, control, events, names
from simmta.core.config import _time as parse_time
from simmta.core.errors import SimmtaError
from simmta.core.events import read_recording
from simmta.core.instance import Instance
from simmta.core.records import KIND_TYPES, RECORDS


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("events", parents=[parent], help="follow the event stream")
    p.add_argument("--json", action="store_true", help="raw JSON lines")
    p.add_argument(
        "--kind",
        action="append",
        type=_kind,
        metavar="KIND[/TYPE]",
        help="only these kinds, or kind/type as printed (repeatable): " + ", ".join(RECORDS),
    )
    p.add_argument("--service", action="append", help="only these services (repeatable)")
    p.add_argument("--qid", help="only this queue ID (or SMTP session id)")
    p.add_argument("--count", type=int, help="stop after this many events")
    past = p.add_mutually_exclusive_group()
    past.add_argument(
        "--since",
        metavar="TIME",
        type=_duration,
        help="first show what happened in the last TIME (30s, 10m, 1h), then stop",
    )
    past.add_argument(
        "--from-start", action="store_true", help="first show everything the bus kept, then stop"
    )
    p.add_argument(
        "--follow",
        action="store_true",
        help="with --since/--from-start: go on with the live stream afterwards",
    )
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


def _kind(text: str) -> str:
    """A --kind value: a kind, or kind/type (the label the output prints)."""
    kind, _, type_ = text.partition("/")
    if kind in RECORDS and (not type_ or type_ in RECORDS[kind]):
        return text
    if kind in RECORDS:
        raise argparse.ArgumentTypeError(
            f"{kind!r} has no type {type_!r} (known: {kind}/" + f", {kind}/".join(RECORDS[kind]) + ")"
        )
    raise argparse.ArgumentTypeError(
        f"unknown kind {text!r} (known: {', '.join(RECORDS)}; or one of: {', '.join(KIND_TYPES)})"
    )


def check_services(args: argparse.Namespace, inst: Instance) -> None:
    """Refuse a --service that no process of this instance can be."""
    known = (names.MASTER, *(s.name for s in inst.services()))
    for name in args.service or ():
        if name not in known:
            raise SimmtaError(f"--service: unknown service {name!r} (known: {', '.join(known)})")


def matches(e: dict[str, Any], args: argparse.Namespace) -> bool:
    if (
        args.kind
        and e["kind"] != "snapshot"
        and e["kind"] not in args.kind
        and f"{e['kind']}/{e['type']}" not in args.kind
    ):
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


def _duration(text: str) -> float:
    try:
        seconds = parse_time(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0 s")
    return seconds


def history(inst: Instance, since: float | None) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """(raw line, event) of what the bus kept of the last ``since`` seconds (None: all)."""
    reply = control.request(inst.control_socket, "history", since=since)
    if not reply.get("complete", True):
        print(
            f"simmta: the bus's history does not reach that far back ({reply.get('forgotten')} "
            "older events were forgotten); what it kept follows",
            file=sys.stderr,
        )
    for text in reply.get("lines", []):
        raw = text.encode("utf-8", "replace")
        try:
            yield raw, events.parse_line(raw)
        except ValueError as e:
            print(f"simmta: history line skipped: {e}", file=sys.stderr)


def cmd_events(args: argparse.Namespace) -> int:
    inst = Instance(args.instance)
    check_services(args, inst)
    console = Console(highlight=False)
    seen, last_seq = 0, 0

    def show(raw: bytes, e: dict[str, Any]) -> bool:
        """Print one event if it matches; True when --count is reached."""
        nonlocal seen
        if not matches(e, args):
            return False
        if args.json:
            sys.stdout.buffer.write(raw)
            sys.stdout.flush()
        else:
            head = Text.assemble(
                (f"{e['seq']:>6} ", "dim"),
                (f"{e['service']:<8}", "bold"),
                f" {e['kind']}/{e['type']:<10} ",
                (f"{e.get('qid') or e.get('sid') or '-':<14} ", "cyan"),
            )
            console.print(head + describe(e))
        seen += 1
        return bool(args.count and seen >= args.count)

    if args.since is not None or args.from_start:
        for raw, e in history(inst, args.since):
            last_seq = max(last_seq, int(e.get("seq") or 0))
            if show(raw, e):
                return 0
        if not args.follow:
            return 0
    for raw, e in follow(inst):
        if e["kind"] != "snapshot" and int(e.get("seq") or 0) <= last_seq:
            continue  # already shown from the history
        if show(raw, e):
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
