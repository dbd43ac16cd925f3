"""The live state of one MTA as the lesson engine sees it: the core's fold, as goal records.

The state itself is ``simmta.core.fold``'s (the same fold the TUI draws);
this module only turns it into the records that goals of the form
``state = "processes" | "queue" | "services" | "status"`` test (``records()``),
with the convenience fields ruid/euid/rgid/egid on a process's privilege.

Trust: events are gossip from the MTA; nothing here uses a value as a path or
code, and the fold takes validated events only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simmta.core import fold

CONVENIENCE = ("ruid", "euid", "rgid", "egid")  # added to a process's privilege facts


def _privilege(raw: Mapping[str, Any]) -> dict[str, Any] | None:
    """A privilege record with the CONVENIENCE fields (None: not observed yet)."""
    if not raw:
        return None
    priv = dict(raw)
    for name in ("uid", "gid"):
        ids, letter = priv.get(name), name[0]
        if isinstance(ids, list) and len(ids) >= 2:
            priv[f"r{letter}id"], priv[f"e{letter}id"] = ids[0], ids[1]
    return priv


class LiveState:
    """Processes, queue contents, services and status of one running MTA."""

    def __init__(self) -> None:
        self.fold = fold.State()
        self.snapshot_seen = False

    def apply(self, event: Mapping[str, Any]) -> None:
        if event["kind"] == "snapshot":
            self.snapshot_seen = True
        self.fold = fold.apply(self.fold, event if isinstance(event, dict) else dict(event))

    @property
    def privilege_mode(self) -> str | None:
        return self.fold.privilege_mode if self.fold.started else None

    @property
    def status(self) -> dict[str, Any]:
        s = self.fold
        return {
            "privilege_mode": self.privilege_mode,
            "pace": s.pace["mode"],
            "faults": dict(s.faults),
            "lab": s.lab,
            "smtp": s.smtp or None,
            "peer": s.peer or None,
            "config": s.config,
        }

    def records(self, collection: str) -> list[dict[str, Any]]:
        s = self.fold
        if collection == "processes":
            return [
                {
                    "pid": p.pid,
                    "ppid": p.ppid,
                    "service": p.service,
                    "state": p.state,
                    "privilege": _privilege(p.privilege),
                }
                for p in s.processes.values()
            ]
        if collection == "queue":
            return [
                {
                    "qid": m.qid,
                    "queue": queue,
                    "size": m.size,
                    "sender": m.sender,
                    "recipients": m.recipients,
                    "arrival": m.arrival,
                    "next_retry": m.next_retry,
                    "reason": m.reason,
                }
                for queue in s.queues
                for m in s.in_queue(queue)
            ]
        if collection == "services":
            return list(s.services.values())
        if collection == "status":
            return [self.status]
        raise KeyError(collection)
