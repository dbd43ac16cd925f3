"""What the map needs from the model, and the live facts written on each box.

``MapSource`` is the whole interface between the diagram and the fold of the
event stream: a new fold only has to offer these members. ``facts(...)`` turns
them into what a box says: process count, observed uid, jailed or not,
busy/idle, restarts for a daemon; messages and the next retry for a queue;
deliveries for a store; the last lab attempt or fault that hit it.

Pure Python. Trust: the model's strings are already inert (``safe_text``).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import networkx as nx

from simmta.core import names
from simmta.tui import regions
from simmta.tui.journey import Journeys


class ProcessView(Protocol):
    state: str
    restarts: int

    @property
    def euid(self) -> int | None: ...
    @property
    def root(self) -> str: ...


class MessageView(Protocol):
    qid: str
    next_retry: float | None


class MapSource(Protocol):
    services: dict[str, dict[str, Any]]
    privilege_mode: str
    journeys: Journeys
    restarts: Counter[str]
    throttled: dict[str, str]
    results: deque[Result]
    mailboxes: Counter[str]

    @property
    def applied(self) -> int: ...  # events folded so far: the facts change only with one
    @property
    def last_seq(self) -> int: ...

    def processes_of(self, service: str) -> Iterable[ProcessView]: ...
    def in_queue(self, queue: str) -> Iterable[MessageView]: ...
    def retry_in(self, msg: Any, now: float | None = None) -> float | None: ...
    def delivered_to(self, store: str) -> int: ...


@dataclass(frozen=True)
class Result:
    """Something done to a process and what came of it, in plain words."""

    ts: float
    service: str
    what: str  # "read-secret", "kill SIGKILL", "crash before-fsync", "fault peer"
    outcome: str  # "ENOENT (outside the jail)"
    ok: bool = False  # the attempt succeeded (for a lab attempt: the boundary did not hold)

    @property
    def line(self) -> str:
        return f"{self.what} → {self.outcome}"

    @property
    def short(self) -> str:
        """For the box it hit: ``read-secret→ENOENT`` (the pane under the map says the rest)."""
        return f"{self.what}→{self.outcome.split(' (')[0]}"


@dataclass
class Facts:
    name: str
    marker: str = ""  # ♛ root, ☁ faces the Internet, ⛓ jailed
    lines: list[str] = field(default_factory=list)
    short: list[str] = field(default_factory=list)  # the same facts for a narrow box
    chips: list[str] = field(default_factory=list)  # one-line forms for small screens, longest first
    compact: str = ""  # a shorter title, for a narrow box (smtpd for qmail-smtpd)
    root: bool = False
    internet: bool = False
    busy: bool = False
    result: Result | None = None


def countdown(seconds: float | None) -> str:
    if seconds is None:
        return ""
    m, s = divmod(max(0, int(seconds)), 60)
    return f"⟳{m}m{s:02d}s" if m else f"⟳{s}s"


def _service_facts(source: MapSource, graph: nx.DiGraph, node: str) -> Facts:
    table = graph.nodes[node].get("service") or {}
    get = table.get if isinstance(table, dict) else lambda k, d=None: getattr(table, k, d)
    procs = list(source.processes_of(node))
    uids = sorted({p.euid for p in procs if p.euid is not None})
    jailed = any(p.root not in ("", "/") for p in procs)
    if not procs:
        root = regions.runs_as_root(table)
        jailed = bool(get("chroot", False))
        who = ("root" if root else "unprivileged") + " (table)"
    else:
        root = 0 in uids
        who = "/".join("root" if u == 0 else f"uid {u}" for u in uids) or "uid ?"
    busy = sum(1 for p in procs if p.state == "busy")
    internet = get("faces", "") == "internet" or get("role", "") == "internet"
    marker = "♛" if root else "☁" if internet else ""
    count = f"{len(procs)} proc{'s' if len(procs) != 1 else ''}" if procs else "not running"
    state = f"{busy} busy" if busy else ("idle" if procs else "")
    restarts = source.restarts.get(node, 0)
    line1 = who + (" ⛓jail" if jailed else "")
    line2 = " ".join(x for x in (count, state, f"↻{restarts}" if restarts else "") if x)
    short1 = who.replace("uid ", "u").replace("unprivileged", "unpriv").replace(" (table)", "?")
    short2 = " ".join(
        x for x in (f"{len(procs)}p", "busy" if busy else "idle", f"↻{restarts}" if restarts else "") if x
    )
    if node in source.throttled:
        line2 += " THROTTLED"
        short2 += " THR"
    n = str(len(procs)) if procs else "·"
    title, compact = display_name(graph, node), compact_name(graph, node)
    return Facts(
        name=title,
        marker=marker,
        lines=[line1, line2],
        short=[short1 + ("⛓" if jailed else ""), short2],
        chips=[
            *([f"{marker}{title} {n}⛓"] if jailed else []),
            f"{marker}{title} {n}",
            f"{marker}{compact} {n}",
            f"{marker}{compact}",
        ],
        root=root,
        internet=internet,
        busy=busy > 0,
        compact=compact,
    )


def facts(source: MapSource, graph: nx.DiGraph, node: str, now: float) -> Facts:
    kind = graph.nodes[node].get("kind", "service") if node in graph else "service"
    if node == names.MASTER:
        procs = list(source.processes_of(node))
        root = not procs or any(p.euid == 0 for p in procs) or source.privilege_mode != "real"
        f = Facts(
            node,
            "♛",
            ["root: starts all", "daemons, holds ports"],
            ["root", "supervisor"],
            [f"♛{node}"],
            root=root,
        )
    elif kind in ("service",):
        f = _service_facts(source, graph, node)
    elif kind == "internet":
        f = Facts(
            "Internet",
            "☁",
            ["SMTP clients", "(untrusted)"],
            ["clients", "untrusted"],
            ["☁Internet", "☁Net"],
            internet=True,
            compact="Net",
        )
    elif kind == "queue":
        msgs = list(source.in_queue(node))
        waits = [w for m in msgs if (w := source.retry_in(m, now)) is not None]  # held mail: none
        soonest = countdown(min(waits)) if waits else ""
        label = f"{node}/"
        f = Facts(
            label,
            "",
            [f"{len(msgs)} message{'s' if len(msgs) != 1 else ''}", soonest],
            [f"{len(msgs)} {soonest}".strip()],
            [f"{label} {len(msgs)} {soonest}".strip(), f"{label} {len(msgs)}", f"{node} {len(msgs)}"],
        )
    else:  # a store
        total = source.delivered_to(node)
        if node == "mailboxes" and source.mailboxes:
            per_user = " ".join(f"{u} {n}" for u, n in sorted(source.mailboxes.items()))
        else:
            per_user = ""
        name = (
            "users' Maildirs" if node == "mailboxes" else "peer's mailbox" if node == "peer-mailbox" else node
        )
        short, tiny = {"mailboxes": ("Maildirs", "users"), "peer-mailbox": ("peer mbox", "mbox")}.get(
            node, (node, node)
        )
        chips = [f"✉{node} {total}", f"✉{short} {total}", f"✉{tiny} {total}"]
        f = Facts(name, "✉", [f"{total} delivered", per_user], [f"{total} mail", per_user], chips)
        f.compact = short
    f.result = next((r for r in reversed(source.results) if r.service == node), None)
    return f


def display_name(graph: nx.DiGraph, node: str) -> str:
    """A box's title: the program's name in the profile's design (qmail-smtpd), else the node's;
    where several boxes run the same program (Sendmail's), its role in the label (SMTP child)."""
    program, role = _label(graph, node)
    stem = program.split(" ")[0]  # sendmail -q is a sendmail too
    if role and any(_label(graph, n)[0].split(" ")[0] == stem for n in graph.nodes if n != node):
        return role
    return program or node


def _column(graph: nx.DiGraph, node: str, key: str) -> str:
    table = graph.nodes[node].get("service") if node in graph else None
    return str((table.get(key) if isinstance(table, dict) else getattr(table, key, "")) or "")


def _label(graph: nx.DiGraph, node: str) -> tuple[str, str]:
    program, _, role = _column(graph, node, "label").partition(" (")
    return program, role.rstrip(")")


def compact_name(graph: nx.DiGraph, node: str) -> str:
    """The title for a small box or a one-line chip: the table's ``short`` (Sendmail's SMTP child
    is 'SMTP in'), else the name without a prefix every program shares (qmail-smtpd: smtpd)."""
    if short := _column(graph, node, "short"):
        return short
    name = display_name(graph, node)
    prefix, dash, rest = name.partition("-")
    shared = sum(1 for n in graph.nodes if display_name(graph, n).startswith(prefix + dash))
    return rest if dash and rest and shared > 1 else name


def label_widths(graph: nx.DiGraph, size_class: str) -> dict[str, int]:
    """How wide each box would like to be: its chip on a small screen, else its usual lines."""
    out = {}
    extra = 4 if size_class == "large" else 0  # room for a result: read-secret→ENOENT
    for node in [*graph.nodes, names.MASTER]:
        kind = graph.nodes[node].get("kind") if node in graph else "service"
        wide = {"service": 17, "queue": 13, "store": 17, "internet": 14}.get(kind or "", 17) + extra
        name = display_name(graph, node)
        out[node] = len(name) + 4 if size_class == "compact" else max(wide, len(name) + 4)
    return out


# A chip's count is budgeted at one digit: two would take the services' counts at 80 columns
# ("incoming 12" in the narrowest fit shows "incoming …": the name stays whole).
COUNT_DIGITS = 1


def label_needs(graph: nx.DiGraph, size_class: str) -> dict[str, int]:
    """The fewest cells each box needs for its name to be drawn whole (``mappaint.fit_chip`` and
    ``fit_title`` fall back to these forms before they cut): on a small map a chip's shortest
    form (a marker, the short name, a count), else a framed title's shortest form and its frame."""
    out = {}
    count = 1 + COUNT_DIGITS
    for node in [*graph.nodes, names.MASTER]:
        kind = graph.nodes[node].get("kind") if node in graph else "service"
        if node == names.MASTER:
            chip = title = 1 + len(node)
        elif kind == "internet":
            chip, title = len("☁Net"), len("Net")
        elif kind == "queue":
            chip, title = len(node) + count, len(node) + 1
        elif kind == "store":
            short, tiny = {"mailboxes": ("Maildirs", "users"), "peer-mailbox": ("peer mbox", "mbox")}.get(
                node, (node, node)
            )
            chip, title = 1 + len(tiny) + count, len(short)
        else:  # a service: a marker (root or the Internet, as observed) and its short name
            chip, title = 1 + len(compact_name(graph, node)), len(compact_name(graph, node))
        out[node] = chip if size_class == "compact" else title + 2
    return out
