"""The live state of one MTA as the lesson engine sees it, rebuilt from the event stream.

The bus starts every subscription with a ``snapshot/state`` event; from then on
``apply()`` folds each live event into the state: processes come and go
(``process/spawned``, ``process/exited``), privileges are observed
(``privilege/observed``), messages move between queue directories
(``queue/created``, ``queue/moved``, ``queue/removed``), faults and pacing
change. Goals of the form ``state = "processes" | "queue" | "services" |
"status"`` are tested against ``records()``.

Trust: events are gossip from the MTA; nothing here uses a value as a path or
code, and malformed payloads are skipped rather than trusted.
"""

from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any


def _privilege(raw: Any) -> dict[str, Any] | None:
    """A privilege record with convenience fields: ruid/euid/rgid/egid."""
    if not isinstance(raw, Mapping):
        return None
    priv = dict(raw)
    for name in ("uid", "gid"):
        ids, letter = priv.get(name), name[0]
        if isinstance(ids, list) and len(ids) >= 2:
            priv[f"r{letter}id"], priv[f"e{letter}id"] = ids[0], ids[1]
        elif isinstance(ids, int) and not isinstance(ids, bool):
            priv[f"r{letter}id"] = priv[f"e{letter}id"] = ids
    return priv


REMEMBER_REMOVED = 10_000  # removed queue IDs remembered to spot late news about them


def _ts(event: Mapping[str, Any]) -> float:
    ts = event.get("ts")
    return float(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else 0.0


class LiveState:
    """Processes, queue contents, services and status of one running MTA."""

    def __init__(self) -> None:
        self.snapshot_seen = False
        self.processes: dict[int, dict[str, Any]] = {}
        self.queue: dict[str, dict[str, Any]] = {}  # qid -> {queue, qid, ...}
        self._placed_at: dict[str, float] = {}  # qid -> ts of the event that placed it
        self._removed: OrderedDict[str, float] = OrderedDict()  # qid -> ts of its removal
        self.services: list[dict[str, Any]] = []
        self.status: dict[str, Any] = {"privilege_mode": None, "pace": "live", "faults": {},
                                       "lab": False, "smtp": None, "peer": None, "config": {}}

    # -- reading
    def records(self, collection: str) -> list[dict[str, Any]]:
        if collection == "processes":
            return list(self.processes.values())
        if collection == "queue":
            return list(self.queue.values())
        if collection == "services":
            return list(self.services)
        if collection == "status":
            return [self.status]
        raise KeyError(collection)

    @property
    def privilege_mode(self) -> str | None:
        return self.status.get("privilege_mode")

    # -- folding events in
    def apply(self, event: Mapping[str, Any]) -> None:
        kind, type_, data = event.get("kind"), event.get("type"), event.get("data")
        if not isinstance(data, Mapping):
            return
        name = _HANDLERS.get((str(kind), str(type_)))  # untrusted names: a fixed table, not getattr
        if name is not None:
            with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
                getattr(self, name)(event, data)  # a malformed payload changes nothing

    def _on_snapshot_state(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        self.snapshot_seen = True
        self.processes = {}
        for p in data.get("processes") or []:
            if isinstance(p, Mapping) and isinstance(p.get("pid"), int):
                rec = copy.deepcopy(dict(p))
                rec["privilege"] = _privilege(p.get("privilege"))
                self.processes[p["pid"]] = rec
        self.queue, self._placed_at, self._removed = {}, {}, OrderedDict()
        queues = data.get("queues") or {}
        if isinstance(queues, Mapping):
            for name, items in queues.items():
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, Mapping) and isinstance(item.get("qid"), str):
                        self.queue[item["qid"]] = {**copy.deepcopy(dict(item)), "queue": name}
                        self._placed_at[item["qid"]] = _ts(event)
        services = data.get("services") or []
        self.services = [dict(s) for s in services if isinstance(s, Mapping)]
        for key in ("privilege_mode", "pace", "faults", "lab", "smtp", "peer", "config"):
            if key in data:
                self.status[key] = copy.deepcopy(data[key])

    def _on_master_started(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        for key in ("smtp", "peer", "privilege_mode"):
            self.status[key] = data[key]

    def _on_process_spawned(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        pid = int(data["child_pid"])
        self.processes[pid] = {"pid": pid, "ppid": event.get("pid"),
                               "service": data["child_service"], "state": "starting",
                               "privilege": None}

    def _on_process_exited(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        self.processes.pop(int(data["child_pid"]), None)

    def _on_process_state(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        proc = self.processes.get(event.get("pid"))  # type: ignore[arg-type]
        if proc is not None:
            proc["state"] = data["state"]

    def _on_privilege_observed(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        pid = int(data["observed_pid"])
        proc = self.processes.setdefault(pid, {"pid": pid, "ppid": data.get("ppid"),
                                               "service": data["observed_service"],
                                               "state": "running"})
        proc["privilege"] = _privilege({k: data[k] for k in (
            "uid", "gid", "groups", "caps", "root", "mode", "mismatch", "cap_eff",
            "no_new_privs") if k in data})

    # Queue events come from different processes (cleanup, qmgr, master) over
    # different sockets, so the bus may deliver them out of order: qmgr's "moved"
    # or even "removed" can arrive before cleanup's "created". Each message's
    # place is therefore decided by the events' own wall-clock times.
    def _place(self, event: Mapping[str, Any], queue: str, **fields: Any) -> None:
        qid, ts = event.get("qid"), _ts(event)
        if not isinstance(qid, str):
            return
        if self._removed.get(qid, -1.0) >= ts:
            return  # news from before the message left the queue
        rec = self.queue.setdefault(qid, {"qid": qid})
        for key, value in fields.items():
            if key in ("size", "sender", "recipients"):
                rec.setdefault(key, value)  # facts of the message: the first word stands
            else:
                rec[key] = value
        if ts >= self._placed_at.get(qid, -1.0):
            rec["queue"] = queue
            self._placed_at[qid] = ts

    def _on_queue_created(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        extra = {k: data[k] for k in ("sender", "recipients") if k in data}
        self._place(event, data["queue"], size=data["size"], **extra)

    def _on_queue_moved(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        self._place(event, data["to"])

    def _on_queue_removed(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        qid = event.get("qid")
        if not isinstance(qid, str) or self._placed_at.get(qid, -1.0) > _ts(event):
            return  # an older removal (a reused queue ID) arriving late
        self.queue.pop(qid, None)
        self._placed_at.pop(qid, None)
        self._removed[qid] = _ts(event)
        while len(self._removed) > REMEMBER_REMOVED:
            self._removed.popitem(last=False)

    def _on_queue_deferred(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        # qmgr reports a deferral with this event alone: the file is now in deferred/
        self._place(event, "deferred", next_retry=data["next_retry"], reason=data["reason"])

    def _on_queue_held(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        self._place(event, "hold")

    def _on_queue_released(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        self._place(event, "deferred")  # a released message is retried from deferred/

    def _on_fault_set(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        faults = self.status.setdefault("faults", {})
        if isinstance(faults, dict):
            faults[str(data.get("target") or data["fault"])] = data["value"]

    def _on_pace_mode(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        self.status["pace"] = data["mode"]


_HANDLERS = {(n.split("_")[2], "_".join(n.split("_")[3:])): n
             for n in vars(LiveState) if n.startswith("_on_")}
