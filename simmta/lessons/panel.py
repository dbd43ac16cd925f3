"""The lesson panel: a Textual widget showing one LessonRunner beside the map.

It shows the lesson title, percent complete, the current step's instruction,
a checklist of the step's expectations (ticked as the live MTA meets them),
hints on request and the explanation once the goal is met. Keys: ``c`` check
now, ``h`` next hint, ``n`` / ``p`` next / previous step, ``a`` do it for me
(perform the stored solution), ``r`` reset (fresh MTA, back to step 1).

The goal is checked automatically a few times a second: any path that reaches
the goal counts, as in Learn Git Branching. ``mount_lesson_panel()`` is the
one call a host app (simmta.tui's, or simmta.lessons.app's) needs.

Trust: displays lesson text (teacher-written) as Markdown and event-derived
labels as plain text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Markdown, ProgressBar, Static

from simmta.lessons.goals import goal_mode
from simmta.lessons.runner import LessonRunner, RunnerView

CHECK_INTERVAL = 0.25
# Upper-case letters: the TUI's own single-letter keys stay free beside the panel.
LESSON_KEYS = (
    ("C", "check", "Check"),
    ("H", "hint", "Hint"),
    ("N", "next_step", "Next step"),
    ("B", "previous_step", "Back a step"),
    ("A", "perform", "Do it for me"),
    ("X", "reset", "Reset lesson"),
)


class LessonPanel(Vertical, can_focus=True):
    """One lesson in progress."""

    DEFAULT_CSS = """
    LessonPanel { width: 42%; min-width: 34; max-width: 64; border-left: solid $primary;
                  padding: 0 1; }
    LessonPanel > #lesson-title { text-style: bold; color: $accent; }
    LessonPanel > #lesson-progress { margin-bottom: 1; }
    LessonPanel #step-title { text-style: bold; }
    LessonPanel #checklist { margin: 1 0; }
    LessonPanel #hints { color: $warning; }
    LessonPanel #explanation { border: round $success; display: none; }
    LessonPanel #explanation.shown { display: block; }
    LessonPanel #simulated { color: $text-muted; display: none; }
    LessonPanel #simulated.shown { display: block; }
    LessonPanel > #lesson-status { color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(key, f"lesson('{name}')", label) for key, name, label in LESSON_KEYS
    ]

    class StepCompleted(Message):
        def __init__(self, step_number: int) -> None:
            super().__init__()
            self.step_number = step_number

    def __init__(self, runner: LessonRunner, *, perform: Callable[[], str] | None = None,
                 reset: Callable[[], None] | None = None, auto_check: bool = True,
                 id: str | None = "lesson-panel") -> None:
        super().__init__(id=id)
        self.runner = runner
        self.perform = perform
        self.reset_mta = reset
        self.auto_check = auto_check
        self._shown: tuple[object, ...] | None = None
        self._hints: list[str] = []
        self._message = ""

    def compose(self) -> ComposeResult:
        lesson = self.runner.lesson
        yield Static(f"Lesson {lesson.id}: {lesson.title}", id="lesson-title")
        yield ProgressBar(total=100, show_eta=False, id="lesson-progress")
        with VerticalScroll(id="lesson-body"):
            yield Static("", id="step-title")
            yield Markdown("", id="instruction")
            yield Static("", id="checklist")
            yield Markdown("", id="simulated")
            yield Markdown("", id="hints")
            yield Markdown("", id="explanation")
        yield Static("", id="lesson-status")

    def on_mount(self) -> None:
        self.refresh_view()
        if self.auto_check:
            self.set_interval(CHECK_INTERVAL, self.check_and_refresh)

    # -- actions
    def action_lesson(self, name: str) -> None:
        """One of LESSON_KEYS' actions (hosts forward their key bindings here)."""
        if name in {n for _, n, _ in LESSON_KEYS}:
            getattr(self, f"action_{name}")()

    def check_and_refresh(self) -> None:
        before = self.runner.view()
        done = self.runner.check()
        if done and not before.step_done and before.step is not None:
            self.post_message(self.StepCompleted(before.step.number))
        self.refresh_view()

    def action_check(self) -> None:
        self.check_and_refresh()
        view = self.runner.view()
        self._message = ("Goal met." if view.step_done else
                         "Not yet: the unticked items have not happened since this step began.")
        self.refresh_view(force=True)

    def action_hint(self) -> None:
        hint = self.runner.next_hint()
        if hint is None:
            self._message = "No more hints for this step."
        elif hint not in self._hints:
            self._hints.append(hint)
        self.refresh_view(force=True)

    def action_next_step(self) -> None:
        self._hints, self._message = [], ""
        self.runner.advance()
        self.refresh_view(force=True)

    def action_previous_step(self) -> None:
        self._hints, self._message = [], ""
        self.runner.go_to(self.runner.view().index - 1)
        self.refresh_view(force=True)

    def action_perform(self) -> None:
        if self.perform is None:
            self._message = "No MTA attached: run the suggested command yourself."
            self.refresh_view(force=True)
            return
        perform = self.perform
        self._message = "Performing the stored solution…"
        self.refresh_view(force=True)

        def work() -> None:
            text = perform()
            self.app.call_from_thread(self._performed, text)

        self.run_worker(work, thread=True, exclusive=True, group="lesson-perform")

    def _performed(self, text: str) -> None:
        self._message = text
        self.check_and_refresh()
        self.refresh_view(force=True)

    def action_reset(self) -> None:
        self._hints, self._message = [], ""
        if self.reset_mta is not None:
            reset = self.reset_mta
            self._message = "Starting a fresh MTA…"

            def work() -> None:
                reset()
                self.app.call_from_thread(self.refresh_view, True)

            self.run_worker(work, thread=True, exclusive=True, group="lesson-reset")
        self.runner.reset()
        self.refresh_view(force=True)

    # -- rendering
    def refresh_view(self, force: bool = False) -> None:
        view = self.runner.view()
        key = (view.index, view.completed, view.checklist, view.privilege_mode, view.connected,
               tuple(self._hints), self._message)
        if key == self._shown and not force:
            return
        self._shown = key
        self.query_one("#lesson-progress", ProgressBar).update(progress=view.percent)
        self._render_step(view)
        self.query_one("#lesson-status", Static).update(self._status_line(view))

    def _render_step(self, view: RunnerView) -> None:
        step = view.step
        explanation = self.query_one("#explanation", Markdown)
        simulated = self.query_one("#simulated", Markdown)
        if step is None:
            self.query_one("#step-title", Static).update("Lesson complete")
            sources = "\n".join(f"- {src}" for src in view.lesson.sources)
            self.query_one("#instruction", Markdown).update(
                f"You finished **{view.lesson.title}** ({view.percent} % of the steps met). "
                "Press `B` to look back, `X` to take it again."
                + (f"\n\n**Sources of this lesson**\n\n{sources}" if sources else ""))
            self.query_one("#checklist", Static).update("")
            self.query_one("#hints", Markdown).update("")
            explanation.set_class(False, "shown")
            simulated.set_class(False, "shown")
            return
        total = len(view.lesson.steps)
        self.query_one("#step-title", Static).update(
            f"Step {step.number}/{total}: {step.title}" + ("  ✓" if view.step_done else ""))
        action = f"\n\nSuggested: `{step.action}`" if step.action else ""
        intro = f"{view.lesson.intro}\n\n---\n\n" if view.index == 0 and view.lesson.intro else ""
        self.query_one("#instruction", Markdown).update(intro + step.instruction + action)
        lines = [("[green]✓[/green] " if ok else "[dim]○[/dim] ") + _plain(label)
                 for label, ok in view.checklist]
        self.query_one("#checklist", Static).update("\n".join(lines) or "[dim]checking…[/dim]")
        self.query_one("#hints", Markdown).update(
            "\n\n".join(f"**Hint {i}.** {h}" for i, h in enumerate(self._hints, 1)))
        show_sim = bool(step.simulated) and goal_mode(view.privilege_mode) == "simulated"
        simulated.update("**In simulated mode.** " + step.simulated if show_sim else "")
        simulated.set_class(show_sim, "shown")
        sources = ("\n\n*Sources:* " + "; ".join(step.sources)) if step.sources else ""
        explanation.update(step.explanation + sources if view.step_done else "")
        explanation.set_class(view.step_done, "shown")

    def _status_line(self, view: RunnerView) -> str:
        mode = {"real": "real (kernel-enforced)",
                "rootless": "rootless (kernel-enforced in a user namespace)",
                "partial": "partial (chroot real, uids simulated)",
                "simulated": "simulated (not root: boundaries not enforced)"}.get(
                    view.privilege_mode or "", "unknown")
        link = "connected" if view.connected else "[red]not connected to an MTA[/red]"
        if view.events_dropped:
            link += (f" · [yellow]{view.events_dropped} events dropped by the bus: "
                     "the picture may lag; C checks again[/yellow]")
        keys = " · ".join(f"{key} {label.lower()}" for key, _, label in LESSON_KEYS)
        msg = f"\n{_plain(self._message)}" if self._message else ""
        where = f"\n[dim]SIMMTA_INSTANCE={_plain(str(self.runner.instance.path))}[/dim]"
        return (f"{view.percent} % · {link} · privilege mode: {mode}{msg}{where}"
                f"\n[dim]{keys}[/dim]")


def _plain(text: str) -> str:
    """Text shown inert: no Rich markup from labels or command output."""
    return text.replace("[", r"\[")


def mount_lesson_panel(parent: Widget, runner: LessonRunner, *, dock: str | None = "right",
                       perform: Callable[[], str] | None = None,
                       reset: Callable[[], None] | None = None) -> LessonPanel:
    """Add a lesson panel to ``parent`` (e.g. a host app's screen, docked beside the map).

    Hosts that keep focus elsewhere forward LESSON_KEYS to ``panel.action_lesson``.
    """
    panel = LessonPanel(runner, perform=perform, reset=reset)
    if dock:
        panel.styles.dock = dock
    parent.mount(panel)
    return panel
