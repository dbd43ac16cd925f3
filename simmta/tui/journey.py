"""Each message's journey: the hops it made across the map, each told in one plain sentence.

A message is one identity from its SMTP session on: events carry the session ID
(``sid``) before the queue ID exists and both after, so the first event with both
links them and the hops made under the session ID stay with the message.
``Journeys.apply(event, who)`` turns the events that move a message (a client
connects, an IPC request, a queue file written or moved, a delivery) into a
``Hop`` from one map node to another; ``Hop.told(who)`` says it in one
sentence when it is shown, ``who(service)`` telling how that service runs
("uid 61000 in the jail").

Pure Python, bounded (MAX_JOURNEYS messages, MAX_HOPS hops each).
Trust: event values are untrusted; every string kept went through ``text``.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from simmta.core import names
from simmta.core.events import safe_text

MAX_JOURNEYS = 500
MAX_HOPS = 40
LOG_SIZE = 300  # the newest hops of all messages, for the hop list
INTERNET = "internet"
MAILBOXES = "mailboxes"
PEER_MAILBOX = "peer-mailbox"


def text(value: Any, limit: int = 120) -> str:
    return "" if value is None else safe_text(value if isinstance(value, str) else str(value), limit)


@dataclass(frozen=True)
class Hop:
    ts: float
    seq: int
    src: str
    dst: str
    event: dict[str, Any]  # told in words only when shown: a burst must not pay for sentences

    def told(self, who: Callable[[str], str]) -> str:
        step = sentence(self.event, who)
        return step[2] if step else f"{self.src} → {self.dst}"


def retry_phrase(next_retry: Any, now: float) -> str:
    if not isinstance(next_retry, int | float):
        return ""
    seconds = max(0, int(next_retry - now))
    return (
        f", next try in {seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f", next try in {seconds}s"
    )


ROUTED = {
    ("smtp", "open"),
    ("ipc", "request"),
    ("queue", "created"),
    ("queue", "moved"),
    ("queue", "deferred"),
    ("delivery", "delivered"),
    ("delivery", "deferred"),
    ("delivery", "bounced"),
}


def nobody(service: str) -> str:
    return ""


def sentence(event: dict[str, Any], who: Callable[[str], str]) -> tuple[str, str, str] | None:
    """(source node, destination node, sentence) for an event that moves a message, else None."""
    kind, type_, data = event["kind"], event["type"], event.get("data") or {}
    service = text(event.get("service"), 40)
    qid = text(event.get("qid"), 32)

    def runs(name: str) -> str:
        how = who(name)
        return f"{name} ({how})" if how else name

    if kind == "smtp" and type_ == "open" and service == names.SMTPD:
        return INTERNET, service, f"a client at {text(data.get('client'), 60)} connected to {runs(service)}"
    if kind == "ipc" and type_ == "request":
        to = text(data.get("to"), 40)
        what = text(data.get("what"), 80)
        return service, to, f"{runs(service)} asked {runs(to)}: {what}"
    if kind == "queue" and type_ == "created":
        queue = text(data.get("queue"), 20)
        return service, queue, f"{runs(service)} wrote {queue}/{qid} and fsynced it before the 250 reply"
    if kind == "queue" and type_ == "moved":
        src, dst = text(data.get("from"), 20), text(data.get("to"), 20)
        return service, dst, f"{runs(service)} moved the queue file from {src}/ to {dst}/"
    if kind == "queue" and type_ == "deferred":
        phrase = retry_phrase(data.get("next_retry"), float(event.get("ts", 0)))
        reason = text(data.get("reason"), 80)
        return service, names.DEFERRED, f"{runs(service)} put it in deferred/ ({reason}){phrase}"
    if kind == "delivery" and type_ == "delivered":
        rcpt, via = text(data.get("rcpt"), 80), text(data.get("via"), 20)
        if via == names.SMTP:
            return (
                names.SMTP,
                names.PEER,
                f"{runs(names.SMTP)} handed the message for {rcpt} to the peer: 250",
            )
        where = text(data.get("where"), 60).split("/new/")[0]
        return names.LOCAL, MAILBOXES, f"{runs(names.LOCAL)} delivered to {rcpt} in {where}, fsync"
    if kind == "delivery" and type_ in ("deferred", "bounced"):
        dst = names.PEER if text(data.get("via"), 20) == names.SMTP else MAILBOXES
        reason = text(data.get("reason"), 80)
        return service, dst, f"{runs(service)} could not deliver to {text(data.get('rcpt'), 80)}: {reason}"
    return None


class Journeys:
    """Message identity -> its hops, oldest message forgotten first."""

    def __init__(self) -> None:
        self.hops: OrderedDict[str, list[Hop]] = OrderedDict()
        self.alias: OrderedDict[str, str] = OrderedDict()  # session ID -> queue ID
        self.log: deque[tuple[str, int, Hop]] = deque(maxlen=LOG_SIZE)  # (ident then, index, hop)
        self.changed = time.monotonic()  # when any journey last changed (for the views)

    def ident(self, event: dict[str, Any]) -> str | None:
        """The one name of the message an event is about (queue ID once known)."""
        qid, sid = text(event.get("qid"), 32), text(event.get("sid"), 40)
        if qid and sid and sid not in self.alias:
            self.alias[sid] = qid
            while len(self.alias) > MAX_JOURNEYS:
                self.alias.popitem(last=False)
            if sid in self.hops:  # the hops made before the queue ID existed
                self.hops[qid] = self.hops.pop(sid) + self.hops.get(qid, [])
        if qid:
            return qid
        return self.alias.get(sid, sid) or None

    def apply(self, event: dict[str, Any]) -> Hop | None:
        ident = self.ident(event)
        if ident is None or event["kind"] in ("snapshot", "privilege", "process"):
            return None
        if (event["kind"], event["type"]) not in ROUTED:
            return None
        step = sentence(event, nobody)
        if step is None:
            return None
        hop = Hop(float(event.get("ts", 0.0)), int(event.get("seq") or 0), step[0], step[1], event)
        hops = self.hops.setdefault(ident, [])
        hops.append(hop)
        del hops[:-MAX_HOPS]
        self.log.append((ident, len(hops) - 1, hop))
        self.hops.move_to_end(ident)
        while len(self.hops) > MAX_JOURNEYS:
            self.hops.popitem(last=False)
        self.changed = time.monotonic()
        return hop

    def of(self, ident: str | None) -> list[Hop]:
        if not ident:
            return []
        return self.hops.get(self.alias.get(ident, ident), [])

    def name(self, ident: str) -> str:
        """The message's name now (a session ID becomes its queue ID once that is known)."""
        return self.alias.get(ident, ident)

    def recent(self) -> Iterator[tuple[str, list[Hop]]]:
        """Journeys, the most recently moved first."""
        for ident in reversed(self.hops):
            yield ident, self.hops[ident]
