"""Widgets that redraw only when what they show changed: a Static and the Footer.

The views are refreshed on every tick of a burst; most of the time their text
is the same, and an unconditional ``update`` would re-layout the screen each
time. A changed text that takes as many rows as before (the narration, the
status line: every tick) is repainted in place: a layout makes Textual
re-arrange and redraw the whole screen.

Textual's Footer rebuilds its keys (a few dozen widgets, each styled) on
every change of focus, though the keys it shows are mostly the same: that
rebuild was most of a view switch's key latency (0.64 of 1.09 s over 20
switches at 200x50). ``QuietFooter`` rebuilds only when they differ.
Trust: shows Text built by the views (already inert) and the app's bindings.
"""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.screen import Screen
from textual.widgets import Footer, Static


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


class QuietFooter(Footer):
    """Textual's Footer, rebuilt only when the keys it would show change."""

    _keys: tuple[tuple[str, str, bool, str], ...] | None = None

    def bindings_changed(self, screen: Screen[object]) -> None:
        keys = tuple(
            (binding.key, binding.description, enabled, tooltip)
            for _, binding, enabled, tooltip in screen.active_bindings.values()
            if binding.show or binding.action == "command_palette"
        )
        if keys == self._keys and screen is self.screen:
            return
        if screen.app.app_focus:  # else Footer waits for the focus to come back: so does this
            self._keys = keys
        super().bindings_changed(screen)
