"""The one fold of the event stream: ``apply(state, event) -> state``.

Every view and every check reads the state this module builds from a snapshot
and the events after it: the TUI's model (which adds only what is
view-specific: rings, sparklines, selection), the lesson goal engine, and any
tool. It is deterministic (no clock, no I/O: time is the events' own ``ts``),
bounded (capped tables and rings), and imports nothing but the core.

What it keeps: processes (pid, service, observed privilege, state, restarts,
privilege steps), the queues (per-queue contents), messages (session id,
queue ID, where they are, the hops they took, each recipient's outcome),
SMTP sessions, standing faults, lab outcomes, pacing, and drops. ``design()``
reads from it what tells one architecture from another (processes, distinct
uids, root, chrooted, set-uid programs), for the trilogy view.

Order: an event arrives after its causes (the bus streams in the order of
its order tokens), and a message's place follows the stream, guarded so that
state per message only moves forward: a "created" that comes after the
message was already placed elsewhere does not move it back, and a removed
message is not revived by late news. Lamport clocks cannot decide this: qmgr
learns of a message from the queue directory, a channel that carries no
clock, so its "moved" and "removed" may bear lower clocks than cleanup's
"created" (a burst left 49 of 50 delivered messages "in incoming" that way). When the bus
says events about a message were lost (``bus/dropped`` naming its queue ID),
the message is marked ``incomplete`` instead of guessed at.

Trust: events are gossip. Every string kept is passed through
``events.safe_text``; a malformed event (one that fails its record) changes
nothing, since callers hand the fold validated events only.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simmta.core import names, records
from simmta.core.events import safe_text
from simmta.core.records import KIND_TYPES

MAX_MESSAGES = 1000  # messages remembered (oldest finished ones forgotten first)
MAX_SESSIONS = 200  # SMTP sessions remembered
HISTORY_SIZE = 200  # events kept per message
TRANSCRIPT_SIZE = 300  # lines kept per SMTP session
STEPS_SIZE = 8  # privilege steps kept per process
MAX_WAITING = 50  # hops held by pace step
LAB_SIZE = 50  # lab attempts kept
DROPS_SIZE = 20  # drop notices kept


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
    # as /proc said (privilege/observed), then kept current by the process's own steps
    privilege: dict[str, Any] = field(default_factory=dict)
    steps: deque[tuple[str, str, str]] = field(default_factory=lambda: deque(maxlen=STEPS_SIZE))

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
    sid: str | None = None  # the SMTP session it arrived in
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
    outcomes: dict[str, str] = field(default_factory=dict)  # rcpt -> delivered/deferred/bounced
    hops: list[tuple[str, str]] = field(default_factory=list)  # (from, to) in the order taken
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY_SIZE))
    clock: int = -1  # Lamport clock of the event that last placed it
    done: bool = False  # removed from the queue
    incomplete: bool = False  # events about it were lost: its story has gaps

    @property
    def location(self) -> str:
        if self.edge:
            return f"{self.edge[0]} → {self.edge[1]}"
        return self.queue or self.where or ("gone" if self.done else "?")


@dataclass
class Session:
    sid: str
    service: str
    client: str = ""
    helo: str = ""
    opened: float = 0.0
    closed: float | None = None
    qids: list[str] = field(default_factory=list)
    transcript: deque[tuple[str, str]] = field(
        default_factory=lambda: deque(maxlen=TRANSCRIPT_SIZE)
    )  # (">"|"<"|"!", line)

    @property
    def key(self) -> str:
        return f"{self.service}/{self.sid}"


@dataclass(frozen=True)
class Design:
    """What tells one MTA architecture from another, as the stream shows it running."""

    processes: int  # the profile's processes (scaffolding and the simulated Internet left out)
    observed: int  # of them, those whose privilege /proc was read for
    uids: int  # distinct uids (real, effective, saved, filesystem) among the observed
    root: int  # observed with real uid 0
    chrooted: int  # observed with a root directory other than /
    setuid: tuple[str, ...]  # programs the table marks set-uid (emulated: see services)


# simmta's own processes around any profile: not part of the design being shown
SCAFFOLDING = (names.MASTER, names.SPAWNER)


@dataclass
class Drop:
    count: int
    where: str
    qids: list[str]


@dataclass
class State:
    """One MTA as far as its event stream tells."""

    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    processes: dict[int, Process] = field(default_factory=dict)
    queues: dict[str, OrderedDict[str, None]] = field(
        default_factory=lambda: {q: OrderedDict() for q in names.ALL_QUEUES}
    )
    messages: OrderedDict[str, Message] = field(default_factory=OrderedDict)
    sessions: OrderedDict[str, Session] = field(default_factory=OrderedDict)
    config: dict[str, Any] = field(default_factory=dict)
    privilege_mode: str = "unknown"
    privilege: dict[str, Any] = field(default_factory=dict)  # master's privilege setup
    smtp: dict[str, Any] = field(default_factory=dict)
    peer: dict[str, Any] = field(default_factory=dict)
    pace: dict[str, Any] = field(default_factory=lambda: {"mode": "live", "delay_ms": 0})
    waiting: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # hop -> label, from, to
    faults: dict[str, str] = field(default_factory=dict)  # standing faults: peer, queue
    lab: bool = False
    lab_attempts: deque[dict[str, str]] = field(default_factory=lambda: deque(maxlen=LAB_SIZE))
    throttled: dict[str, str] = field(default_factory=dict)
    restarts: Counter[str] = field(default_factory=Counter)
    dropped: int = 0  # events the bus, a channel or the viewer lost
    drops: deque[Drop] = field(default_factory=lambda: deque(maxlen=DROPS_SIZE))
    # letters per mailbox (user, or "peer") when the snapshot was taken: the instance's
    # deliveries before this stream began (its events after it count the rest)
    delivered_before: dict[str, int] = field(default_factory=dict)
    started: bool = False  # a snapshot (or master/started) was seen
    stopping: str = ""
    now: float = 0.0  # the newest event's ts
    applied: int = 0
    last_seq: int = 0

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def in_queue(self, queue: str) -> list[Message]:
        return [self.messages[q] for q in self.queues.get(queue, ()) if q in self.messages]

    def processes_of(self, service: str) -> list[Process]:
        return [p for p in self.processes.values() if p.service == service]

    def message(self, qid: str) -> Message:
        """The message with this queue ID (remembered from now on)."""
        qid = text(qid, 32)
        msg = self.messages.get(qid)
        if msg is None:
            msg = self.messages[qid] = Message(qid)
            while len(self.messages) > MAX_MESSAGES:
                victim = next((q for q, m in self.messages.items() if m.done), None) or next(
                    iter(self.messages)
                )
                gone = self.messages.pop(victim)
                if gone.queue:
                    self.queues.get(gone.queue, OrderedDict()).pop(victim, None)
        return msg

    def session(self, sid: str, service: str) -> Session:
        """The session of ``service`` with id ``sid`` (the id follows a message from smtpd
        to the smtp client and the peer, so one id names one session per service)."""
        sid, service = text(sid, 40), text(service, 40)
        key = f"{service}/{sid}"
        sess = self.sessions.get(key)
        if sess is None:
            sess = self.sessions[key] = Session(sid, service)
            while len(self.sessions) > MAX_SESSIONS:
                self.sessions.popitem(last=False)
        return sess


def design(state: State) -> Design:
    """The design's numbers, from the processes the fold holds and the services table."""
    internet = {n for n, s in state.services.items() if s.get("role") == "internet"}
    procs = [p for p in state.processes.values() if p.service not in (*SCAFFOLDING, *internet)]
    seen = [p for p in procs if isinstance(p.privilege.get("uid"), list) and p.privilege["uid"]]
    return Design(
        processes=len(procs),
        observed=len(seen),
        uids=len({u for p in seen for u in p.privilege["uid"]}),
        root=sum(1 for p in seen if p.privilege["uid"][0] == 0),
        chrooted=sum(1 for p in seen if p.root != "/"),
        setuid=tuple(text(s.get("program") or n, 40) for n, s in state.services.items() if s.get("setuid")),
    )


Handler = Callable[[State, dict[str, Any], dict[str, Any]], None]
_HANDLERS: dict[str, Handler] = {}


def _on(*kind_types: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for kt in kind_types:
            assert kt in KIND_TYPES, kt  # only what the records declare
            _HANDLERS[kt] = fn
        return fn

    return register


def apply(state: State, event: dict[str, Any]) -> State:
    """Fold one validated event into ``state`` (updated in place) and return it."""
    if event["kind"] == "snapshot":
        state = State()
    state.applied += 1
    state.last_seq = event.get("seq", state.last_seq)
    state.now = max(state.now, float(event.get("ts", state.now)))
    handler = _HANDLERS.get(f"{event['kind']}/{event['type']}")
    if handler is not None:
        handler(state, event, event["data"])
    qid = event.get("qid")
    if qid and event["kind"] != "snapshot":
        state.message(qid).history.append(event)
    return state


def _clock(event: dict[str, Any]) -> int:
    clock = event.get("clock")
    return clock if isinstance(clock, int) else 0


def place(state: State, msg: Message, queue: str | None, event: dict[str, Any] | None = None) -> None:
    """Put ``msg`` in ``queue`` (None: out of the queue), unless it was removed already."""
    if event is not None:
        msg.clock = max(msg.clock, _clock(event))
    if msg.done:
        return  # late news about a removed message does not revive it
    if msg.queue and msg.queue in state.queues:
        state.queues[msg.queue].pop(msg.qid, None)
    msg.queue = queue
    msg.edge = None
    if queue:
        state.queues.setdefault(queue, OrderedDict())[msg.qid] = None


def _envelope(msg: Message, data: dict[str, Any]) -> None:
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


@_on("snapshot/state")
def _snapshot(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    state.now = float(event.get("ts", 0.0))
    state.services = {text(s.get("name")): s for s in data["services"] if isinstance(s, dict)}
    for p in data["processes"]:
        if isinstance(p, dict) and isinstance(p.get("pid"), int):
            state.processes[p["pid"]] = Process(
                pid=p["pid"],
                service=text(p.get("service"), 40),
                ppid=int(p.get("ppid") or 0),
                state=text(p.get("state", "idle"), 20),
                started=float(p.get("started") or 0),
                served=int(p.get("served") or 0),
                restarts=int(p.get("restarts") or 0),
                privilege=dict(p.get("privilege") or {}),
            )
    for queue, entries in data["queues"].items():
        for e in entries if isinstance(entries, list) else []:
            if isinstance(e, dict) and e.get("qid"):
                msg = state.message(e["qid"])
                _envelope(msg, e)
                msg.next_retry = e.get("next_retry")
                if isinstance(e.get("sid"), str):
                    msg.sid = e["sid"]
                place(state, msg, text(queue, 20))
    state.config = dict(data["config"])
    state.privilege_mode = text(data["privilege_mode"], 20)
    state.privilege = dict(data["privilege"])
    state.smtp = dict(data["smtp"] or {})
    state.peer = dict(data["peer"] or {})
    state.pace = dict(data["pace"] or state.pace)
    state.faults = {text(k, 20): text(v, 20) for k, v in data["faults"].items()}
    state.lab = bool(data["lab"])
    delivered = data.get("delivered") or {}
    state.delivered_before = {text(k, 40): n for k, n in list(delivered.items())[:100] if isinstance(n, int)}
    state.started = True


@_on("master/started")
def _master_started(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    state.smtp = dict(data["smtp"] or {})
    state.peer = dict(data["peer"] or {})
    state.privilege_mode = text(data["privilege_mode"], 20)
    state.started = True


@_on("master/stopping")
def _master_stopping(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    state.stopping = text(data["reason"]) or "stopping"


@_on("process/spawned")
def _spawned(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    service = text(data["child_service"], 40)
    state.processes[data["child_pid"]] = Process(
        pid=data["child_pid"],
        service=service,
        ppid=event["pid"],
        started=float(event["ts"]),
        restarts=state.restarts[service],
    )


@_on("process/exited")
def _exited(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    state.processes.pop(data["child_pid"], None)


@_on("process/replaced")
def _replaced(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    state.restarts[text(data["child_service"], 40)] += 1


@_on("process/throttled")
def _throttled(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    state.throttled[text(data["child_service"], 40)] = text(data["reason"])


def _own_process(state: State, event: dict[str, Any]) -> Process:
    proc = state.processes.get(event["pid"])
    if proc is None:  # its spawn is older than the snapshot, or was lost
        proc = state.processes[event["pid"]] = Process(
            event["pid"], text(event["service"], 40), started=float(event["ts"])
        )
    return proc


@_on("process/ready", "process/state")
def _process_state(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    proc = _own_process(state, event)
    proc.state = "idle" if event["type"] == "ready" else text(data["state"], 20)
    if isinstance(data.get("served"), int):
        proc.served = data["served"]


# A step that changes an id: which id list, and which of its slots (real, effective, saved, fs).
_STEP_IDS = {
    "setuid": ("uid", (0, 1, 2, 3)),
    "setgid": ("gid", (0, 1, 2, 3)),
    "seteuid": ("uid", (1, 3)),
    "setegid": ("gid", (1, 3)),
}


@_on("privilege/step")
def _step(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    proc = _own_process(state, event)
    proc.steps.append((text(data["step"], 40), text(data["target"], 80), text(data["outcome"], 120)))
    which = _STEP_IDS.get(data["step"])
    target = data["target"]
    if which and data["outcome"] == "done" and isinstance(target, int) and proc.privilege:
        name, slots = which
        ids = list(proc.privilege.get(name) or [])
        if len(ids) == 4:  # what the kernel now says, as the process changed it itself
            for i in slots:
                ids[i] = target
            proc.privilege = {**proc.privilege, name: ids}


# What master's reading of /proc says of a process (the record's fields but whose and what the
# table expected): a process's ``privilege`` in the fold, and what lessons' goals may test.
_NOT_FACTS = ("observed_pid", "observed_service", "expected")
PRIVILEGE_FACTS = tuple(f for f in records.PrivilegeObserved.__struct_fields__ if f not in _NOT_FACTS)


@_on("privilege/observed")
def _observed(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    pid = data["observed_pid"]
    proc = state.processes.get(pid)
    if proc is None:
        proc = state.processes[pid] = Process(
            pid, text(data["observed_service"], 40), started=float(event["ts"])
        )
    proc.privilege = {k: data[k] for k in PRIVILEGE_FACTS}


@_on("queue/created")
def _created(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    if not event.get("qid"):
        return
    msg = state.message(event["qid"])
    if msg.done and _clock(event) > msg.clock:  # the queue ID was reused: a new message
        msg = state.messages[msg.qid] = Message(msg.qid)
    if isinstance(event.get("sid"), str):
        msg.sid = event["sid"]
        sess = state.session(event["sid"], names.SMTPD)
        if msg.qid not in sess.qids:
            sess.qids.append(msg.qid)
    _envelope(msg, data)
    msg.arrival = msg.arrival or float(event["ts"])
    msg.hops.append((text(event["service"], 40), text(data["queue"], 20)))
    if msg.queue is None:  # a late "created" does not move a message back
        place(state, msg, text(data["queue"], 20), event)


@_on("queue/moved")
def _moved(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    if event.get("qid"):
        place(state, state.message(event["qid"]), text(data["to"], 20), event)


@_on("queue/corrupt")
def _corrupt(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    if event.get("qid"):
        place(state, state.message(event["qid"]), names.CORRUPT, event)


@_on("queue/held")
def _held(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    if event.get("qid"):
        place(state, state.message(event["qid"]), names.HOLD, event)


@_on("queue/released")
def _released(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    if event.get("qid"):  # master releases into deferred, then wakes qmgr
        place(state, state.message(event["qid"]), names.DEFERRED, event)


@_on("queue/deferred")
def _deferred(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    if event.get("qid"):
        msg = state.message(event["qid"])
        msg.next_retry = float(data["next_retry"])
        msg.reason = text(data["reason"])
        place(state, msg, names.DEFERRED, event)


@_on("queue/removed")
def _removed(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    if event.get("qid"):
        msg = state.message(event["qid"])
        place(state, msg, None, event)
        msg.done = True


@_on("ipc/request", "ipc/response")
def _ipc(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    if not event.get("qid"):
        return
    hop = (text(event["service"], 40), text(data["to"], 40))
    msg = state.message(event["qid"])
    if event["type"] == "request":
        msg.edge = hop
        msg.hops.append(hop)
    elif msg.edge == hop:  # the answer came back: the message left that hop
        msg.edge = None


def store_of(via: str) -> str:
    """Where a delivery agent's deliveries land."""
    return names.PEER_MAILBOX if via == names.SMTP else names.MAILBOXES


@_on("delivery/delivered", "delivery/deferred", "delivery/bounced")
def _delivery(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    if not event.get("qid"):
        return
    msg = state.message(event["qid"])
    msg.outcomes[text(data["rcpt"])] = event["type"]
    if event["type"] == "delivered":
        msg.where, msg.edge = store_of(text(data["via"], 40)), None
        msg.hops.append((text(event["service"], 40), msg.where))
    else:
        msg.reason = text(data["reason"])


@_on("smtp/open", "smtp/close", "smtp/command", "smtp/reply", "smtp/limit", "smtp/reject")
def _smtp(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    sess = state.session(event.get("sid") or f"pid{event['pid']}", event["service"])
    qid = event.get("qid")
    if qid and qid not in sess.qids:
        sess.qids.append(text(qid, 32))
    type_ = event["type"]
    if type_ == "open":
        sess.client, sess.opened = text(data["client"]), float(event["ts"])
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
            ("!", f"{type_}: {text(data.get('code'))} {text(data.get('text') or data.get('limit'))}")
        )


@_on("fault/set")
def _fault(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    if data["fault"] in ("peer", "queue"):  # kill and crash notices are events, not standing faults
        state.faults[text(data["fault"], 20)] = text(data["value"], 20)


@_on("pace/mode")
def _pace_mode(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    state.pace = {"mode": text(data["mode"], 10), "delay_ms": data["delay_ms"]}
    if state.pace["mode"] != "step":
        state.waiting.clear()


@_on("pace/wait")
def _pace_wait(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    label = text(event.get("qid") or event.get("sid") or "?", 32)
    state.waiting[text(data["hop"], 40)] = (label, text(event["service"], 40), text(data["to"], 40))
    while len(state.waiting) > MAX_WAITING:
        del state.waiting[next(iter(state.waiting))]


@_on("pace/go")
def _pace_go(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    state.waiting.pop(text(data["hop"], 40), None)


@_on("lab/attempt")
def _lab(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    attempt = {k: text(data[k]) for k in ("action", "target", "outcome", "detail")}
    state.lab_attempts.append({"service": text(event["service"], 40), **attempt})


@_on("bus/dropped")
def _dropped(state: State, event: dict[str, Any], data: dict[str, Any]) -> None:
    qids = [text(q, 32) for q in data.get("qids") or ()]
    state.dropped += data["count"]
    state.drops.append(Drop(data["count"], text(data["where"]), qids))
    for qid in qids:  # what was lost is not guessed at
        state.message(qid).incomplete = True
