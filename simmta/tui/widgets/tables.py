"""Processes (htop-like) and queue (mailq-like) tables, refreshed from the model.

Rows are keyed by pid / queue ID and rebuilt only when the visible set
changes, so the cursor stays put while figures update. Cells are Text objects.
Trust: cells come from the model (already safe text).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from simmta.tui import fmt
from simmta.tui.model import Model
from simmta.tui.widgets.messages import MessageChosen

PROCESS_SORTS = ("service", "pid", "state", "served", "uptime")


class ModelTable(DataTable[Any]):
    """A DataTable filled from the model; subclasses say which rows and cells."""

    COLUMNS: tuple[str, ...] = ()

    def __init__(self, model: Model, clock: Callable[[], float], **kw: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self.model, self.clock = model, clock
        self.filter = ""
        self._cells: dict[str, list[str]] = {}  # what each row shows, to skip unchanged cells

    def on_mount(self) -> None:
        self.add_columns(*self.COLUMNS)

    def model_rows(self) -> list[tuple[str, list[Text]]]:
        raise NotImplementedError

    def update_from_model(self) -> None:
        wanted = self.filter.lower()
        rows = [
            (k, cells)
            for k, cells in self.model_rows()
            if not wanted or wanted in " ".join(c.plain for c in cells).lower()
        ]
        keys = [k for k, _ in rows]
        if keys != [str(k.value) for k in self.rows]:
            current = self.current_key()
            self.clear()
            self._cells = {key: [c.plain for c in cells] for key, cells in rows}
            for key, cells in rows:
                self.add_row(*cells, key=key)
            if current in keys:
                self.move_cursor(row=keys.index(current))
            return
        columns = list(self.columns)
        for key, cells in rows:
            before = self._cells.get(key, [])
            for i, (col, cell) in enumerate(zip(columns, cells, strict=False)):
                if i >= len(before) or before[i] != cell.plain:
                    self.update_cell(key, col, cell)
            self._cells[key] = [c.plain for c in cells]

    def show_key(self, key: str | None) -> None:
        """Put the cursor on row ``key`` if it is there and not already under the cursor."""
        if key and key != self.current_key() and key in [str(k.value) for k in self.rows]:
            self.move_cursor(row=self.get_row_index(key))

    def current_key(self) -> str | None:
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return str(row_key.value)


class ProcessTable(ModelTable):
    """pid, ppid, service, state, uid/gid, root, real/simulated, uptime, served, restarts."""

    COLUMNS = (
        "pid",
        "ppid",
        "service",
        "state",
        "uid:gid",
        "root",
        "mode",
        "uptime",
        "served",
        "restarts",
        "check",
    )
    BINDINGS = [Binding("o", "sort", "Sort")]

    def __init__(self, model: Model, clock: Callable[[], float], **kw: Any) -> None:
        super().__init__(model, clock, **kw)
        self.sort_by = "service"

    def action_sort(self) -> None:
        self.sort_by = PROCESS_SORTS[(PROCESS_SORTS.index(self.sort_by) + 1) % len(PROCESS_SORTS)]
        self.notify(f"processes sorted by {self.sort_by}")
        self.update_from_model()

    def model_rows(self) -> list[tuple[str, list[Text]]]:
        now = self.clock()
        key = {
            "service": lambda p: (p.service, p.pid),
            "pid": lambda p: p.pid,
            "state": lambda p: (p.state, p.pid),
            "served": lambda p: -p.served,
            "uptime": lambda p: p.started,
        }[self.sort_by]
        out = []
        for p in sorted(self.model.processes.values(), key=key):
            restarts = max(p.restarts, self.model.restarts[p.service])
            cells = [
                str(p.pid),
                str(p.ppid or ""),
                p.service,
                p.state,
                fmt.uid_text(p),
                "/" if p.root in ("", "/") else "jail",  # the path is in the map's detail pane
                p.mode,
                fmt.duration(now - p.started) if p.started else "",
                str(p.served),
                str(restarts),
                fmt.check_text(p),
            ]
            out.append((str(p.pid), [Text(c) for c in cells]))
        return out


class QueueTable(ModelTable):
    """Every queued message: queue ID, queue, size, age, sender, recipients, retry."""

    COLUMNS = ("queue ID", "queue", "size", "age", "sender", "recipients", "retry / reason")
    BINDINGS = [Binding("enter", "choose", "Follow")]

    def model_rows(self) -> list[tuple[str, list[Text]]]:
        now = self.clock()
        out = []
        for queue in self.model.queues:
            for m in self.model.in_queue(queue):
                retry = self.model.retry_in(m, now)
                note = (f"in {fmt.duration(retry)} " if retry is not None else "") + m.reason
                cells = [
                    Text(m.qid, style="bold"),
                    Text(queue),
                    Text(str(m.size or "")),
                    Text(fmt.duration(now - m.arrival) if m.arrival else ""),
                    Text(m.sender),
                    Text(", ".join(m.recipients)),
                    Text(note),
                ]
                out.append((m.qid, cells))
        return out

    def action_choose(self) -> None:
        if key := self.current_key():
            self.post_message(MessageChosen(key))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        # Only the user's own moves choose a message: the app moving the cursor to the message
        # it follows (or the rows shifting under it) must not switch to another one.
        if self.has_focus and event.row_key is not None and event.row_key.value:
            self.post_message(MessageChosen(str(event.row_key.value)))
