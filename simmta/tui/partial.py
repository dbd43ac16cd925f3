"""A screen whose partial updates render only the widgets, and the rows, they change.

While tokens move, the map asks for a few rows at a time (``Diagram.tick``
refreshes only the rows whose overlay changed), about 20 times a second.
Textual 8.2's compositor then renders, for every widget whose *clip* meets
the changed area, the widget's whole visible region: a widget's clip is its
container's, and the containers fill the screen, so one changed row of the
map rendered 17 widgets, every row of each (3.6 ms per
update at 200x50, two thirds of the TUI's CPU while animating).

``PartialCompositor`` keeps Textual's composition and changes only which
strips it asks for: a widget is rendered only if its visible region (region
within clip) meets the changed area and a widget in front does not cover all
of that (the compositor paints front to back and the first strip for a cell
wins), and only its rows inside that area, at full width (the compositor cuts
each row at the same columns as before). What reaches the terminal is the
same: the widgets left out gave only rows and cuts that the update never
sends, or that a widget in front had already given (``tests/tui/test_partial.py``
checks, over several frames while tokens move, that the terminal shows the
same cells as with Textual's own compositor). Full updates (a layout, a resize) go through Textual's own path.

It overrides ``Compositor._get_renders``, a private method of Textual's
(present, with this signature, from Textual 1 to 8); if a Textual release
changes it, ``partial_ok`` is false and the screen keeps Textual's own
compositor: slower, never wrong.
Trust: rendering only; holds nothing but Textual's own widgets.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from textual._compositor import Compositor
from textual.geometry import Region
from textual.screen import Screen
from textual.strip import Strip


class PartialCompositor(Compositor):
    def _get_renders(self, crop: Region | None = None) -> Iterable[tuple[Region, Region, list[Strip]]]:
        if crop is None or crop == self.size.region:
            yield from super()._get_renders(crop)
            return
        top, bottom = crop.y, crop.bottom
        drawn: list[Region] = []  # what the widgets in front already give of the update
        for widget, (region, clip) in self.visible_widgets.items():  # front to back
            visible = region.intersection(clip)
            part = visible.intersection(crop)
            if not part.area or any(front.contains_region(part) for front in drawn):
                continue  # outside the update, or hidden behind a widget in front (front wins)
            drawn.append(part)
            y0, y1 = max(visible.y, top), min(visible.bottom, bottom)
            rows = Region(visible.x, y0, visible.width, y1 - y0)  # at full width: the same cuts
            yield rows, rows, widget.render_lines(rows.translate(-region.offset))


def _partial_ok() -> bool:
    method = getattr(Compositor, "_get_renders", None)
    return (
        method is not None
        and list(inspect.signature(method).parameters) == ["self", "crop"]
        and isinstance(getattr(Compositor, "visible_widgets", None), property)
    )


partial_ok = _partial_ok()


class PartialScreen(Screen[None]):
    """The apps' main screen: Textual's, with the partial compositor when it fits."""

    def __init__(self, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name, id, classes)
        if partial_ok:
            self._compositor = PartialCompositor()


class PartialUpdates:
    """Mixed into an App (before ``App``): its main screen is a ``PartialScreen``."""

    def get_default_screen(self) -> Screen[Any]:
        return PartialScreen(id="_default")
