"""Beside the map: the list of hops (newest last) and the narration of the followed message.

``HopList`` shows the recent hops of every message, one row each; selecting a
row (enter or a click) follows that message and pins the map on that hop
(``HopChosen``). It is drawn with Textual's Line API: an update replaces the
list of rows (a few hundred tuples) and ``render_line`` builds a ``Strip``
only for the rows on screen, cached, so a burst costs neither widgets nor a
layout. ``Narration`` tells the followed message's hop in one plain sentence,
with where it is in the journey.

Trust: rows and sentences come from Journeys (already inert), shown as Text.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

from rich.segment import Segment
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from simmta.tui import fmt
from simmta.tui.journey import Hop, Journeys
from simmta.tui.widgets.messages import HopChosen
from simmta.tui.widgets.quiet import QuietStatic

UPDATE_EVERY = 0.5  # seconds between updates of the list during a burst
STRIPS_KEPT = 256  # rendered rows kept (a screenful is at most a few dozen)

Row = tuple[str, int, Hop]


def recent_hops(journeys: Journeys) -> list[Row]:
    """(message, index in its journey, hop) for the newest hops of all messages, oldest first."""
    return [(journeys.name(ident), i, hop) for ident, i, hop in journeys.log]


class HopList(ScrollView, can_focus=True):
    """Every message's hops; the cursor follows the newest until moved; enter or a click picks one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "cursor(-100000)", "First", show=False),
        Binding("end", "cursor(100000)", "Newest", show=False),
        Binding("enter", "select", "Follow this hop", show=False),
    ]
    COMPONENT_CLASSES = {"hop-list--cursor"}
    DEFAULT_CSS = """
    HopList > .hop-list--cursor { background: $block-cursor-blurred-background; }
    HopList:focus > .hop-list--cursor { background: $block-cursor-background; }
    """

    def __init__(self, journeys: Journeys, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.journeys = journeys
        self.rows: list[Row] = []
        self.highlighted: int | None = None
        self.followed: str | None = None
        self._shown: tuple[object, ...] = ()
        self._updated = 0.0
        self._strips: dict[tuple[object, ...], Strip] = {}

    def update_from(self, journeys: Journeys, followed: str | None) -> None:
        self.journeys = journeys
        last = journeys.log[-1][2].seq if journeys.log else 0
        key = (id(journeys), len(journeys.log), last, followed)
        now = time.monotonic()
        if key == self._shown or now - self._updated < UPDATE_EVERY:
            return
        self._shown, self._updated = key, now
        at_end = self.highlighted is None or self.highlighted >= len(self.rows) - 1
        self.rows, self.followed = recent_hops(journeys), followed
        self.virtual_size = Size(self.size.width, len(self.rows))
        if at_end and self.rows:
            self.move_to(len(self.rows) - 1)
        self.refresh()

    def move_to(self, row: int) -> None:
        """Put the cursor on a row and scroll it into view."""
        if not self.rows:
            return
        self.highlighted = max(0, min(len(self.rows) - 1, row))
        self.scroll_to_region(Region(0, self.highlighted, 1, 1), animate=False, force=True)
        self.refresh()

    def action_cursor(self, delta: int) -> None:
        self.move_to((len(self.rows) if self.highlighted is None else self.highlighted) + delta)

    def action_page(self, direction: int) -> None:
        self.action_cursor(direction * max(1, self.size.height - 1))

    def action_select(self) -> None:
        if self.highlighted is not None and 0 <= self.highlighted < len(self.rows):
            ident, index, _ = self.rows[self.highlighted]
            self.post_message(HopChosen(ident, index))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None and 0 <= offset.y + self.scroll_offset.y < len(self.rows):
            self.move_to(offset.y + self.scroll_offset.y)
            self.action_select()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        index = y + self.scroll_offset.y
        if index >= len(self.rows):
            return Strip.blank(width, self.rich_style)
        ident, _, hop = self.rows[index]
        wide = self.has_class("wide")
        cursor = index == self.highlighted
        key = (hop.seq, id(hop), ident, ident == self.followed, cursor, wide, width, self.has_focus)
        strip = self._strips.get(key)
        if strip is None:
            if len(self._strips) >= STRIPS_KEPT:
                self._strips.clear()
            line = self._line(ident, hop, wide)
            style = self.rich_style
            if cursor:
                style += self.get_component_rich_style("hop-list--cursor")
            segments = [
                Segment(s.text, style + s.style if s.style else style)
                for s in line.render(self.app.console)
                if s.text != "\n"
            ]
            strip = self._strips[key] = Strip(segments).crop_extend(0, width, style)
        return strip

    def _line(self, ident: str, hop: Hop, wide: bool) -> Text:
        line = Text(no_wrap=True, overflow="ellipsis")
        if wide:
            line.append(fmt.clock(hop.ts)[3:8] + " ", style="dim")
        line.append(f"{ident[:11]:<11}", style="bold reverse" if ident == self.followed else "bold")
        line.append(f" {hop.src}→{hop.dst}")
        return line

    def notify_style_update(self) -> None:
        self._strips.clear()
        super().notify_style_update()


class Narration(QuietStatic):
    """One sentence for the followed message's hop now on the map."""

    def show(
        self, ident: str | None, hops: list[Hop], index: int, how: str, who: Callable[[str], str]
    ) -> None:
        if not ident or not hops or index < 0:
            self.show_lines(
                [Text("s sends a message; its hops are told here, one sentence each", style="dim")]
            )
            return
        hop = hops[min(index, len(hops) - 1)]
        line = Text(f"{ident} hop {index + 1}/{len(hops)} ", style="bold reverse")
        line.append(f" {hop.told(who)}")
        line.append(f"  ({how})", style="dim")
        self.show_lines([line])
