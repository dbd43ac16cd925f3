"""Snapshot tests (pytest-textual-snapshot): the screens a class sees, kept stable.

Replays of the scripted story and of a real recording, paused, with the clock frozen to the recording's
time and no header clock, so every run draws the same frame. Update with
``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tuihelp import REAL, STORY, replay_app

SIZES = {"80x24": (80, 24), "160x48": (160, 48)}
THEMES = ("dark", "projector")


async def _queue_detail(pilot: Any) -> None:
    await pilot.press("u")
    pilot.app.follow("5D6E7F")
    await pilot.pause()


VIEWS: dict[str, tuple[Path, int | None, tuple[str, ...], Any]] = {
    "map": (STORY, None, (), None),
    "processes": (STORY, None, ("p",), None),
    "queue-detail": (STORY, None, (), _queue_detail),
    "replay-midway": (STORY, 42, (), None),
    "real-recording": (REAL, None, (), None),
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("view", VIEWS)
def test_snapshot(snap_compare: Any, view: str, theme: str, size: str) -> None:
    recording, position, keys, run_before = VIEWS[view]
    app = replay_app(theme=theme, position=position, recording=recording)
    assert snap_compare(app, press=keys, terminal_size=SIZES[size], run_before=run_before)
