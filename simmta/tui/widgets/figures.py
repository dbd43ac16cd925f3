"""Live figures: message counters and per-second sparklines.

Counts come from delivery/queue events; the sparklines are the model's
per-second series (the recording's own clock, so replays draw the same).
Trust: numbers only.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from simmta.tui.model import FIGURES, Model
from simmta.tui.widgets.quiet import QuietStatic

SERIES = (
    ("accepted", "accepted/s"),
    ("delivered", "delivered/s"),
    ("deferred", "deferred/s"),
    ("queued", "in queue"),
    ("events", "events/s"),
)


class Figures(Vertical):
    def __init__(self, model: Model, **kw: Any) -> None:
        super().__init__(**kw)
        self.model = model
        self._drawn_second: int | None = -1

    def compose(self) -> ComposeResult:
        yield QuietStatic(id="counters")
        for key, label in SERIES:
            yield Static(Text(label), classes="spark-label")
            yield Sparkline([0], id=f"spark-{key}", summary_function=max)

    def update_from_model(self) -> None:
        m = self.model
        line = Text()
        for key in FIGURES:
            line.append(f"{key} ", style="dim")
            line.append(f"{m.counts[key]}   ", style="bold")
        line.append("queued ", style="dim")
        line.append(f"{m.queued}   ", style="bold")
        line.append("lost events ", style="dim")
        line.append(str(m.dropped), style="bold")
        self.query_one("#counters", QuietStatic).show_lines([line])
        if m.second == self._drawn_second:  # the sparklines move once a second
            return
        self._drawn_second = m.second
        for key, _ in SERIES:
            self.query_one(f"#spark-{key}", Sparkline).data = list(m.series[key])
