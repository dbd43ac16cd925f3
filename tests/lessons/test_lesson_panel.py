"""The lesson panel under Textual's Pilot, fed hand-made events (no MTA)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lessonkit import LESSON, delivered, snapshot, sync
from textual.app import App
from textual.widgets import Markdown, ProgressBar, Static

from simmta.core.instance import Instance
from simmta.lessons.app import LessonApp
from simmta.lessons.format import parse_text
from simmta.lessons.panel import LessonPanel, mount_lesson_panel
from simmta.lessons.progress import ProgressStore
from simmta.lessons.runner import LessonRunner

TWO_STEPS = LESSON + '''
## Carol too

Now send to carol.

```step
action = "simmta send --from alice@simmta.test --to carol@simmta.test"
solution = ["send --from alice@simmta.test --to carol@simmta.test"]

[[expect]]
event = "delivery/delivered"
where = { data.rcpt = "carol@simmta.test" }
label = "carol got it"
```

### Hint
Like before, to carol.

### Explanation
Carol has mail.
'''


def make_runner(tmp_path: Path) -> LessonRunner:
    lesson = parse_text(TWO_STEPS, "two.md")
    # a fixed instance path (only shown, never created) keeps the snapshot stable
    return LessonRunner(lesson, Instance("/srv/simmta-example"), ProgressStore(tmp_path / "p.json"))


def text_of(app: App[Any], selector: str) -> str:
    return str(app.query_one(selector, Static).render())


@sync
async def test_panel_follows_the_runner(tmp_path: Path) -> None:
    runner = make_runner(tmp_path)
    runner.feed(snapshot("simulated"))
    app = LessonApp(runner)
    async with app.run_test(size=(140, 45)) as pilot:
        panel = app.query_one(LessonPanel)
        await pilot.press("C")
        assert "Step 1/2: Send to bob" in text_of(app, "#step-title")
        assert "○ a message reached bob's Maildir" in text_of(app, "#checklist")
        assert "Not yet" in text_of(app, "#lesson-status")
        assert "simulated" in text_of(app, "#lesson-status")
        assert not app.query_one("#explanation", Markdown).has_class("shown")

        # mail to the wrong user leaves the step open
        for event in delivered("A1", "carol@simmta.test"):
            runner.feed(event)
        await pilot.press("C")
        assert runner.view().percent == 0
        assert "✓" not in text_of(app, "#step-title")

        await pilot.press("H")
        assert "Use simmta send." in app.query_one("#hints", Markdown).source

        for event in delivered("A2", "bob@simmta.test"):
            runner.feed(event)
        panel.check_and_refresh()
        await pilot.pause()
        assert "✓" in text_of(app, "#step-title")
        assert "✓ a message reached bob's Maildir" in text_of(app, "#checklist")
        assert app.query_one("#explanation", Markdown).has_class("shown")
        assert "It went through cleanup." in app.query_one("#explanation", Markdown).source
        assert app.query_one("#lesson-progress", ProgressBar).progress == 50

        await pilot.press("N")
        assert "Step 2/2: Carol too" in text_of(app, "#step-title")
        assert "simmta send --from alice@simmta.test --to carol@simmta.test" in app.query_one(
            "#instruction", Markdown).source
        await pilot.press("B")
        assert "Step 1/2" in text_of(app, "#step-title")
        await pilot.press("X")
        assert runner.view().percent == 0 and runner.view().index == 0


@sync
async def test_do_it_for_me_without_an_mta(tmp_path: Path) -> None:
    app = LessonApp(make_runner(tmp_path))
    async with app.run_test(size=(140, 45)) as pilot:
        await pilot.press("A")
        assert "run the suggested command yourself" in text_of(app, "#lesson-status")


@sync
async def test_do_it_for_me_runs_in_a_worker(tmp_path: Path) -> None:
    runner = make_runner(tmp_path)
    calls: list[str] = []

    def perform() -> str:
        calls.append("done")
        for event in delivered("B1", "bob@simmta.test"):
            runner.feed(event)
        return "simmta send ... ok"

    class Host(App[None]):
        def on_mount(self) -> None:  # the panel alone, mounted as the TUI mounts it
            mount_lesson_panel(self.screen, runner, perform=perform)

    app = Host()
    async with app.run_test(size=(100, 40)) as pilot:
        app.query_one(LessonPanel).focus()
        await pilot.press("A")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert calls == ["done"]
        assert "simmta send ... ok" in text_of(app, "#lesson-status")
        assert runner.view().step_done


def test_snapshot_of_a_lesson_in_progress(tmp_path: Path, snap_compare) -> None:
    runner = make_runner(tmp_path)
    runner.feed(snapshot("real"))
    for event in delivered("A2", "bob@simmta.test"):
        runner.feed(event)
    runner.check()

    class Frozen(LessonApp):
        def on_mount(self) -> None:  # runs after LessonApp's: no animation, a stable picture
            self.animation_level = "none"

    async def settle(pilot: Any) -> None:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    assert snap_compare(Frozen(runner), terminal_size=(130, 40), run_before=settle)
