"""The event log: newest events, filterable by kind, service and queue ID.

Renders only the lines that fit (from the model's ring buffer), so a burst
costs one render per tick, not one widget per event. ``space`` pauses (the
view freezes while the model keeps up), a click goes to the event's message,
session or process, ``/`` sets the filter: words must all
match; ``kind:smtp``, ``service:qmgr`` and ``qid:4A1B2C`` match one field.
Trust: event text is shown via fmt.event_line (Text only).
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text
from textual import events
from textual.widget import Widget

from simmta.tui import fmt
from simmta.tui.model import Model
from simmta.tui.widgets.messages import EventChosen


def matches(event: dict[str, Any], words: list[str]) -> bool:
    for word in words:
        key, _, value = word.partition(":")
        if value and key in ("kind", "service", "qid", "type", "sid"):
            if value.lower() != str(event.get(key) or "").lower():
                return False
        elif word.lower() not in fmt.event_line(event).plain.lower():
            return False
    return True


class EventLog(Widget):
    """The newest events that match the filter, newest at the bottom."""

    def __init__(self, model: Model, **kw: Any) -> None:
        super().__init__(**kw)
        self.model = model
        self.filter = ""
        self.paused = False
        self.frozen: list[dict[str, Any]] = []
        self.shown: list[dict[str, Any]] = []  # the events on screen, for click-through

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self.frozen = list(self.model.log) if paused else []
        self.refresh()

    def visible_rows(self, height: int) -> list[dict[str, Any]]:
        source = self.frozen if self.paused else self.model.log
        words = self.filter.split()
        out: list[dict[str, Any]] = []
        for event in reversed(source):
            if not words or matches(event, words):
                out.append(event)
                if len(out) >= height:
                    break
        return out[::-1]

    def render(self) -> Group:
        height = max(1, self.size.height - 1)
        state = "PAUSED (space resumes)" if self.paused else "following"
        head = Text(
            f"{state} · filter: {self.filter or '(none: / to set)'} · "
            f"{len(self.model.log)} kept of {self.model.applied} seen",
            style="dim",
        )
        self.shown = self.visible_rows(height)
        return Group(head, *(fmt.event_line(e) for e in self.shown))

    def on_click(self, event: events.Click) -> None:
        """Click an event: go to its message, its SMTP session, or its process."""
        row = event.y - 1  # the first line is the header
        if 0 <= row < len(self.shown):
            self.post_message(EventChosen(self.shown[row]))
