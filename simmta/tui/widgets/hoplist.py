"""Beside the map: the list of hops (newest last) and the narration of the followed message.

``HopList`` shows the recent hops of every message, one row each; selecting a
row follows that message and pins the map on that hop (``HopChosen``).
``Narration`` tells the followed message's hop in one plain sentence, with
where it is in the journey.

Trust: rows and sentences come from Journeys (already inert), shown as Text.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from simmta.tui import fmt
from simmta.tui.journey import Hop, Journeys
from simmta.tui.widgets.messages import HopChosen
from simmta.tui.widgets.quiet import QuietStatic

UPDATE_EVERY = 0.5  # seconds between rebuilds of the list during a burst


def recent_hops(journeys: Journeys) -> list[tuple[str, int, Hop]]:
    """(message, index in its journey, hop) for the newest hops of all messages, oldest first."""
    return [(journeys.name(ident), i, hop) for ident, i, hop in journeys.log]


class HopList(OptionList):
    """Every message's hops; enter or a click picks one."""

    def __init__(self, journeys: Journeys, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.journeys = journeys
        self.rows: list[tuple[str, int, Hop]] = []
        self._shown: tuple[object, ...] = ()
        self._updated = 0.0

    def update_from(self, journeys: Journeys, followed: str | None) -> None:
        self.journeys = journeys
        last = journeys.log[-1][2].seq if journeys.log else 0
        key = (id(journeys), len(journeys.log), last, followed)
        now = time.monotonic()
        if key == self._shown or now - self._updated < UPDATE_EVERY:
            return
        self._shown, self._updated = key, now
        rows = recent_hops(journeys)
        at_end = self.highlighted is None or self.highlighted >= len(self.rows) - 1
        self.rows = rows
        self.clear_options()
        self.add_options([Option(self._line(r, followed)) for r in rows])
        if at_end and rows:
            self.highlighted = len(rows) - 1

    def _line(self, row: tuple[str, int, Hop], followed: str | None) -> Text:
        ident, _, hop = row
        line = Text(no_wrap=True, overflow="ellipsis")
        if self.has_class("wide"):
            line.append(fmt.clock(hop.ts)[3:8] + " ", style="dim")
        line.append(f"{ident[:11]:<11}", style="bold reverse" if ident == followed else "bold")
        line.append(f" {hop.src}→{hop.dst}")
        return line

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if 0 <= event.option_index < len(self.rows):
            ident, i, _ = self.rows[event.option_index]
            self.post_message(HopChosen(ident, i))


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
