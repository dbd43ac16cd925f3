"""Live figures: message counters and per-second sparklines with their axes.

Counts come from delivery/queue events (delivered starts from the instance's
totals in its snapshot); the sparklines are the model's per-second series (the
recording's own clock, so replays draw the same). Each line is labelled with
its unit, its scale (the lowest and highest value of the window: each line is
scaled to its own range) and its newest value; a time axis under them runs
from SERIES_SIZE seconds ago to now. Live, the app moves the series on every
tick (``Model.advance_to``), so with no mail the lines scroll on at zero
instead of freezing on the last burst.
Trust: numbers only.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from simmta.tui.model import FIGURES, SERIES_SIZE, Model
from simmta.tui.widgets.quiet import QuietStatic

SERIES = (  # (series, label, unit)
    ("accepted", "accepted", "msg/s"),
    ("delivered", "delivered", "msg/s"),
    ("deferred", "deferred", "msg/s"),
    ("queued", "in queue", "msgs"),
    ("events", "events", "events/s"),
)


def scale(values: list[int]) -> str:
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{low}..{high}"


def time_axis(width: int, seconds: int = SERIES_SIZE) -> Text:
    """``-120 s ... -60 s ... now`` spread over ``width`` cells (the sparkline's)."""
    if width < 12:
        return Text("now".rjust(max(width, 0)), style="dim")
    cells = [" "] * width
    for label, at in ((f"-{seconds} s", 0), (f"-{seconds // 2} s", width // 2 - 3), ("now", width - 3)):
        for i, ch in enumerate(label):
            if 0 <= at + i < width:
                cells[at + i] = ch
    return Text("".join(cells), style="dim")


class Figures(Vertical):
    def __init__(self, model: Model, **kw: Any) -> None:
        super().__init__(**kw)
        self.model = model
        self._drawn_second: int | None = -1

    def compose(self) -> ComposeResult:
        yield QuietStatic(id="counters")
        yield Static(
            Text(f"per second, the last {SERIES_SIZE} s (each line scaled from its lowest to its highest)"),
            classes="spark-label",
        )
        for key, _, _ in SERIES:
            with Horizontal(classes="spark-row"):
                yield QuietStatic(id=f"scale-{key}", classes="spark-scale")
                yield Sparkline([0], id=f"spark-{key}", summary_function=max)
                yield QuietStatic(id=f"now-{key}", classes="spark-now")
        with Horizontal(classes="spark-row"):
            yield Static("", classes="spark-scale")
            yield QuietStatic(id="time-axis")
            yield Static("", classes="spark-now")

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
        for key, label, unit in SERIES:
            values = list(m.series[key])
            self.query_one(f"#spark-{key}", Sparkline).data = values
            head = Text.assemble((label, "bold"), (f" {unit} ", "dim"), (scale(values), ""))
            self.query_one(f"#scale-{key}", QuietStatic).show_lines([head])
            self.query_one(f"#now-{key}", QuietStatic).show_lines([Text(f" now {values[-1]}")])
        width = self.query_one("#spark-events", Sparkline).size.width
        self.query_one("#time-axis", QuietStatic).show_lines([time_axis(width)])

    def on_resize(self) -> None:
        self._drawn_second = -1  # the time axis follows the sparklines' width
