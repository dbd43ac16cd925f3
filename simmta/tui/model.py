"""What the viewer knows: a pure-Python model built from a snapshot plus events.

The TUI widgets render this model and nothing else; lessons can reuse it to
check a goal against state ("is the message in alice's Maildir?") without
Textual. ``Model.apply`` takes one validated event (schema v1, see
simmta.core.events); everything it keeps is bounded (ring buffers, capped
tables), so a burst of events cannot grow memory without limit.

Time is the events' own clock (``ts``): replays and snapshot tests are
deterministic, and a live viewer passes the wall clock only for countdowns.

Trust: events are gossip from processes that may be compromised. Every string
taken from an event is passed through ``events.safe_text`` before it is kept,
and the model never interprets it; unknown or odd payloads are logged, not
trusted.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from simmta.core import names, privilege
from simmta.core.events import safe_text
from simmta.tui.journey import Journeys
from simmta.tui.mapfacts import Result

LOG_SIZE = 2000  # events kept for the event log
HISTORY_SIZE = 200  # events kept per message
TRANSCRIPT_SIZE = 300  # lines kept per SMTP session
MAX_MESSAGES = 1000  # messages remembered (oldest finished ones forgotten first)
MAX_SESSIONS = 200  # SMTP sessions remembered
SERIES_SIZE = 120  # seconds of history behind each sparkline
HOPS_SIZE = 200  # recent hops kept, so a token stays visible on its edge a moment
LINGER = 2.0  # seconds a token stays drawn on the edge it just crossed
HELD = "⏸"  # marks a token held by pace step
FIGURES = ("accepted", "delivered", "deferred", "bounced", "rejected")


def text(value: Any, limit: int = 200) -> str:
    """Any event value as inert, bounded, single-line text."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(text(v, limit) for v in value[:20])
    return safe_text(value if isinstance(value, str | bytes) else str(value), limit)


@dataclass
class Process:
    pid: int
    service: str
    ppid: int = 0
    state: str = "starting"
    started: float = 0.0
    served: int = 0
    restarts: int = 0
    privilege: dict[str, Any] = field(default_factory=dict)

    @property
    def euid(self) -> int | None:
        uid = self.privilege.get("uid")
        return uid[1] if isinstance(uid, list) and len(uid) > 1 else None

    @property
    def egid(self) -> int | None:
        gid = self.privilege.get("gid")
        return gid[1] if isinstance(gid, list) and len(gid) > 1 else None

    @property
    def root(self) -> str:
        return text(self.privilege.get("root", "/"))

    @property
    def mode(self) -> str:
        return text(self.privilege.get("mode", ""))


@dataclass
class Message:
    qid: str
    sender: str = ""
    recipients: list[str] = field(default_factory=list)
    size: int = 0
    arrival: float = 0.0
    subject: str = ""
    headers: list[str] = field(default_factory=list)
    queue: str | None = None  # the queue directory it is in, if any
    edge: tuple[str, str] | None = None  # the IPC hop it is on, if any
    where: str | None = None  # the store it reached (delivered), if any
    next_retry: float | None = None
    reason: str = ""
    outcomes: dict[str, str] = field(default_factory=dict)  # rcpt -> delivered/deferred/...
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY_SIZE))
    done: bool = False

    @property
    def location(self) -> str:
        if self.edge:
            return f"{self.edge[0]} → {self.edge[1]}"
        return self.queue or self.where or ("gone" if self.done else "?")


@dataclass
class Session:
    sid: str
    service: str

    @property
    def key(self) -> str:
        return f"{self.service}/{self.sid}"

    client: str = ""
    helo: str = ""
    opened: float = 0.0
    closed: float | None = None
    qids: list[str] = field(default_factory=list)
    transcript: deque[tuple[str, str]] = field(
        default_factory=lambda: deque(maxlen=TRANSCRIPT_SIZE)
    )  # (">"|"<"|"!", line)


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
    """The state of one MTA as far as its event stream tells."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.services: dict[str, dict[str, Any]] = {}
        self.processes: dict[int, Process] = {}
        self.queues: dict[str, OrderedDict[str, None]] = {q: OrderedDict() for q in names.ALL_QUEUES}
        self.messages: OrderedDict[str, Message] = OrderedDict()
        self.sessions: OrderedDict[str, Session] = OrderedDict()
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_SIZE)
        self.counts: Counter[str] = Counter()
        self.stores: Counter[str] = Counter()  # deliveries per store (mailboxes, peer-mailbox)
        self.mailboxes: Counter[str] = Counter()  # local deliveries per user
        self.journeys = Journeys()
        self.results: deque[Result] = deque(maxlen=50)  # lab attempts, kills, crash points, faults
        self.restarts: Counter[str] = Counter()
        self.series: dict[str, deque[int]] = {
            k: deque([0] * SERIES_SIZE, maxlen=SERIES_SIZE) for k in (*FIGURES, "events", "queued")
        }
        self._second: int | None = None
        self.config: dict[str, Any] = {}
        self.privilege_mode = "unknown"
        self.privilege_note = ""  # what the mode enforces, what is missing, the command for more
        self.smtp: dict[str, Any] = {}
        self.peer: dict[str, Any] = {}
        self.pace: dict[str, Any] = {"mode": "live", "delay_ms": 0}
        # hops held by pace step: hop id -> (message label, from service, to service)
        self.waiting: dict[str, tuple[str, str, str]] = {}
        self.steps: dict[str, deque[tuple[str, str, str]]] = {}  # service -> privilege steps
        self.faults: dict[str, str] = {}
        self.lab = False
        self.lab_attempts: deque[dict[str, str]] = deque(maxlen=50)
        self.hops: deque[tuple[float, str, str, str]] = deque(maxlen=HOPS_SIZE)  # ts, label, src, dst
        self.throttled: dict[str, str] = {}
        self.dropped = 0  # events the bus or the viewer lost
        self.applied = 0
        self.last_seq = 0
        self.now = 0.0  # the newest event's ts
        self.started = False
        self.stopping = ""

    # Applying events -------------------------------------------------------
    def apply_all(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self.apply(event)

    def apply(self, event: dict[str, Any]) -> None:
        kind, type_ = event["kind"], event["type"]
        self.applied += 1
        self.last_seq = event.get("seq", self.last_seq)
        self.now = max(self.now, float(event.get("ts", self.now)))
        self._tick(int(self.now))
        self.series["events"][-1] += 1
        dropped = event.get("dropped_before")
        if isinstance(dropped, int) and dropped > 0:
            self.dropped += dropped
        if kind != "snapshot":
            self.log.append(event)
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(type_, event, event["data"])
        qid = event.get("qid")
        if qid and kind != "snapshot":
            self._message(qid).history.append(event)
        self.journeys.apply(event, self.who)

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
        for _ in range(max(gap, 0)):
            for key, series in self.series.items():
                series.append(self.queued if key == "queued" else 0)
        if gap > 0:
            self._second = second

    @property
    def second(self) -> int | None:
        """The second the newest sparkline bucket stands for."""
        return self._second

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def _message(self, qid: str) -> Message:
        qid = text(qid, 32)
        msg = self.messages.get(qid)
        if msg is None:
            msg = self.messages[qid] = Message(qid)
            self._forget_messages()
        return msg

    def _forget_messages(self) -> None:
        while len(self.messages) > MAX_MESSAGES:
            victim = next((q for q, m in self.messages.items() if m.done), None)
            victim = victim or next(iter(self.messages))
            msg = self.messages.pop(victim)
            if msg.queue:
                self.queues.get(msg.queue, OrderedDict()).pop(victim, None)

    def _place(self, msg: Message, queue: str | None) -> None:
        if msg.queue and msg.queue in self.queues:
            self.queues[msg.queue].pop(msg.qid, None)
        msg.queue = queue
        msg.edge = None
        if queue:
            self.queues.setdefault(queue, OrderedDict())[msg.qid] = None
        self.series["queued"][-1] = self.queued

    def _session(self, sid: str, service: str) -> Session:
        """The session of ``service`` with id ``sid``: the id follows a message from smtpd
        to the smtp client and the peer, so one id names one session per service."""
        sid, service = text(sid, 40), text(service, 40)
        key = f"{service}/{sid}"
        sess = self.sessions.get(key)
        if sess is None:
            sess = self.sessions[key] = Session(sid, service)
            while len(self.sessions) > MAX_SESSIONS:
                self.sessions.popitem(last=False)
        return sess

    # One handler per kind ---------------------------------------------------
    def _on_snapshot(self, type_: str, event: dict[str, Any], data: dict[str, Any]) -> None:
        self.reset()
        self.applied = 1
        self.now = float(event.get("ts", 0.0))
        self._second = int(self.now)
        self.services = {text(s.get("name")): s for s in data.get("services", []) if isinstance(s, dict)}
        for p in data.get("processes", []):
            if isinstance(p, dict) and isinstance(p.get("pid"), int):
                self.processes[p["pid"]] = Process(
                    pid=p["pid"],
                    service=text(p.get("service"), 40),
                    ppid=int(p.get("ppid") or 0),
                    state=text(p.get("state", "idle"), 20),
                    started=float(p.get("started") or 0),
                    served=int(p.get("served") or 0),
                    restarts=int(p.get("restarts") or 0),
                    privilege=dict(p.get("privilege") or {}),
                )
        for queue, entries in (data.get("queues") or {}).items():
            for e in entries if isinstance(entries, list) else []:
                if isinstance(e, dict) and e.get("qid"):
                    msg = self._message(e["qid"])
                    self._envelope(msg, e)
                    msg.next_retry = e.get("next_retry")
                    self._place(msg, text(queue, 20))
        self.config = dict(data.get("config") or {})
        self.privilege_mode = text(data.get("privilege_mode"), 20)
        setup = data.get("privilege")
        self.privilege_note = (text(" · ".join(privilege.describe(setup)), 800)
                               if isinstance(setup, dict) else "")
        self.smtp = dict(data.get("smtp") or {})
        self.peer = dict(data.get("peer") or {})
        self.pace = dict(data.get("pace") or self.pace)
        self.faults = {text(k, 20): text(v, 20) for k, v in (data.get("faults") or {}).items()}
        self.lab = bool(data.get("lab"))
        self.started = True

    def _envelope(self, msg: Message, data: dict[str, Any]) -> None:
        if "sender" in data:
            msg.sender = text(data["sender"]) or "<>"
        if isinstance(data.get("recipients"), list):
            msg.recipients = [text(r) for r in data["recipients"][:50]]
        if isinstance(data.get("size"), int):
            msg.size = data["size"]
        if isinstance(data.get("arrival"), int | float):
            msg.arrival = float(data["arrival"])
        if data.get("subject") is not None:
            msg.subject = text(data["subject"])
        if isinstance(data.get("headers"), list):
            msg.headers = [text(h) for h in data["headers"][:50]]

    def _on_master(self, type_: str, event: dict[str, Any], data: dict[str, Any]) -> None:
        if type_ == "started":
            self.smtp = dict(data.get("smtp") or {})
            self.peer = dict(data.get("peer") or {})
            self.privilege_mode = text(data.get("privilege_mode"), 20)
            self.started = True
        elif type_ == "stopping":
            self.stopping = text(data.get("reason")) or "stopping"

    def _on_process(self, type_: str, event: dict[str, Any], data: dict[str, Any]) -> None:
        if type_ == "spawned" and isinstance(data.get("child_pid"), int):
            self.processes[data["child_pid"]] = Process(
                pid=data["child_pid"],
                service=text(data["child_service"], 40),
                ppid=event["pid"],
                started=float(event["ts"]),
                restarts=self.restarts[text(data["child_service"], 40)],
            )
        elif type_ == "exited":
            self.processes.pop(data.get("child_pid"), None)  # type: ignore[arg-type]
        elif type_ == "replaced":
            self.restarts[text(data["child_service"], 40)] += 1
        elif type_ == "throttled":
            self.throttled[text(data["child_service"], 40)] = text(data.get("reason"))
        elif type_ in ("ready", "state"):
            proc = self.processes.get(event["pid"])
            if proc is None:
                proc = self.processes[event["pid"]] = Process(
                    event["pid"], text(event["service"], 40), started=float(event["ts"])
                )
            proc.state = "idle" if type_ == "ready" else text(data["state"], 20)
            if isinstance(data.get("served"), int):
                proc.served = data["served"]

    def _on_privilege(self, type_: str, event: dict[str, Any], data: dict[str, Any]) -> None:
        if type_ == "step":
            steps = self.steps.setdefault(text(event["service"], 40), deque(maxlen=8))
            steps.append((text(data["step"], 40), text(data["target"], 80), text(data["outcome"], 120)))
            return
        proc = self.processes.get(data.get("observed_pid"))  # type: ignore[arg-type]
        if proc is None and isinstance(data.get("observed_pid"), int):
            proc = self.processes[data["observed_pid"]] = Process(
                data["observed_pid"], text(data["observed_service"], 40), started=float(event["ts"])
            )
        if proc is not None:
            proc.privilege = {
                k: data.get(k)
                for k in ("uid", "gid", "groups", "caps", "root", "mode", "mismatch", "host_uid", "simulated")
            }

    def _on_queue(self, type_: str, event: dict[str, Any], data: dict[str, Any]) -> None:
        if not event.get("qid"):
            return
        msg = self._message(event["qid"])
        if type_ == "created":
            self._hop(event, text(event["service"], 40), text(data["queue"], 20))
            self._envelope(msg, data)
            msg.arrival = msg.arrival or float(event["ts"])
            self._place(msg, text(data["queue"], 20))
            if msg.queue == names.INCOMING:
                self.counts["accepted"] += 1
                self.series["accepted"][-1] += 1
        elif type_ == "moved":
            self._place(msg, text(data["to"], 20))
        elif type_ == "corrupt":
            self._place(msg, names.CORRUPT)
        elif type_ == "held":
            self._place(msg, names.HOLD)
        elif type_ == "released" and msg.queue == names.HOLD:
            self._place(msg, names.DEFERRED)  # master releases into deferred, then wakes qmgr
        elif type_ == "deferred":
            msg.next_retry = data["next_retry"] if isinstance(data["next_retry"], int | float) else None
            msg.reason = text(data["reason"])
            self._place(msg, names.DEFERRED)
        elif type_ == "removed":
            self._place(msg, None)
            msg.done = True

    def _hop(self, event: dict[str, Any], src: str, dst: str) -> None:
        """A message (or, before it has a queue ID, its SMTP session) crossed an edge."""
        label = event.get("qid") or event.get("sid")
        if label:
            self.hops.append((float(event["ts"]), text(label, 32), src, dst))

    def _on_ipc(self, type_: str, event: dict[str, Any], data: dict[str, Any]) -> None:
        hop = (text(event["service"], 40), text(data["to"], 40))
        if type_ == "request":
            self._hop(event, *hop)
        if not event.get("qid"):
            return
        msg = self._message(event["qid"])
        if type_ == "request":
            msg.edge = hop
        elif msg.edge == hop:  # the answer came back: the message left that hop
            msg.edge = None

    def _on_delivery(self, type_: str, event: dict[str, Any], data: dict[str, Any]) -> None:
        if type_ == "bounce":
            return
        rcpt = text(data["rcpt"])
        self.counts[type_] += 1
        self.series[type_][-1] += 1
        if event.get("qid"):
            msg = self._message(event["qid"])
            msg.outcomes[rcpt] = type_
            if type_ == "delivered":
                via = text(data["via"], 40)
                store = "peer-mailbox" if via == names.SMTP else "mailboxes"
                self._hop(
                    event,
                    *((names.SMTP, names.PEER) if via == names.SMTP else (names.LOCAL, "mailboxes")),
                )
                self.stores[store] += 1
                if store == "mailboxes":
                    self.mailboxes[rcpt.split("@")[0]] += 1
                msg.where, msg.edge = store, None
            else:
                msg.reason = text(data["reason"])

    def _on_smtp(self, type_: str, event: dict[str, Any], data: dict[str, Any]) -> None:
        sid = event.get("sid") or f"pid{event['pid']}"
        sess = self._session(sid, event["service"])
        if event.get("qid") and event["qid"] not in sess.qids:
            sess.qids.append(text(event["qid"], 32))
        if type_ == "open":
            sess.client, sess.opened = text(data["client"]), float(event["ts"])
            if event["service"] == names.SMTPD:
                self._hop(event, "internet", names.SMTPD)
        elif type_ == "close":
            sess.closed = float(event["ts"])
        elif type_ == "command":
            line = text(data["line"], 512)
            sess.transcript.append((">", line))
            if line[:5].upper() in ("EHLO ", "HELO "):
                sess.helo = line[5:].strip()
        elif type_ == "reply":  # a multi-line reply is one event, its lines joined by LF
            sess.transcript.extend(("<", text(line, 512)) for line in str(data["line"]).split("\n"))
        else:
            sess.transcript.append(
                (
                    "!",
                    f"{type_}: {text(data.get('code'))} {text(data.get('text') or data.get('limit'))}",
                )
            )
            if type_ == "reject":
                self.counts["rejected"] += 1
                self.series["rejected"][-1] += 1

    def _on_fault(self, type_: str, event: dict[str, Any], data: dict[str, Any]) -> None:
        ts = float(event["ts"])
        if type_ == "crash":
            point = text(data.get("point"), 40)
            self._result(ts, event["service"], f"crash point {point}", "reached: the process died there")
            return
        fault, value = text(data.get("fault"), 40), text(data.get("value"), 80)
        if fault in ("peer", "queue"):  # standing faults
            self.faults[fault] = value
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

    def _on_pace(self, type_: str, event: dict[str, Any], data: dict[str, Any]) -> None:
        if type_ == "mode":
            self.pace = {"mode": text(data["mode"], 10), "delay_ms": data["delay_ms"]}
            if self.pace["mode"] != "step":
                self.waiting.clear()
        elif type_ == "wait":
            label = text(event.get("qid") or event.get("sid") or "?", 32)
            self.waiting[text(data["hop"], 40)] = (
                label,
                text(event["service"], 40),
                text(data["to"], 40),
            )
            while len(self.waiting) > 50:
                del self.waiting[next(iter(self.waiting))]
        elif type_ == "go":
            self.waiting.pop(text(data["hop"], 40), None)

    def _on_lab(self, type_: str, event: dict[str, Any], data: dict[str, Any]) -> None:
        if type_ != "attempt":  # a compromise's report repeats its attempts, already shown
            return
        attempt = {k: text(data[k]) for k in ("action", "target", "outcome", "detail")}
        self.lab_attempts.append({"service": text(event["service"], 40), **attempt})
        outcome, ok = plain_outcome(attempt["outcome"], attempt["detail"])
        self._result(float(event["ts"]), event["service"], attempt["action"], outcome, ok)

    def _on_bus(self, type_: str, event: dict[str, Any], data: dict[str, Any]) -> None:
        if type_ == "dropped" and isinstance(data["count"], int):
            self.dropped += data["count"]

    # Questions the views (and lessons) ask --------------------------------
    def processes_of(self, service: str) -> list[Process]:
        return [p for p in self.processes.values() if p.service == service]

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
        return [self.messages[q] for q in self.queues.get(queue, ()) if q in self.messages]

    def retry_in(self, msg: Message, now: float | None = None) -> float | None:
        if msg.next_retry is None or msg.queue == names.HOLD:  # held mail is not retried until released
            return None
        return max(0.0, float(msg.next_retry) - (self.now if now is None else now))

    def delivered_to(self, store: str) -> int:
        return self.stores[store]
