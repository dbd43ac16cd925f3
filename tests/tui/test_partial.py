"""What the cheaper redraws must not change: the bytes a partial update sends, the map's rows.

``PartialCompositor`` asks fewer widgets, and fewer rows of each, for their
strips; the diagram recomputes per frame only the rows tokens touch. Both are
checked here against the slow way on the same screen state, while tokens move.
"""

from __future__ import annotations

import gc
import random
import re
import time
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from textual._compositor import Compositor
from textual.geometry import Region
from tuihelp import sync, until

from simmta.tui import bench, partial
from simmta.tui.app import SimmtaApp
from simmta.tui.feed import LiveFeed
from simmta.tui.widgets.diagram import Diagram


def moving_app(ahead: list[float]) -> SimmtaApp:
    """A live app (fed through the bus reader's seam) whose clock the test moves on."""
    feed = LiveFeed(Path("/nonexistent/bus.sock"))
    feed.offer(bench.snapshot())
    return SimmtaApp(feed, clock=lambda: time.time() + ahead[0])


ESCAPE = re.compile(r"\x1b\[(\d+);(\d+)H|(\x1b\[[0-9;]*m)|(\x1b\][^\x1b]*\x1b\\)|(.)", re.S)


def sent(compositor: Compositor, regions: list[Region], console: Any) -> dict[tuple[int, int], str]:
    """The cells a partial update for these regions writes, as a terminal would show them:
    {(row, column): style and character}. (Textual's own update also sends cursor moves that
    write nothing, which a terminal shows as nothing.)"""
    compositor._dirty_regions.clear()
    compositor._dirty_regions.update(regions)
    update = compositor.render_partial_update()
    cells: dict[tuple[int, int], str] = {}
    row = column = 0
    style = ""
    text = update.render_segments(console) if update else ""
    for move_row, move_column, sgr, link, char in ESCAPE.findall(text):
        if move_row:
            row, column = int(move_row), int(move_column)
        elif sgr or link:
            style = "" if sgr == "\x1b[0m" else style + sgr + link
        else:
            cells[(row, column)] = style + char
            column += cell_len(char)
    return cells


def crops(width: int, height: int, widgets: list[Region], rng: random.Random) -> list[list[Region]]:
    rows = [[Region(0, y, width, 1)] for y in range(height)]
    cells = [[Region(rng.randrange(width), rng.randrange(height), 1, 1)] for _ in range(20)]
    boxes = []
    for _ in range(20):
        x, y = rng.randrange(width), rng.randrange(height)
        boxes.append([Region(x, y, rng.randint(1, width - x), rng.randint(1, height - y))])
    single = [region for regions in rows + cells for region in regions]
    several = [rng.sample(single, 4) for _ in range(10)]
    return rows + cells + boxes + several + [[r] for r in widgets if r.area]


@pytest.mark.parametrize("size", [(200, 50), (80, 24)])
@sync
async def test_a_partial_update_sends_what_textuals_compositor_sends(
    size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert partial.partial_ok  # the installed Textual has the method the fast path replaces
    ahead = [0.0]
    app = moving_app(ahead)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.model.services, what="the snapshot")
        for _ in range(3):
            app.action_view_pace(False)  # 3 s per hop: the tokens stay on the edges
        for n in range(6):
            for line in bench.journey(n, 1 + 8 * n):
                app.feed.offer(line)
        diagram = app.query_one(Diagram)
        await until(pilot, lambda: len(diagram.tokens()) >= 3, what="tokens on the map")
        compositor = app.screen._compositor
        assert isinstance(compositor, partial.PartialCompositor)
        rng = random.Random(size[0])
        for frame in range(4):
            ahead[0] += 0.7
            diagram.tick()
            await pilot.pause()
            widgets = [region for region, _clip in compositor.visible_widgets.values()]
            for regions in crops(*size, widgets, rng):
                fast = sent(compositor, regions, app.console)
                with monkeypatch.context() as m:
                    m.setattr(partial.PartialCompositor, "_get_renders", Compositor._get_renders)
                    slow = sent(compositor, regions, app.console)
                assert fast == slow, f"frame {frame}, update of {regions}"
                assert fast  # a real update was compared, not two empty ones
        # ... and it is cheaper: one row of the map asks fewer widgets than Textual does
        area = diagram.region
        row = Region(area.x, area.y + area.height // 2, area.width, 1)
        assert len(list(compositor._get_renders(row))) < len(list(Compositor._get_renders(compositor, row)))


@sync
async def test_the_maps_rows_are_never_stale_while_tokens_move() -> None:
    ahead = [0.0]
    app = moving_app(ahead)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.model.services, what="the snapshot")
        for _ in range(3):
            app.action_view_pace(False)
        diagram = app.query_one(Diagram)
        moved = 0
        for n in range(12):
            for line in bench.journey(n, 1 + 8 * n):
                app.feed.offer(line)
            for _ in range(5):
                ahead[0] += 0.4
                moved += diagram.tick()
                await pilot.pause()
                for y in range(diagram.size.height):
                    kept = diagram.render_line(y)
                    diagram._strips.pop(y)
                    assert list(kept) == list(diagram.render_line(y)), f"row {y} at +{ahead[0]:.1f} s"
        assert moved  # rows did change along the way


@sync
async def test_startup_objects_are_frozen_while_the_app_runs_and_thawed_after() -> None:
    app = moving_app([0.0])
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: gc.get_freeze_count() > 0, what="the start-up frozen")
    assert gc.get_freeze_count() == 0  # the app's widgets (cycles) can be collected again
