"""A Static that repaints only when its text changed.

The views are refreshed on every tick of a burst; most of the time their text
is the same, and an unconditional ``update`` would re-layout the screen each
time. Trust: shows Text built by the views (already inert).
"""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.widgets import Static


class QuietStatic(Static):
    """``show(lines)``: update with these lines unless they read exactly as before."""

    _shown: tuple[str, ...] | None = None

    def show_lines(self, lines: list[Text]) -> None:
        key = tuple(f"{line.plain}\0{line.style}\0{len(line.spans)}" for line in lines)
        if key != self._shown:
            self._shown = key
            self.update(Group(*lines))
