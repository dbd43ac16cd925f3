"""The lesson panel under Textual's Pilot, fed hand-made events (no MTA)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lessonkit import LESSON, delivered, snapshot, sync
from textual.app import App
from textual.widgets import Collapsible, Markdown, ProgressBar, Static

from simmta.core.instance import Instance
from simmta.lessons.app import LessonApp
from simmta.lessons.format import parse_text
from simmta.lessons.panel import TALL, LessonPanel, mount_lesson_panel
from simmta.lessons.progress import ProgressStore
from simmta.lessons.runner import LessonRunner

TWO_STEPS = (
    LESSON
    + """
## Carol too

Now send to carol.

```step
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
"""
)


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
        assert "$ simmta send --from alice@simmta.test --to carol@simmta.test" in text_of(app, "#commands")
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
        return "simmta send ... ok\n" + "\n".join(f"    output line {i}" for i in range(1, 31))

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
        # the output is in the panel, in a bounded box that scrolls; the status line stays short
        box = app.query_one("#output")
        assert box.has_class("shown") and box.region.height <= 12
        shown = text_of(app, "#output-text")
        assert "simmta send ... ok" in shown and "output line 30" in shown
        status = text_of(app, "#lesson-status")
        assert "output line" not in status and len(status.splitlines()) <= 2, status
        assert "output is in the panel" in status
        assert runner.view().step_done
        intro = app.query_one("#intro", Collapsible)
        assert not intro.collapsed  # 40 rows: open on step 1
        await pilot.press("N")  # the next step starts with no stale output, the intro closed
        assert not box.has_class("shown") and intro.collapsed


LONG_COMMAND = (
    "simmta send --raw 'EHLO client.example' 'MAIL FROM:<alice@simmta.test> SIZE=50000000' "
    "'RCPT TO:<bob@simmta.test>' QUIT"
)
PROJECTOR = LESSON.replace(
    "Send mail from alice to bob.",
    f"""Send mail from alice to bob. A long
command (the panel must show all of it, wrapped, never cut off):

```
{LONG_COMMAND}
```
""",
).replace(
    'solution = ["send --from alice@simmta.test --to bob@simmta.test"]',
    'solution = ["send --from alice@simmta.test --to bob@simmta.test --subject '
    "'a subject long enough to need more than one line on a projector at 80 columns'\"]"
    '\n\n[predict]\nquestion = "Who delivers it?"\n\n[[predict.choice]]\ntext = "local"\n'
    'event = "delivery/delivered"\nwhere = { service = "local" }\n\n[[predict.choice]]\n'
    'text = "smtpd"\nevent = "delivery/delivered"\nwhere = { service = "smtpd" }',
)


def projector_runner(tmp_path: Path) -> LessonRunner:
    lesson = parse_text(PROJECTOR, "projector.md")
    runner = LessonRunner(
        lesson,
        Instance("/srv/simmta-example/a/rather/long/instance/path/for/a/class"),
        ProgressStore(tmp_path / "p.json"),
    )
    runner.feed(snapshot("real"))
    runner.answer("1")
    for event in delivered("A2", "bob@simmta.test"):
        runner.feed(event)
    runner.check()
    return runner


class Frozen(LessonApp):
    def on_mount(self) -> None:  # runs after LessonApp's: no animation, a stable picture
        self.animation_level = "none"


async def settle(pilot: Any) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_snapshot_on_a_projector(tmp_path: Path, snap_compare, size: tuple[int, int]) -> None:
    assert snap_compare(Frozen(projector_runner(tmp_path)), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
@sync
async def test_nothing_is_clipped_on_a_projector(tmp_path: Path, size: tuple[int, int]) -> None:
    """Commands wrap (every character shown), code blocks scroll sideways, the body scrolls."""
    runner = projector_runner(tmp_path)
    app = Frozen(runner)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        commands = app.query_one("#commands", Static)
        width = commands.content_region.width
        lines = str(commands.render()).split("\n")
        wrapped = sum(max(1, -(-len(line) // width)) for line in lines)
        assert commands.content_region.height >= wrapped, (wrapped, commands.content_region)
        fences = list(app.query("MarkdownFence"))
        assert fences
        for fence in fences:  # the code wraps inside the block: nothing hidden to the right
            code = fence.query_one("Label")
            assert code.virtual_size.width <= fence.content_region.width, "a code block is clipped"
        intro = app.query_one("#intro", Collapsible)
        assert intro.collapsed == (size[1] < TALL)  # a short screen keeps the body for the step
        await pilot.press("I")
        assert intro.collapsed == (size[1] >= TALL)
        status = app.query_one("#lesson-status", Static)
        assert status.region.height <= 3 and "SIMMTA_INSTANCE" not in str(status.render())
        body = app.query_one("#lesson-body")
        before = body.scroll_y
        await pilot.press("J")
        await pilot.pause()
        assert body.max_scroll_y == 0 or body.scroll_y > before  # J scrolls the body down
        assert "✓ as you predicted" in str(app.query_one("#predict", Static).render())


@sync
async def test_copy_key_and_stale_feedback(tmp_path: Path) -> None:
    runner = make_runner(tmp_path)
    app = LessonApp(runner)
    async with app.run_test(size=(120, 40)) as pilot:
        copied: list[str] = []
        app.copy_to_clipboard = copied.append  # type: ignore[method-assign]
        await pilot.press("C")
        assert "Not yet" in text_of(app, "#lesson-status")
        await pilot.press("Y")
        assert copied == [
            "export SIMMTA_INSTANCE=/srv/simmta-example\n"
            "simmta send --from alice@simmta.test --to bob@simmta.test\n"
        ]
        await pilot.press("C")
        for event in delivered("A2", "bob@simmta.test"):
            runner.feed(event)
        app.query_one(LessonPanel).check_and_refresh()
        await pilot.pause()
        assert "Not yet" not in text_of(app, "#lesson-status")  # cleared when the step is met


def test_lesson_keys_leave_the_tuis_keys_alone() -> None:
    """The panel docks into simmta's TUI: none of its keys may shadow one of the TUI's."""
    from simmta.lessons.panel import LESSON_KEYS
    from simmta.tui.app import SimmtaApp

    tui_keys = {k for b in SimmtaApp.BINDINGS for k in str(getattr(b, "key", "")).split(",")}
    assert tui_keys  # the TUI has bindings to compare with
    clash = {key for key, _, _ in LESSON_KEYS} & tui_keys
    assert not clash, clash
