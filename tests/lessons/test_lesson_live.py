"""``simmta lesson N`` end to end without a terminal: the lesson's MTA, simmta's TUI with
the lesson panel docked in it, and the panel's keys driven by Pilot."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from textual.widgets import Static

from simmta.lessons import catalog
from simmta.lessons.app import LessonController, lesson_tui
from simmta.lessons.panel import LessonPanel

REPO = Path(__file__).resolve().parents[2]


async def _until(pilot, condition, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await pilot.pause(0.1)
    return condition()


@pytest.mark.slow
def test_take_lesson_two_in_the_tui(monkeypatch: pytest.MonkeyPatch) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="simmta-lessontest-"))
    workdir.chmod(0o755)
    monkeypatch.setenv("SIMMTA_LESSON_PROGRESS", str(workdir / "progress.json"))
    lesson = catalog.find("2", REPO / "lessons")
    controller = LessonController(lesson, workdir / "instance", restart=True)
    controller.start()

    async def take() -> None:
        app = lesson_tui(controller)
        async with app.run_test(size=(180, 50)) as pilot:
            panel = app.query_one(LessonPanel)
            runner = controller.runner

            def title() -> str:
                return str(panel.query_one("#step-title", Static).render())

            assert await _until(pilot, lambda: runner.view().connected)
            assert "Step 1/4" in title()
            await pilot.press("A")  # do it for me: the stored solution, in a worker
            assert await _until(pilot, lambda: runner.view().step_done), runner.view().checklist
            assert await _until(pilot, lambda: "✓" in title())
            await pilot.press("N")
            assert "Step 2/4" in title()
            await pilot.press("m")  # the TUI's own keys still work beside the panel
            await pilot.press("C")
            assert runner.view().index == 1

    try:
        asyncio.run(take())
        saved = controller.runner.store.get(lesson.key) if controller.runner.store else {}
        assert saved.get("completed") == [1] and saved.get("current") == 1
    finally:
        controller.stop()
        shutil.rmtree(workdir, ignore_errors=True)
