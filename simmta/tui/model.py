"""What the viewer knows: the one fold of the event stream, plus what only a view needs.

The TUI widgets render this model and nothing else. The state of the MTA
(processes, queues, messages, sessions, faults ...) is ``simmta.core.fold``'s,
the same fold the lessons check goals against; this module adds only what is
view-specific: the event log ring, per-second sparklines, counters, and the
recent hops that keep a token drawn on an edge a moment. ``Model.apply``
takes one validated event (see simmta.core.events); everything kept is
bounded, so a burst of events cannot grow memory without limit.

Time is the events' own clock (``ts``): replays and snapshot tests are
deterministic, and a live viewer passes the wall clock only for countdowns.

Trust: events are gossip from processes that may be compromised. Every string
kept is passed through ``events.safe_text`` (``fold.text``) and never interpreted.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

from simmta.core import fold, names, privilege
from simmta.core.fold import MAX_MESSAGES, Message, Process, Session, text
from simmta.tui.journey import Journeys
from simmta.tui.mapfacts import Result

LOG_SIZE = 2000  # events kept for the event log
SERIES_SIZE = 120  # seconds of history behind each sparkline
HOPS_SIZE = 200  # recent hops kept, so a token stays visible on its edge a moment
LINGER = 2.0  # seconds a token stays drawn on the edge it just crossed
HELD = "⏸"  # marks a token held by pace step
FIGURES = ("accepted", "delivered", "deferred", "bounced", "rejected")

__all__ = ["FIGURES", "HELD", "LOG_SIZE", "MAX_MESSAGES", "Message", "Model", "Process", "Session", "text"]

WHY = {"ENOENT": "outside the jail", "EACCES": "permission denied", "EPERM": "not permitted for this uid"}


def plain_outcome(outcome: str, detail: str) -> tuple[str, bool]:
    """A lab attempt's outcome in plain words, and whether it got through."""
    if outcome.startswith("refused (") and outcome.endswith(")"):
        code = outcome[len("refused (") : -1]
        return f"{code} ({WHY.get(code, detail)})", False
    if outcome == "succeeded":
        return f"SUCCEEDED: {detail}", True
    return f"{outcome}: {detail}".strip(": "), False


class Model:
    """The fold's state of one MTA, and the view's own rings and figures."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.state = fold.State()
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_SIZE)
        self.counts: Counter[str] = Counter()
        self.stores: Counter[str] = Counter()  # deliveries per store (mailboxes, peer-mailbox)
        self.mailboxes: Counter[str] = Counter()  # local deliveries per user
        self.journeys = Journeys()
        self.results: deque[Result] = deque(maxlen=50)  # lab attempts, kills, crash points, faults
        self.series: dict[str, deque[int]] = {
            k: deque([0] * SERIES_SIZE, maxlen=SERIES_SIZE) for k in (*FIGURES, "events", "queued")
        }
        self._second: int | None = None
        self.hops: deque[tuple[float, str, str, str]] = deque(maxlen=HOPS_SIZE)  # ts, label, src, dst

    # The fold's state, under the names the views use ---------------------
    processes = property(lambda self: self.state.processes)
    messages = property(lambda self: self.state.messages)
    sessions = property(lambda self: self.state.sessions)
    queues = property(lambda self: self.state.queues)
    services = property(lambda self: self.state.services)
    config = property(lambda self: self.state.config)
    privilege_mode = property(lambda self: self.state.privilege_mode)
    smtp = property(lambda self: self.state.smtp)
    peer = property(lambda self: self.state.peer)
    pace = property(lambda self: self.state.pace)
    waiting = property(lambda self: self.state.waiting)
    faults = property(lambda self: self.state.faults)
    lab = property(lambda self: self.state.lab)
    lab_attempts = property(lambda self: self.state.lab_attempts)
    throttled = property(lambda self: self.state.throttled)
    restarts = property(lambda self: self.state.restarts)
    dropped = property(lambda self: self.state.dropped)
    started = property(lambda self: self.state.started)
    stopping = property(lambda self: self.state.stopping)
    now = property(lambda self: self.state.now)
    applied = property(lambda self: self.state.applied)
    last_seq = property(lambda self: self.state.last_seq)

    @property
    def queued(self) -> int:
        return self.state.queued

    @property
    def privilege_note(self) -> str:
        """What the privilege mode enforces, what is missing, the command for more."""
        setup = self.state.privilege
        return text(" · ".join(privilege.describe(setup)), 800) if setup else ""

    @property
    def steps(self) -> dict[str, deque[tuple[str, str, str]]]:
        """Privilege steps per service (of its newest process)."""
        return {p.service: p.steps for p in sorted(self.processes.values(), key=lambda p: p.started)}

    # Applying events -------------------------------------------------------
    def apply_all(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self._apply(event)
        self.series["queued"][-1] = self.queued  # once per batch: it sums every queue

    def apply(self, event: dict[str, Any]) -> None:
        self.apply_all([event])

    def _apply(self, event: dict[str, Any]) -> None:
        kind, type_ = event["kind"], event["type"]
        if kind == "snapshot":
            self.reset()
        self.state = fold.apply(self.state, event)
        self._tick(int(self.state.now))
        self.series["events"][-1] += 1
        if kind == "snapshot":
            self._seed_delivered(self.state.delivered_before)
        else:
            self.log.append(event)
            view = _VIEW.get(kind)
            if view is not None:
                view(self, type_, event, event["data"])
        self.journeys.apply(event)

    def _seed_delivered(self, before: dict[str, int]) -> None:
        """Counters start from the instance's totals (its snapshot), not from zero at attach."""
        for mailbox, n in before.items():
            self.counts["delivered"] += n
            if mailbox == names.PEER:
                self.stores[names.PEER_MAILBOX] += n
            else:
                self.stores[names.MAILBOXES] += n
                self.mailboxes[mailbox] += n

    def who(self, service: str) -> str:
        """How a service runs as far as /proc says: "uid 61000 in the jail", "root", or ""."""
        procs = self.processes_of(service)
        uids = sorted({p.euid for p in procs if p.euid is not None})
        if not uids:
            return ""
        who = "/".join("root" if u == 0 else f"uid {u}" for u in uids)
        return who + (" in the jail" if any(p.root not in ("", "/") for p in procs) else "")

    def _tick(self, second: int) -> None:
        """Advance the per-second sparkline buckets to ``second``."""
        if self._second is None:
            self._second = second
            return
        gap = min(second - self._second, SERIES_SIZE)
        if gap <= 0:
            return
        queued = self.series["queued"][-1] = self.queued  # the second that ends: its queue at the end
        for _ in range(gap):
            for key, series in self.series.items():
                series.append(queued if key == "queued" else 0)
        self._second = second

    def advance_to(self, now: float) -> None:
        """Time passes with no events (a live viewer, each tick): the sparklines move on, at zero."""
        if self._second is not None:
            self._tick(int(now))

    @property
    def second(self) -> int | None:
        """The second the newest sparkline bucket stands for."""
        return self._second

    def _count(self, figure: str) -> None:
        self.counts[figure] += 1
        self.series[figure][-1] += 1

    def _hop(self, event: dict[str, Any], src: str, dst: str) -> None:
        """A message (or, before it has a queue ID, its SMTP session) crossed an edge."""
        label = event.get("qid") or event.get("sid")
        if label:
            self.hops.append((float(event["ts"]), text(label, 32), src, dst))

    # What the view adds per kind ---------------------------------------------
    def _on_queue(self, type_: str, event: dict[str, Any], data: dict[str, Any]) -> None:
        if type_ == "created" and event.get("qid"):
            self._hop(event, text(event["service"], 40), text(data["queue"], 20))
            if data["queue"] == names.INCOMING:
                self._count("accepted")

    def _on_ipc(self, type_: str, event: dict[str, Any], data: dict[str, Any]) -> None:
        if type_ == "request":
            self._hop(event, text(event["service"], 40), text(data["to"], 40))

    def _on_delivery(self, type_: str, event: dict[str, Any], data: dict[str, Any]) -> None:
        if type_ == "bounce":
            return
        self._count(type_)
        if type_ == "delivered":
            via = text(data["via"], 40)
            store = fold.store_of(via)
            self.stores[store] += 1
            if store == names.MAILBOXES:
                self.mailboxes[text(data["rcpt"]).split("@")[0]] += 1
            src, dst = (names.SMTP, names.PEER) if via == names.SMTP else (names.LOCAL, names.MAILBOXES)
            self._hop(event, src, dst)

    def _on_smtp(self, type_: str, event: dict[str, Any], data: dict[str, Any]) -> None:
        if type_ == "open" and event["service"] == names.SMTPD:
            self._hop(event, "internet", names.SMTPD)
        elif type_ == "reject":
            self._count("rejected")

    def _on_fault(self, type_: str, event: dict[str, Any], data: dict[str, Any]) -> None:
        ts = float(event["ts"])
        if type_ == "crash":
            point = text(data.get("point"), 40)
            self._result(ts, event["service"], f"crash point {point}", "reached: the process died there")
            return
        fault, value = text(data.get("fault"), 40), text(data.get("value"), 80)
        if fault in ("peer", "queue"):  # standing faults (the fold keeps them)
            target = names.PEER if fault == "peer" else names.CLEANUP
            self._result(ts, target, f"{fault} fault", "cleared" if value == "none" else value)
        elif fault == "kill":
            signal = value.split(" ")[0]
            self._result(
                ts, data.get("child_service") or "", "kill", f"{signal} to pid {data.get('child_pid')}"
            )
        elif fault.startswith("crash "):
            self._result(ts, fault[6:], f"crash point {value}", "armed (one shot)")

    def _result(self, ts: float, service: Any, what: str, outcome: str, ok: bool = False) -> None:
        self.results.append(Result(ts, text(service, 40), what, outcome, ok))

    def _on_lab(self, type_: str, event: dict[str, Any], data: dict[str, Any]) -> None:
        if type_ != "attempt":  # a compromise's report repeats its attempts, already shown
            return
        attempt = {k: text(data[k]) for k in ("action", "target", "outcome", "detail")}
        outcome, ok = plain_outcome(attempt["outcome"], attempt["detail"])
        self._result(float(event["ts"]), event["service"], attempt["action"], outcome, ok)

    # Questions the views (and lessons) ask --------------------------------
    def processes_of(self, service: str) -> list[Process]:
        return self.state.processes_of(service)

    def on_edges(self, now: float | None = None) -> dict[tuple[str, str], list[str]]:
        """Per hop: messages on it now, and those that crossed it in the last LINGER seconds."""
        now = self.now if now is None else now
        out: dict[tuple[str, str], list[str]] = {}
        for m in self.messages.values():
            if m.edge and not m.done:
                out.setdefault(m.edge, []).append(m.qid)
        for label, a, b in self.waiting.values():  # held by pace step: shown paused
            out.setdefault((a, b), []).append(f"{HELD}{label}")
        for ts, label, a, b in reversed(self.hops):
            if now - ts > LINGER:
                break
            if label not in out.setdefault((a, b), []):
                out[(a, b)].append(label)
        return out

    def on_edge(self, src: str, dst: str, now: float | None = None) -> list[str]:
        return self.on_edges(now).get((src, dst), [])

    def in_queue(self, queue: str) -> list[Message]:
        return self.state.in_queue(queue)

    def retry_in(self, msg: Message, now: float | None = None) -> float | None:
        if msg.next_retry is None or msg.queue == names.HOLD:  # held mail is not retried until released
            return None
        return max(0.0, float(msg.next_retry) - (self.now if now is None else now))

    def delivered_to(self, store: str) -> int:
        return self.stores[store]


_VIEW = {
    n[4:]: getattr(Model, n)
    for n in ("_on_queue", "_on_ipc", "_on_delivery", "_on_smtp", "_on_fault", "_on_lab")
}
