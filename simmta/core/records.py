"""The event vocabulary, declared once: one typed record per kind/type.

Every event a process emits is one of the records below (msgspec Structs):
its class says the kind and type, its fields are the event's ``data``.
A field without a default is required; a field with one is optional and
left out of the JSON when it has its default. Everything else is derived
from these classes: the bus's validation (``events.validate``), the lesson
validator's field names, ``simmta events --kind``, and the schema reference
``docs/events.md`` (``python -m simmta.core.records`` writes it).

Emitters construct records (``ctx.emit(QueueCreated(queue=..., size=...), qid)``);
decoding a record checks every field's type and refuses unknown fields. Text and
lists are bounded (MAX_TEXT, MAX_ITEMS) where a record is encoded (``cut``: the
emitter, ``events.make``, and master's bus for what a daemon sends).

Trust: a record decoded from the stream is well-formed, not true: events are
gossip from processes that may be compromised.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar, TypeVar

import msgspec

MAX_TEXT = 512  # characters kept of any text field
MAX_ITEMS = 256  # items kept of any list field


class Record(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """One event's payload. Subclasses set KIND (via their kind's base) and TYPE."""

    KIND: ClassVar[str] = ""
    TYPE: ClassVar[str] = ""
    DOC: ClassVar[str] = ""

    # (No __post_init__: msgspec would run it on every decode too, master's and each
    # subscriber's, to cut what is already cut; ``cut`` bounds a record where it is encoded.)


R = TypeVar("R", bound=Record)


def cut(record: R) -> R:
    """The record with its fields cut to the bounds (``record`` itself when within them).

    Applied where a record is encoded (``events.make``, the emitter, master's bus for a
    child's line), never on decode."""
    changes = {
        name: short
        for name in record.__struct_fields__
        if (short := bounded(value := getattr(record, name))) is not value
    }
    return msgspec.structs.replace(record, **changes) if changes else record


def bounded(value: Any) -> Any:
    """A field's value cut to the bounds (``value`` itself when within them): text at
    MAX_TEXT characters and "…", lists at MAX_ITEMS items, and the text in them."""
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "…"
    if isinstance(value, list) and (
        len(value) > MAX_ITEMS or any(isinstance(v, str) and len(v) > MAX_TEXT for v in value)
    ):
        return [bounded(v) if isinstance(v, str) else v for v in value[:MAX_ITEMS]]
    return value


# ---------------------------------------------------------------- process


class _Process(Record):
    KIND = "process"


class ProcessSpawned(_Process):
    """master started a child."""

    TYPE = "spawned"
    child_pid: int
    child_service: str
    total: int  # children of that service now


class ProcessReady(_Process):
    """A daemon dropped privilege and is about to serve."""

    TYPE = "ready"


class ProcessExited(_Process):
    """master reaped a child."""

    TYPE = "exited"
    child_pid: int
    child_service: str
    status: str  # "exit N" or "killed by SIGNAME"
    served: int
    restarts: int | None = None


class ProcessReplaced(_Process):
    """master started a replacement for a child that died."""

    TYPE = "replaced"
    old_pid: int
    new_pid: int
    child_service: str


class ProcessThrottled(_Process):
    """A service that cannot start is not restarted until ``until`` (Unix time)."""

    TYPE = "throttled"
    child_service: str
    until: float
    reason: str


class ProcessLimit(_Process):
    """A service reached its process limit (maxproc)."""

    TYPE = "limit"
    child_service: str
    limit: int
    warning: str


class ProcessState(_Process):
    """A daemon's state: busy / idle (after a connection), error, failed (at start-up)."""

    TYPE = "state"
    state: str
    served: int | None = None
    error: str | None = None


# ---------------------------------------------------------------- privilege


class _Privilege(Record):
    KIND = "privilege"


class PrivilegeStep(_Privilege):
    """A process changed (or, simulated, would change) its privilege."""

    TYPE = "step"
    step: str  # chroot, setgroups, setgid, setuid, regain-root, seteuid, setegid, restore
    target: str | int | list[int]
    mode: str  # real / simulated
    outcome: str


class PrivilegeObserved(_Privilege):
    """What /proc says about a child, read by master."""

    TYPE = "observed"
    observed_pid: int
    observed_service: str
    uid: list[int]  # real, effective, saved, filesystem
    gid: list[int]
    groups: list[int]
    caps: str  # none / partial / full
    root: str
    host_uid: list[int]  # the same ids as the host's kernel sees them (= uid outside a namespace)
    host_gid: list[int]
    no_new_privs: bool
    mode: str  # the privilege mode (real / rootless / partial / simulated)
    mismatch: list[str]
    expected: dict[str, Any]
    simulated: str  # what the table asks that this mode only reports ('' when all is enforced)


# ---------------------------------------------------------------- queue


class _Queue(Record):
    KIND = "queue"


class QueueCreated(_Queue):
    """cleanup wrote a queue file (complete and fsynced next)."""

    TYPE = "created"
    queue: str
    size: int
    sender: str
    recipients: list[str]  # the first 20
    origin: str  # smtpd / pickup / bounce
    subject: str


class QueueMoved(_Queue):
    """A queue file moved between queues."""

    TYPE = "moved"
    from_: str = msgspec.field(name="from")
    to: str
    reason: str | None = None
    via: str | None = None  # the administrator's action (requeue)


class QueueRemoved(_Queue):
    """A queue file is gone (delivered, bounced, deleted, or never completed)."""

    TYPE = "removed"
    queue: str
    reason: str


class QueueCorrupt(_Queue):
    """A queue file that cannot be parsed went to corrupt/."""

    TYPE = "corrupt"
    queue: str
    reason: str


class QueueHeld(_Queue):
    """The administrator put a message on hold."""

    TYPE = "held"
    via: str


class QueueReleased(_Queue):
    """The administrator released a held message."""

    TYPE = "released"
    via: str


class QueueDeferred(_Queue):
    """qmgr moved a message to deferred/ until ``next_retry`` (Unix time)."""

    TYPE = "deferred"
    next_retry: float
    reason: str


class QueueFlush(_Queue):
    """``simmta flush`` (postqueue -f): deferred mail is due now, throttled services are released."""

    TYPE = "flush"
    deferred: int  # messages in deferred/
    released: list[str]  # services no longer throttled


# ---------------------------------------------------------------- smtp


class _Smtp(Record):
    KIND = "smtp"


class SmtpOpen(_Smtp):
    """An SMTP connection opened."""

    TYPE = "open"
    client: str


class SmtpClose(_Smtp):
    """An SMTP connection closed."""

    TYPE = "close"
    client: str


class SmtpCommand(_Smtp):
    """A command line (``peer``: sent by the smtp client to the next hop)."""

    TYPE = "command"
    line: str
    peer: bool = False


class SmtpReply(_Smtp):
    """A reply; a multi-line reply's lines joined by LF (``events.reply_text``)."""

    TYPE = "reply"
    line: str
    peer: bool = False


class SmtpLimit(_Smtp):
    """A limit was hit (Postfix's parameter name in ``limit``)."""

    TYPE = "limit"
    limit: str
    code: str
    hops: int | None = None
    kept: int | None = None
    client: str | None = None  # the client a per-client limit counted


class SmtpReject(_Smtp):
    """smtpd (or the peer) refused something."""

    TYPE = "reject"
    code: str
    text: str


# ---------------------------------------------------------------- ipc


class _Ipc(Record):
    KIND = "ipc"


class IpcRequest(_Ipc):
    """A hand-off to another daemon begins."""

    TYPE = "request"
    to: str
    what: str


class IpcResponse(_Ipc):
    """The other daemon answered (``outcome``: its status, or what went wrong)."""

    TYPE = "response"
    to: str
    what: str
    outcome: str


# ---------------------------------------------------------------- delivery


class _Delivery(Record):
    KIND = "delivery"


class DeliveryDelivered(_Delivery):
    """One recipient delivered (``where``: the mailbox file, or the next hop's reply)."""

    TYPE = "delivered"
    rcpt: str
    via: str
    where: str
    dsn: str


class DeliveryDeferred(_Delivery):
    """One recipient deferred: try again later."""

    TYPE = "deferred"
    rcpt: str
    via: str
    reason: str
    dsn: str


class DeliveryBounced(_Delivery):
    """One recipient failed for good."""

    TYPE = "bounced"
    rcpt: str
    via: str
    reason: str
    dsn: str | None = None


class DeliveryBounce(_Delivery):
    """bounce queued a delivery status notification (``dsn_qid``) for ``orig_qid``."""

    TYPE = "bounce"
    orig_qid: str
    sender: str
    recipients: list[str]
    dsn_qid: str | None = None


# ---------------------------------------------------------------- fault, lab, pace


class _Fault(Record):
    KIND = "fault"


class FaultSet(_Fault):
    """A presenter set a fault (peer, queue), armed a crash point or sent a signal."""

    TYPE = "set"
    fault: str
    value: str
    child_service: str | None = None
    child_pid: int | None = None


class FaultCrash(_Fault):
    """A daemon dies here on purpose (an armed crash point)."""

    TYPE = "crash"
    point: str


class _Lab(Record):
    KIND = "lab"


class LabAttempt(_Lab):
    """A daemon tried what privilege should forbid; the kernel's answer."""

    TYPE = "attempt"
    action: str
    target: str
    outcome: str
    detail: str
    compromise: bool = False  # one step of the compromise lab's attacker script


class LabScan(_Lab):
    """simmta ctl scan: set-uid/set-gid files under ``roots``, maildrop's mode, protected_hardlinks."""

    TYPE = "scan"
    roots: list[str]
    setid: list[str]  # the set-uid or set-gid files found (the first 50)
    checked: int  # files looked at
    maildrop: str
    protected_hardlinks: str


class LabReport(_Lab):
    """The compromise lab's attacker script ran in a daemon: every outcome, in order."""

    TYPE = "report"
    results: list[dict[str, Any]]
    mode: str


class _Pace(Record):
    KIND = "pace"


class PaceMode(_Pace):
    """The presenter changed the pace (live / slow / step)."""

    TYPE = "mode"
    mode: str
    delay_ms: int


class PaceWait(_Pace):
    """A daemon waits at a hop for the presenter's step."""

    TYPE = "wait"
    hop: int
    to: str
    what: str


class PaceGo(_Pace):
    """master released a waiting hop."""

    TYPE = "go"
    hop: int
    pid: int


# ---------------------------------------------------------------- disk


class _Disk(Record):
    KIND = "disk"


class DiskFsync(_Disk):
    """A daemon fsynced a file or a directory for a message (with ``disk_events = true``)."""

    TYPE = "fsync"
    path: str  # its last two parts: incoming/QID, new (a Maildir's new/)
    directory: bool


class DiskRename(_Disk):
    """A daemon renamed a file for a message (with ``disk_events = true``)."""

    TYPE = "rename"
    src: str
    dst: str


class DiskLink(_Disk):
    """A daemon hard-linked a file for a message: Maildir tmp/ to new/ (``disk_events = true``)."""

    TYPE = "link"
    src: str
    dst: str


# ---------------------------------------------------------------- bus, snapshot, master


class _Bus(Record):
    KIND = "bus"


class BusDropped(_Bus):
    """``count`` events were lost ``where`` (a full channel or a slow subscriber)."""

    TYPE = "dropped"
    count: int
    where: str
    qids: list[str] = msgspec.field(default_factory=list)  # messages whose events were lost (if known)


class BusSubscriber(_Bus):
    """A subscriber joined (master), or a daemon heard that someone watches."""

    TYPE = "subscriber"
    action: str
    subscriber: str


class _Snapshot(Record):
    KIND = "snapshot"


class SnapshotState(_Snapshot):
    """The first event a subscriber gets: master's view of everything now."""

    TYPE = "state"
    services: list[dict[str, Any]]
    processes: list[dict[str, Any]]
    queues: dict[str, Any]
    queue_counts: dict[str, int]
    config: dict[str, Any]
    privilege_mode: str
    privilege: dict[str, Any]  # the privilege setup (mode, namespace, uid ranges)
    smtp: Any
    peer: Any
    pace: dict[str, Any]
    faults: dict[str, str]
    lab: bool
    instance: str
    queue_dir: str
    profile: dict[str, Any]  # the architecture profile (postfix, qmail, sendmail)
    ids: dict[str, tuple[int, int]]  # uid and gid of every account the profile names
    # letters in each mailbox (user, or "peer") as master counted new/ and cur/: what was
    # delivered before this subscriber came (delivery events are sent only while someone watches)
    delivered: dict[str, int] = msgspec.field(default_factory=dict)


class _Master(Record):
    KIND = "master"


class MasterStarted(_Master):
    """master is up (its listening addresses)."""

    TYPE = "started"
    smtp: Any
    peer: Any
    privilege_mode: str
    privilege: list[str]  # the privilege mode in plain words


class MasterStopping(_Master):
    """master is shutting down."""

    TYPE = "stopping"
    reason: str


# ---------------------------------------------------------------- derived tables


def _leaves(cls: type[Record]) -> list[type[Record]]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub] if sub.TYPE else _leaves(sub)
    return out


ALL: tuple[type[Record], ...] = tuple(_leaves(Record))
# kind -> type -> record class, in declaration order
RECORDS: dict[str, dict[str, type[Record]]] = {}
for _cls in ALL:
    RECORDS.setdefault(_cls.KIND, {})[_cls.TYPE] = _cls
KIND_TYPES: tuple[str, ...] = tuple(f"{c.KIND}/{c.TYPE}" for c in ALL)


def record_class(kind: str, type_: str) -> type[Record] | None:
    return RECORDS.get(kind, {}).get(type_)


def field_names(cls: type[Record]) -> tuple[str, ...]:
    """The record's fields as they are named in JSON."""
    return tuple(f.encode_name for f in msgspec.structs.fields(cls))


def required(cls: type[Record]) -> tuple[str, ...]:
    return tuple(f.encode_name for f in msgspec.structs.fields(cls) if f.required)


def structured(cls: type[Record]) -> tuple[str, ...]:
    """Fields that hold a table or a list (a dotted path may go below them)."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    out = []
    for f in info.fields:
        t = f.type
        kinds = t.types if isinstance(t, msgspec.inspect.UnionType) else (t,)
        if any(
            isinstance(k, msgspec.inspect.ListType | msgspec.inspect.DictType | msgspec.inspect.AnyType)
            for k in kinds
        ):
            out.append(f.encode_name)
    return tuple(out)


def _type_name(t: msgspec.inspect.Type) -> str:
    if isinstance(t, msgspec.inspect.UnionType):
        return " | ".join(_type_name(x) for x in t.types)
    if isinstance(t, msgspec.inspect.ListType):
        return f"list[{_type_name(t.item_type)}]"
    if isinstance(t, msgspec.inspect.DictType):
        return f"table[{_type_name(t.key_type)}, {_type_name(t.value_type)}]"
    return {
        "StrType": "string",
        "IntType": "integer",
        "FloatType": "number",
        "BoolType": "boolean",
        "NoneType": "null",
        "AnyType": "any",
    }.get(type(t).__name__, type(t).__name__)


def reference(version: int) -> str:
    """The schema reference (docs/events.md), generated from the records."""
    out = [
        "# The event stream: schema reference",
        "",
        "Generated from `simmta/core/records.py` by `python -m simmta.core.records`;",
        "a test fails when it is out of date. Do not edit by hand.",
        "",
        f"Schema version {version}. Wire and disk format: JSON Lines, one event per line, with",
        "the envelope fields `v`, `seq`, `ts`, `mono`, `clock`, `pid`, `service`, `kind`, `type`,",
        "`qid`, `sid`, and `data` (the record's fields below). Optional fields are left out when",
        f"they have no value. Text is cut at {MAX_TEXT} characters (in a list too) and lists at {MAX_ITEMS}",
        "items; master cuts what a daemon sends as well.",
        "",
    ]
    for kind, types in RECORDS.items():
        out += [f"## {kind}", ""]
        for type_, cls in types.items():
            info = msgspec.inspect.type_info(cls)
            assert isinstance(info, msgspec.inspect.StructType)
            out += [f"### `{kind}/{type_}`", "", (cls.__doc__ or "").strip(), ""]
            if not info.fields:
                out += ["(no fields)", ""]
                continue
            out += ["| field | type | |", "|---|---|---|"]
            for f in info.fields:
                out.append(
                    f"| `{f.encode_name}` | {_type_name(f.type)} | "
                    f"{'required' if f.required else 'optional'} |"
                )
            out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    from simmta.core.events import SCHEMA_VERSION

    sys.stdout.write(reference(SCHEMA_VERSION))
