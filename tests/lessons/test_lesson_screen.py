"""The lesson screen as a class sees it: simmta's TUI with the lesson panel, under Pilot.

The lesson's MTA is not started (the map draws the services table of the profile the
instance's status names), so this runs without a master. Trust: test code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lessonkit import sync

from simmta.lessons import catalog
from simmta.lessons.app import LessonController, lesson_tui
from simmta.lessons.panel import PANEL_MIN, LessonPanel
from simmta.tui import mapfacts, maplayout
from simmta.tui.widgets.diagram import Diagram
from simmta.tui.widgets.hoplist import HopList
from simmta.tui.widgets.mapview import NodeDetail

REPO = Path(__file__).resolve().parents[2]
# The map beside (120x40) or above (80x24) the panel gets at least this many columns: what the
# compact map of every profile needs for its boxes' names (73 or 74; it got 30 and 34 before).
MAP_COLUMNS = 72


@pytest.mark.parametrize("profile", ["postfix", "sendmail", "qmail"])
@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
@sync
async def test_the_map_beside_a_lesson_keeps_its_boxes_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int], profile: str
) -> None:
    """At 120x40 the panel (58 %, up to 60 columns) and the hop list left the map 30 columns,
    at 80x24 34: every box's name was cut ('☁N…', 'cl…'). Now the panel is beside the map where
    the map keeps the columns its names need, else under it, and the hop list waits for v."""
    monkeypatch.setenv("SIMMTA_LESSON_PROGRESS", str(tmp_path / "progress.json"))
    controller = LessonController(catalog.find("3", REPO / "lessons"), tmp_path / "instance", restart=True)
    status = controller.mta.instance.status_file
    status.parent.mkdir(parents=True)
    status.write_text(json.dumps({"profile": profile}))
    app = lesson_tui(controller)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        diagram, panel = app.query_one(Diagram), app.query_one(LessonPanel)
        lay = diagram.ensure_layout()
        assert diagram.size.width >= max(MAP_COLUMNS, maplayout.least_width(diagram.graph)), diagram.size
        assert not app.query_one(HopList).display  # the narration tells the hops
        beside = size[0] >= MAP_COLUMNS + PANEL_MIN
        assert panel.has_class("stacked") != beside
        if beside:
            assert PANEL_MIN <= panel.outer_size.width <= 48 and diagram.region.right <= panel.region.x
        else:  # the whole width under the map, the box detail's rows given to the map
            assert panel.region.y >= diagram.region.bottom and panel.outer_size.width == size[0]
            assert not app.query_one(NodeDetail).display
        rows = ["".join(s.text for s in diagram.render_line(y)) for y in range(diagram.size.height)]
        for f in lay.frames.values():
            assert f.x1 < diagram.size.width and f.y1 < diagram.size.height, f
        for node, b in lay.boxes.items():
            drawn = "\n".join(row[b.x : b.x1 + 1] for row in rows[b.y : b.y1 + 1])
            f = mapfacts.facts(app.model, lay.graph, node, 0.0)
            names = [n for n in (f.name, f.compact) if n] + [
                c.removeprefix(f.marker).rstrip("0123456789 ·⛓") for c in f.chips
            ]
            assert "…" not in drawn and any(n in drawn for n in names), (node, drawn)
        await pilot.press("v")  # asked for, the hop list shows
        assert app.query_one(HopList).display


@sync
async def test_the_panel_moves_as_the_window_is_resized(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shrunk to 80x24 the panel goes under the map, widened again it comes back beside it (it
    stayed 47 columns beside a 33-column map: the resize was not followed)."""
    monkeypatch.setenv("SIMMTA_LESSON_PROGRESS", str(tmp_path / "progress.json"))
    controller = LessonController(catalog.find("3", REPO / "lessons"), tmp_path / "instance", restart=True)
    app = lesson_tui(controller)
    async with app.run_test(size=(120, 40)) as pilot:
        diagram, panel = app.query_one(Diagram), app.query_one(LessonPanel)
        for size, stacked in (((80, 24), True), ((120, 40), False), ((160, 45), False)):
            await pilot.resize_terminal(*size)
            await pilot.pause()
            assert panel.has_class("stacked") == stacked, size
            assert diagram.size.width >= MAP_COLUMNS, (size, diagram.size)
        assert panel.outer_size.width == 48  # 40 % of 160 columns is more than the panel takes
