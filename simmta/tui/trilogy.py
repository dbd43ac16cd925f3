"""The trilogy view: Sendmail-, qmail- and Postfix-style MTAs side by side.

Three live maps (one Diagram per instance, each fed by its own bus), the
counts that tell the designs apart (processes, distinct uids, root processes,
chrooted processes, set-uid programs) derived from the same fold of each
instance's stream (``fold.design``: the privilege master read from /proc, kept
current by the processes' own privilege steps), and the blast-radius matrix:
the compromise lab's script run in each SMTP server, with the kernel's answers.
``s`` sends the same message to all three. Below NARROW columns one map is
shown at a time (``1``, ``2``, ``3``) above a line of counts per design.

Trust: talks to masters the invoking user started (control and bus sockets);
every string shown comes from them and is made inert.
"""

from __future__ import annotations

import smtplib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.widgets import Static

from simmta.core import compromise, control, fold
from simmta.core.events import safe_text
from simmta.core.instance import Instance
from simmta.core.services import ServiceTable, load
from simmta.tools.lab import mode_label, outcome_cells
from simmta.tui import themes
from simmta.tui.feed import LiveFeed
from simmta.tui.model import Model
from simmta.tui.partial import PartialUpdates
from simmta.tui.widgets.diagram import Diagram
from simmta.tui.widgets.quiet import QuietFooter

NARROW = 150  # below this many columns one map is shown at a time (keys 1, 2, 3), with every
# design's counts on a line each under it: three maps stacked in 40 rows left each 2-3 rows


@dataclass
class Member:
    """One of the three: its instance, table, fold and feed."""

    profile: str
    instance: Instance
    table: ServiceTable
    model: Model
    feed: LiveFeed
    report: dict[str, Any] | None = None


def counts(model: Model) -> str:
    """The design's numbers, and the mail it delivered, from the fold of the instance's events."""
    state = model.state
    if not state.started:
        return "starting..."
    d = fold.design(state)
    unseen = d.processes - d.observed
    return (
        f"processes {d.processes}  distinct uids {d.uids}  root {d.root}  chrooted {d.chrooted}"
        + f"  delivered {model.counts['delivered']}"
        + (f"  ({unseen} not yet observed)" if unseen else "")
        + f"\nset-uid programs: real 0, emulated {len(d.setuid)}"
        + (f" ({', '.join(d.setuid)})" if d.setuid else "")
        + "\n(master, spawner, the simulated Internet: not counted)"
    )


def matrix(members: list[Member]) -> str:
    reports = [m.report for m in members]
    if any(r is None for r in reports):
        return "blast radius: running the compromise lab in each SMTP server..."
    done = [r for r in reports if r is not None]
    cells = [outcome_cells(r) for r in done]
    lines = [
        "blast radius of a hole in the SMTP server ("
        + "; ".join(f"{r['profile']} {r['program']} as {r['account']}" for r in done)
        + ")"
    ]
    lines.append(f"{'':<15}" + "".join(f"{r['profile']:<22}" for r in done))
    for a in compromise.ATTEMPTS:
        lines.append(f"{a:<15}" + "".join(f"{c.get(a, '-'):<22}" for c in cells))
    labels = (f"{r['profile']}: {r['error']}" if "error" in r else mode_label(r) for r in done)
    lines += [f"({label})" for label in dict.fromkeys(labels)]
    return "\n".join(safe_text(x, 400) for x in lines)


class TrilogyApp(PartialUpdates, App[None]):
    CSS = """
    #maps { layout: horizontal; height: 1fr; }
    .member { width: 1fr; height: 1fr; border: round $primary; }
    .member Diagram { height: 1fr; }
    .counts { height: 3; }
    #maps.narrow .member.hidden { display: none; }
    #maps.narrow .counts { display: none; }
    #summary { height: auto; display: none; }
    #summary.shown { display: block; }
    #matrix { height: auto; max-height: 16; }
    """
    BINDINGS = [
        Binding("s", "send", "Send one message to all three"),
        *(Binding(str(i + 1), f"show({i})", f"Design {i + 1}") for i in range(3)),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, members: list[Member]) -> None:
        super().__init__()
        self.members = members
        self.sent = 0
        self.shown = 0  # on a narrow screen, the design whose map is shown (in the trilogy's order)
        for t in themes.ALL:
            self.register_theme(t)
        self.theme = themes.THEMES["dark"]

    def compose(self) -> ComposeResult:
        with Container(id="maps"):
            for i, m in enumerate(self.members):
                with Vertical(classes="member") as box:
                    box.border_title = f"{m.table.profile.title}: {m.profile}"
                    yield Diagram(m.model, time.time, id=f"map{i}")
                    yield Static(counts(m.model), classes="counts", id=f"counts{i}")
        yield Static(self.summary(), id="summary")
        yield Static(matrix(self.members), id="matrix")
        yield QuietFooter()

    def on_mount(self) -> None:
        self.action_show(self.shown)
        self.set_interval(0.1, self.pump)
        self.run_worker(self.blast_radius, thread=True)
        self.on_resize()

    def on_resize(self, event: events.Resize | None = None) -> None:
        narrow = (event.size if event is not None else self.size).width < NARROW
        self.query_one("#maps").set_class(narrow, "narrow")
        self.query_one("#summary").set_class(narrow, "shown")

    def action_show(self, index: int) -> None:
        """On a narrow screen, the map of design ``index`` (the others' counts stay in view)."""
        self.shown = index
        for i, box in enumerate(self.query(".member")):
            box.set_class(i != index, "hidden")
        self.query_one("#summary", Static).update(self.summary())

    def summary(self) -> str:
        """One line per design (its counts' first line), the one on screen marked."""
        return "\n".join(
            f"{'▶' if i == self.shown else ' '} {i + 1} {m.profile:<9} {counts(m.model).splitlines()[0]}"
            for i, m in enumerate(self.members)
        )

    def pump(self) -> None:
        changed = False
        for i, m in enumerate(self.members):
            if m.feed.pump(m.model, time.time()):
                self.query_one(f"#map{i}", Diagram).tick()
                self.query_one(f"#counts{i}", Static).update(counts(m.model))
                changed = True
        if changed:
            self.query_one("#summary", Static).update(self.summary())

    def blast_radius(self) -> None:
        for m in self.members:
            service = m.table.internet_facing().name
            try:
                m.report = control.request(
                    m.instance.control_socket, "compromise", timeout=30, service=service
                )
            except Exception as e:
                m.report = {
                    "profile": m.profile,
                    "program": service,
                    "account": "?",
                    "mode": "?",
                    "results": [{"attempt": a, "outcome": "error"} for a in compromise.ATTEMPTS],
                    "error": str(e),
                }
        self.call_from_thread(self.query_one("#matrix", Static).update, matrix(self.members))

    def action_send(self) -> None:
        self.sent += 1
        self.run_worker(self._send, thread=True)

    def _send(self) -> None:
        n = self.sent
        for m in self.members:
            smtp = m.instance.status()["smtp"]
            with smtplib.SMTP(smtp["host"], int(smtp["port"]), timeout=30) as s:
                s.sendmail(
                    "alice@simmta.test",
                    ["bob@simmta.test"],
                    f"From: alice@simmta.test\r\nTo: bob@simmta.test\r\nSubject: trilogy {n}\r\n"
                    f"\r\nthe same message, to all three designs\r\n".encode(),
                )
        self.call_from_thread(self.notify, f"message {n} sent to all three")


def members(dirs: dict[str, Path]) -> list[Member]:
    out = []
    for profile, d in dirs.items():
        inst = Instance(d)
        out.append(Member(profile, inst, load(None, profile), Model(), LiveFeed(inst.bus_socket).start()))
    return out
