"""Queue tools: ``queue`` (mailq / postqueue -j), ``cat`` (postcat), and
``hold | release | requeue | delete`` (postsuper).

Listing and reading open the queue files directly (root, the instance owner in
simulated or partial mode, or the owner inside the rootless instance's user
namespace, which ``simmta`` enters first); changes go through master, which performs them and emits
the events, as postsuper is the administrator's (root's) tool.

Trust: queue files are parsed with the checking reader; text is printed inert.
"""

import argparse
import json
import os
import time
from typing import Any

from rich.console import Console
from rich.markup import escape

from simmta.core import control, names
from simmta.core import queue as qf
from simmta.core.errors import SimmtaError
from simmta.core.events import safe_text
from simmta.core.instance import Instance

LISTED = (names.INCOMING, names.ACTIVE, names.DEFERRED, names.HOLD, names.CORRUPT)


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("queue", parents=[parent], help="list queued mail (like mailq / postqueue -j)")
    p.add_argument("--json", action="store_true", help="one JSON object per message, like postqueue -j")
    p.set_defaults(func=cmd_queue, in_namespace=True)
    p = sub.add_parser("cat", parents=[parent], help="print a queue file (like postcat)")
    p.add_argument("qid")
    p.set_defaults(func=cmd_cat, in_namespace=True)
    p = sub.add_parser(
        "flush",
        parents=[parent],
        help="deliver deferred mail now, release throttled services (like postqueue -f)",
    )
    p.set_defaults(func=cmd_flush)
    for action, text in (
        ("hold", "put a message on hold"),
        ("release", "release a held message"),
        ("requeue", "retry a deferred, held or corrupt message now"),
        ("delete", "delete a message from the queue"),
    ):
        p = sub.add_parser(action, parents=[parent], help=f"{text} (like postsuper)")
        p.add_argument("qid")
        p.set_defaults(func=cmd_change, action=action)


def list_queue(inst: Instance) -> list[dict[str, Any]]:
    out = []
    for q in LISTED:
        try:
            entries = sorted(os.scandir(inst.queue / q), key=lambda e: e.name)
        except PermissionError:
            raise SimmtaError(
                f"cannot read {inst.queue / q}: the queue belongs to mail_owner "
                "(run as root, like postqueue/postsuper)"
            ) from None
        except FileNotFoundError:
            continue
        for e in entries:
            if not qf.is_qid(e.name):
                continue
            try:
                msg = qf.read(inst.queue / q / e.name, require_complete=q != names.INCOMING)
            except qf.CorruptQueueFile as err:
                out.append({"queue_name": q, "queue_id": e.name, "damaged": str(err), "recipients": []})
                continue
            reasons = {
                r.get("address"): r.get("reason") for r in qf.read_status(inst.queue, names.DEFER_LOG, e.name)
            }
            item: dict[str, Any] = {
                "queue_name": q,
                "queue_id": e.name,
                "arrival_time": int(msg.arrival),
                "message_size": msg.content_length,
                "sender": msg.sender,
                "recipients": [
                    {
                        "address": r.address,
                        **({"delay_reason": reasons[r.address]} if r.address in reasons else {}),
                    }
                    for r in msg.pending
                ],
            }
            if q == names.DEFERRED:
                item["next_retry"] = int(msg.mtime)
            out.append(item)
    return out


def cmd_queue(args: argparse.Namespace) -> int:
    inst = Instance(args.instance)
    items = list_queue(inst)
    if args.json:
        for item in items:
            print(json.dumps(item))
        return 0
    if not items:
        print("Mail queue is empty")
        return 0
    c = Console(highlight=False)
    c.print("-Queue ID-  -Queue-    --Size-- ----Arrival Time---- -Sender/Recipient-------")
    for it in items:
        when = time.strftime("%a %b %d %H:%M:%S", time.localtime(it.get("arrival_time", 0)))
        mark = {"active": "*", "hold": "!"}.get(it["queue_name"], " ")
        c.print(
            escape(
                f"{it['queue_id']}{mark:<2} {it['queue_name']:<9} {it.get('message_size', 0):>8} "
                f"{when}  {safe_text(it.get('sender') or 'MAILER-DAEMON')}"
            )
        )
        if "damaged" in it:
            c.print(escape(f"{'':>43}(damaged: {it['damaged']})"))
        for r in it["recipients"]:
            if "delay_reason" in r:
                c.print(escape(f"{'':>43}({safe_text(r['delay_reason'], 100)})"))
            c.print(escape(f"{'':>43}{safe_text(r['address'])}"))
    c.print(f"-- {len(items)} message(s)")
    return 0


def cmd_cat(args: argparse.Namespace) -> int:
    inst = Instance(args.instance)
    if not qf.is_qid(args.qid):
        raise SimmtaError(f"not a queue ID: {safe_text(args.qid, 40)}")
    found = qf.find(inst.queue, args.qid, names.MESSAGE_QUEUES)
    if found is None:
        raise SimmtaError(f"no message {args.qid} in the queue")
    queue_name, path = found
    try:
        msg = qf.read(path, require_complete=False)
    except qf.CorruptQueueFile as e:
        raise SimmtaError(f"{path}: damaged queue file: {e}") from None
    except PermissionError:
        raise SimmtaError(f"cannot read {path}: run as root (like postcat)") from None
    print(f"*** ENVELOPE RECORDS {queue_name}/{msg.qid} ***")
    print(f"message_size: {msg.content_length:>16}")
    print(f"message_arrival_time: {time.ctime(msg.arrival)}")
    for k, v in msg.attrs.items():
        print(f"named_attribute: {k}={safe_text(str(v))}")
    print(f"sender: {safe_text(msg.sender)}")
    for r in msg.recipients:
        print(f"{'done_recipient' if r.done else 'recipient'}: {safe_text(r.address)}")
    content = msg.content()
    sep = content.find(b"\n\n")
    head, body = (content[: sep + 1], content[sep + 2 :]) if sep >= 0 else (content, b"")
    print("*** MESSAGE CONTENTS ***")
    for line in head.decode("utf-8", "replace").splitlines():
        print(safe_text(line, 2000))
    print("*** HEADER EXTRACTED / BODY ***")
    for line in body.decode("utf-8", "replace").splitlines():
        print(safe_text(line, 2000))
    print("*** RECORDS (type offset length) ***")
    for kind, offset, length in msg.records:
        print(f"{kind} {offset:>8} {length:>8}")
    print(f"*** MESSAGE FILE END {queue_name}/{msg.qid} ***")
    return 0


def cmd_change(args: argparse.Namespace) -> int:
    inst = Instance(args.instance)
    if not qf.is_qid(args.qid):
        raise SimmtaError(f"not a queue ID: {safe_text(args.qid, 40)}")
    reply = control.request(inst.control_socket, "queue", action=args.action, qid=args.qid)
    src, dst = reply.get("from", reply.get("deleted_from")), reply.get("to", "deleted")
    print(f"{args.qid}: {src} -> {dst}")
    return 0


def cmd_flush(args: argparse.Namespace) -> int:
    reply = control.request(Instance(args.instance).control_socket, "flush")
    released = ", ".join(reply.get("released") or []) or "none"
    print(
        f"flush: {reply.get('deferred', 0)} deferred message(s) due now; throttled services released: "
        f"{released}"
    )
    return 0
