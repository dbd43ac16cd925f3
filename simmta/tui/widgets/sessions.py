"""SMTP sessions and their transcripts (what mail-catcher users ask for most).

Left: every remembered session (server side smtpd and client side smtp);
right: the highlighted session's transcript, C: client and S: server lines.
Trust: EHLO names and lines come from the network: Text only, control
characters already made visible by the model.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable

from simmta.tui import fmt
from simmta.tui.model import Model
from simmta.tui.widgets.quiet import QuietStatic
from simmta.tui.widgets.tables import ModelTable

ARROWS = {">": ("C: ", "bold"), "<": ("S: ", ""), "!": ("!! ", "bold reverse")}


class SessionTable(ModelTable):
    COLUMNS = ("session", "service", "client", "EHLO", "opened", "state", "queue IDs")

    def model_rows(self) -> list[tuple[str, list[Text]]]:
        out = []
        for s in reversed(self.model.sessions.values()):
            cells = [
                s.sid,
                s.service,
                s.client,
                s.helo,
                fmt.clock(s.opened) if s.opened else "",
                "closed" if s.closed else "open",
                " ".join(s.qids),
            ]
            out.append((s.key, [Text(c) for c in cells]))
        return out


class SessionsView(Horizontal):
    """The session list beside the selected session's transcript."""

    def __init__(self, model: Model, clock: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.model, self.clock = model, clock
        self.sid: str | None = None

    def compose(self) -> ComposeResult:
        yield SessionTable(self.model, self.clock, id="session-table")
        with VerticalScroll(id="transcript-box"):
            yield QuietStatic(id="transcript")

    def update_from_model(self) -> None:
        table = self.query_one(SessionTable)
        table.update_from_model()
        self.sid = table.current_key()
        self.show()

    def select(self, key: str) -> None:
        table = self.query_one(SessionTable)
        table.update_from_model()
        if key in [str(k.value) for k in table.rows]:
            table.move_cursor(row=table.get_row_index(key))
        self.sid = key
        self.show()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.sid = str(event.row_key.value) if event.row_key is not None else None
        self.show()

    def show(self) -> None:
        session = self.model.sessions.get(self.sid or "")
        if session is None:
            self.query_one("#transcript", QuietStatic).show_lines([Text("no SMTP session yet", style="dim")])
            return
        lines = [Text(f"session {session.sid} ({session.service}) client {session.client}", style="bold")]
        for direction, line in session.transcript:
            prefix, style = ARROWS.get(direction, ("?? ", ""))
            lines.append(Text(prefix, style=style) + Text(line))
        self.query_one("#transcript", QuietStatic).show_lines(lines)
