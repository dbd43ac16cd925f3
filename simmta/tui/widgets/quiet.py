"""A Static that repaints only when its text changed, and lays out only when its height did.

The views are refreshed on every tick of a burst; most of the time their text
is the same, and an unconditional ``update`` would re-layout the screen each
time. A changed text that takes as many rows as before (the narration, the
status line: every tick) is repainted in place: a layout makes Textual
re-arrange and redraw the whole screen. Trust: shows Text built by the views
(already inert).
"""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.widgets import Static


class QuietStatic(Static):
    """``show(lines)``: update with these lines unless they read exactly as before."""

    _shown: tuple[str, ...] | None = None
    _measured: tuple[int, int] = (0, 0)  # (width, rows) of the text last laid out

    def show_lines(self, lines: list[Text]) -> None:
        key = tuple(f"{line.plain}\0{line.style}\0{len(line.spans)}" for line in lines)
        if key == self._shown:
            return
        self._shown = key
        self.update(Group(*lines), layout=False)
        width = self.content_region.width
        # Textual's Widget measures the same way (its styles stand in for the RulesMap it types)
        measured = (width, self.visual.get_height(self.styles, width) if width else 0)  # type: ignore[arg-type]
        if not width or measured != self._measured:
            self._measured = measured
            self.refresh(layout=True)
