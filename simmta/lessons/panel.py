"""The lesson panel: a Textual widget showing one LessonRunner beside the map.

It shows the lesson title, percent complete, the lesson's introduction (in a
collapsible section, open on step 1), the current step's instruction, the
commands to type (exactly what "do it for me" and autoplay run; they wrap,
never clip, and ``Y`` copies them), a prediction to make before the
experiment, a checklist of the step's expectations (ticked as the live MTA
meets them), hints on request and the explanation once the goal is met. The
body scrolls with the mouse wheel or ``J``/``K`` (page down/up), so nothing
falls below the fold on a projector. Keys: ``C`` check now, ``H`` next hint,
``N`` / ``B`` next / previous step, ``E`` answer the prediction, ``A`` do it
for me, ``X`` reset (fresh MTA, back to step 1), ``Y`` copy the commands.

The goal is checked automatically a few times a second: any path that reaches
the goal counts, as in Learn Git Branching. ``mount_lesson_panel()`` is the
one call a host app (simmta.tui's, or simmta.lessons.app's) needs.

Trust: displays lesson text (teacher-written) as Markdown and event-derived
labels as plain text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Collapsible, Input, Markdown, ProgressBar, Static

from simmta.lessons import sources
from simmta.lessons.goals import goal_mode
from simmta.lessons.runner import LessonRunner, RunnerView, describe_answer

CHECK_INTERVAL = 0.25
NOT_YET = "Not yet: the unticked items have not happened in this step."
# Upper-case letters: the TUI's own single-letter keys stay free beside the panel.
LESSON_KEYS = (
    ("C", "check", "Check"),
    ("H", "hint", "Hint"),
    ("N", "next_step", "Next step"),
    ("B", "previous_step", "Back a step"),
    ("A", "perform", "Do it for me"),
    ("X", "reset", "Reset lesson"),
    ("E", "predict", "Expect: predict first"),
    ("Y", "copy", "Copy commands"),
    ("J", "page_down", "Scroll down"),
    ("K", "page_up", "Scroll up"),
    ("I", "intro", "About this lesson"),
)
PANEL_SHARE, PANEL_MIN, PANEL_MAX = 0.4, 34, 48  # of the screen's width, beside the map
TALL = 32  # rows from which the introduction starts open on step 1 (below: collapsed)
OUTPUT_LINES = 200  # lines of "do it for me" output kept (the box scrolls)


class LessonPanel(Vertical, can_focus=True):
    """One lesson in progress."""

    DEFAULT_CSS = """
    LessonPanel { width: 40%; min-width: 34; max-width: 48; border-left: solid $primary;
                  padding: 0 1; }
    /* under the map (a narrow screen), above the footer */
    LessonPanel.stacked { max-width: 100%; min-height: 8; border-left: none;
                          border-top: solid $primary; margin-bottom: 1; }
    LessonPanel.stacked > #lesson-progress { display: none; }
    LessonPanel > #lesson-title { text-style: bold; color: $accent; }
    LessonPanel > #lesson-progress { margin-bottom: 0; }
    LessonPanel #lesson-body { height: 1fr; }
    LessonPanel #intro { margin: 0; padding: 0; border: none; }
    LessonPanel #intro > Contents { padding: 1 0 0 1; }  /* a narrow panel keeps its columns */
    LessonPanel #step-title { text-style: bold; }
    LessonPanel #commands { background: $boost; padding: 0 1; margin: 1 0 0 0; }
    LessonPanel #predict { border: round $accent; padding: 0 1; display: none; }
    LessonPanel #predict.shown { display: block; }
    LessonPanel #answer { display: none; }
    LessonPanel #answer.shown { display: block; }
    LessonPanel #checklist { margin: 1 0; }
    LessonPanel #hints { color: $warning; }
    LessonPanel #explanation { border: round $success; display: none; }
    LessonPanel #explanation.shown { display: block; }
    LessonPanel #simulated { color: $text-muted; display: none; }
    LessonPanel #simulated.shown { display: block; }
    /* a code block wraps (folds long words) instead of hiding its right end */
    LessonPanel MarkdownFence { overflow-x: hidden; }
    LessonPanel MarkdownFence > Label { width: 1fr; padding: 0 1; text-wrap: wrap; text-overflow: fold; }
    LessonPanel #output { border: round $secondary; height: auto; max-height: 12; display: none;
                          padding: 0 1; }
    LessonPanel #output.shown { display: block; }
    LessonPanel #output > Static { width: 1fr; }
    LessonPanel #privilege { color: $warning; margin: 1 0 0 0; display: none; }
    LessonPanel #privilege.shown { display: block; }
    LessonPanel #where { color: $text-muted; margin: 1 0 0 0; }
    LessonPanel > #lesson-status { color: $text-muted; height: auto; max-height: 3; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(key, f"lesson('{name}')", label) for key, name, label in LESSON_KEYS
    ]

    class StepCompleted(Message):
        def __init__(self, step_number: int) -> None:
            super().__init__()
            self.step_number = step_number

    def __init__(
        self,
        runner: LessonRunner,
        *,
        perform: Callable[[], str] | None = None,
        reset: Callable[[], None] | None = None,
        auto_check: bool = True,
        id: str | None = "lesson-panel",
    ) -> None:
        super().__init__(id=id)
        self.runner = runner
        self.perform = perform
        self.reset_mta = reset
        self.auto_check = auto_check
        self._shown: tuple[object, ...] | None = None
        self._hints: list[str] = []
        self._message = ""
        self.privilege_note = ""  # what the MTA's privilege mode simulates (show_privilege)

    def compose(self) -> ComposeResult:
        lesson = self.runner.lesson
        yield Static(f"Lesson {lesson.id}: {lesson.title}", id="lesson-title")
        yield ProgressBar(total=100, show_eta=False, id="lesson-progress")
        with VerticalScroll(id="lesson-body"):
            if lesson.intro:  # open on step 1 where there is room for it (I toggles it)
                first = self.runner.view().index == 0 and self.app.size.height >= TALL
                with Collapsible(title="About this lesson (I)", collapsed=not first, id="intro"):
                    yield Markdown(lesson.intro)
            yield Static("", id="step-title")
            yield Markdown("", id="instruction")
            yield Static("", id="commands")
            with VerticalScroll(id="output"):  # what "do it for me" ran and printed
                yield Static("", id="output-text")
            yield Static("", id="predict")
            yield Input(placeholder="your answer (a number), then Enter", id="answer")
            yield Static("", id="checklist")
            yield Markdown("", id="simulated")
            yield Markdown("", id="hints")
            yield Markdown("", id="explanation")
            yield Static("", id="privilege")
            yield Static("", id="where")
        yield Static("", id="lesson-status")

    def fit(self, width: int, height: int, map_least: int, above: int) -> bool:
        """Beside the map (docked right) at PANEL_SHARE of the screen's ``width``, at most
        PANEL_MAX, narrower where the map would get less than ``map_least`` columns (the fewest
        its boxes' names need whole); where even PANEL_MIN would leave it less, under the map,
        the whole width, in the rows the host's ``above`` leave (the progress bar then goes:
        the status line says the percent). Returns whether the panel is under the map."""
        beside = min(PANEL_MAX, int(width * PANEL_SHARE), width - map_least)
        stacked = beside < PANEL_MIN
        self.set_class(stacked, "stacked")
        self.styles.dock = "bottom" if stacked else "right"
        self.styles.width = "100%" if stacked else beside
        self.styles.height = max(8, height - above) if stacked else None
        return stacked

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
            if self._message.startswith(NOT_YET):
                self._message = ""  # stale once the step is met
            self.post_message(self.StepCompleted(before.step.number))
        self.refresh_view()

    def action_check(self) -> None:
        self.check_and_refresh()
        view = self.runner.view()
        self._message = "Goal met." if view.step_done else NOT_YET
        self.refresh_view(force=True)

    def action_hint(self) -> None:
        hint = self.runner.next_hint()
        if hint is None:
            self._message = "No more hints for this step."
        elif hint not in self._hints:
            self._hints.append(hint)
        self.refresh_view(force=True)

    def action_predict(self) -> None:
        view = self.runner.view()
        if view.step is None or view.step.predict is None:
            self._message = "This step asks no question."
            self.refresh_view(force=True)
            return
        answer = self.query_one("#answer", Input)
        answer.add_class("shown")
        answer.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._message = self.runner.answer(event.value)
        event.input.value = ""
        if self.runner.view().answer is not None:
            event.input.remove_class("shown")
            self.focus()
        self.refresh_view(force=True)

    def action_copy(self) -> None:
        commands = self._commands(self.runner.view())
        if not commands:
            self._message = "Nothing to copy in this step."
        else:
            where = f"export SIMMTA_INSTANCE={self.runner.instance.path}"
            self.app.copy_to_clipboard("\n".join([where, *commands]) + "\n")
            self._message = (
                "Copied the export line and the commands to the clipboard "
                "(where the terminal allows it: OSC 52)"
            )
        self.refresh_view(force=True)

    def action_intro(self) -> None:
        for intro in self.query("#intro").results(Collapsible):
            intro.collapsed = not intro.collapsed

    def action_page_down(self) -> None:
        self.query_one("#lesson-body", VerticalScroll).scroll_page_down()

    def action_page_up(self) -> None:
        self.query_one("#lesson-body", VerticalScroll).scroll_page_up()

    def _clear_output(self) -> None:
        self.query_one("#output", VerticalScroll).remove_class("shown")
        self.query_one("#output-text", Static).update("")

    def action_next_step(self) -> None:
        for intro in self.query("#intro").results(Collapsible):
            intro.collapsed = True  # read on step 1; the next steps need the room
        self._clear_output()
        self._hints, self._message = [], ""
        self.runner.advance()
        self.refresh_view(force=True)

    def action_previous_step(self) -> None:
        self._clear_output()
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
        lines = text.splitlines()[-OUTPUT_LINES:]
        box = self.query_one("#output", VerticalScroll)
        box.border_title = "Do it for me: what ran, what it printed"
        self.query_one("#output-text", Static).update(Text("\n".join(lines), overflow="fold"))
        box.add_class("shown")
        self._message = "Did it for you: the output is in the panel, under the commands."
        self.check_and_refresh()
        self.refresh_view(force=True)
        box.scroll_end(animate=False)
        self.query_one("#lesson-body", VerticalScroll).scroll_to_widget(box, animate=False)

    def action_reset(self) -> None:
        self._clear_output()
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
        key = (
            view.index,
            view.completed,
            view.checklist,
            view.privilege_mode,
            view.connected,
            tuple(self._hints),
            self._message,
            view.answer,
            view.outcome,
            self.privilege_note,
        )
        if key == self._shown and not force:
            return
        self._shown = key
        self.query_one("#lesson-progress", ProgressBar).update(progress=view.percent)
        self._render_step(view)
        self.query_one("#lesson-status", Static).update(self._status_line(view))
        privilege = self.query_one("#privilege", Static)
        privilege.update(self._privilege())
        privilege.set_class(bool(self.privilege_note), "shown")
        self.query_one("#where", Static).update(self._where())

    def _commands(self, view: RunnerView) -> list[str]:
        """The step's commands as typed in a shell with SIMMTA_INSTANCE set (no --instance)."""
        step = view.step
        if step is None:
            return []
        qid = self.runner.last_qid() or "QUEUE_ID"
        return [
            cmd.replace("${last_qid}", qid).replace("${instance}", "$SIMMTA_INSTANCE")
            + ("   # leave it running" if action.background else "")
            for cmd, action in zip(step.commands, step.solution, strict=True)
        ]

    def _render_step(self, view: RunnerView) -> None:
        step = view.step
        explanation = self.query_one("#explanation", Markdown)
        simulated = self.query_one("#simulated", Markdown)
        predict = self.query_one("#predict", Static)
        commands = self.query_one("#commands", Static)
        if step is None:
            self.query_one("#step-title", Static).update("Lesson complete")
            cited = "\n".join(f"- {sources.describe(src)}" for src in view.lesson.sources)
            self.query_one("#instruction", Markdown).update(
                f"You finished **{view.lesson.title}** ({view.percent} % of the steps met). "
                "Press `B` to look back, `X` to take it again."
                + (f"\n\n**Sources of this lesson**\n\n{cited}" if cited else "")
            )
            for widget in (commands, predict, self.query_one("#checklist", Static)):
                widget.update("")
            self.query_one("#hints", Markdown).update("")
            for shown_part in (explanation, simulated, predict):
                shown_part.set_class(False, "shown")
            return
        total = len(view.lesson.steps)
        self.query_one("#step-title", Static).update(
            f"Step {step.number}/{total}: {step.title}" + ("  ✓" if view.step_done else "")
        )
        self.query_one("#instruction", Markdown).update(step.instruction)
        # Commands wrap anywhere ("fold"): a long path is never cut off, and Y copies it whole.
        shown = Text("Run (Y copies):\n", style="bold")
        shown.append("\n".join(f"$ {c}" for c in self._commands(view)))
        shown.overflow = "fold"
        commands.update(shown)
        self._render_prediction(view, predict)
        lines = [
            ("[green]✓[/green] " if ok else "[dim]○[/dim] ") + _plain(label) for label, ok in view.checklist
        ]
        self.query_one("#checklist", Static).update("\n".join(lines) or "[dim]checking…[/dim]")
        self.query_one("#hints", Markdown).update(
            "\n\n".join(f"**Hint {i}.** {h}" for i, h in enumerate(self._hints, 1))
        )
        show_sim = bool(step.simulated) and goal_mode(view.privilege_mode) == "simulated"
        simulated.update("**In simulated mode.** " + step.simulated if show_sim else "")
        simulated.set_class(show_sim, "shown")
        cited = (
            "\n\n*Sources:* " + "; ".join(sources.describe(s) for s in step.sources) if step.sources else ""
        )
        shown_text = step.explanation_for(view.lesson.setup.profile)
        explanation.update(shown_text + cited if view.step_done else "")
        explanation.set_class(view.step_done, "shown")

    def _render_prediction(self, view: RunnerView, widget: Static) -> None:
        step = view.step
        predict = step.predict if step is not None else None
        widget.set_class(predict is not None, "shown")
        if step is None or predict is None:
            widget.update("")
            return
        text = Text("Predict first (E): ", style="bold")
        text.append(predict.question)
        for i, (choice, _) in enumerate(predict.choices, 1):
            text.append(f"\n  {i}. {choice}")
        if view.answer is None:
            text.append("\n(answer before you run the commands)", style="dim")
        else:
            text.append(f"\nYou predicted: {describe_answer(predict, view.answer)}", style="bold")
        if view.outcome is not None:
            seen, matched = view.outcome
            text.append(f"\nThe MTA did: {seen}  ")
            text.append(
                "✓ as you predicted" if matched else "✗ not what you predicted",
                style="green" if matched else "red",
            )
        widget.update(text)

    def _status_line(self, view: RunnerView) -> str:
        """Two short lines at most: progress, link and mode; the last message's first line."""
        mode = {
            "real": "real (kernel-enforced)",
            "rootless": "rootless (kernel-enforced, user namespace)",
            "partial": "partial (chroot real, uids simulated)",
            "simulated": "simulated (boundaries not enforced)",
        }.get(view.privilege_mode or "", "unknown")
        link = "connected" if view.connected else "[red]not connected to an MTA[/red]"
        if view.events_dropped:
            link += f" · [yellow]{view.events_dropped} events dropped: C checks again[/yellow]"
        first = self._message.splitlines()[0] if self._message else ""
        return f"{view.percent} % · {link} · {mode}" + (f"\n{_plain(first)}" if first else "")

    def show_privilege(self, note: str) -> None:
        """Keep the MTA's privilege note (what its mode simulates, what would give more) in the
        panel for the whole lesson: the lesson TUI shows it here, not as a toast over the map."""
        self.privilege_note = note
        if self.is_mounted:
            self.refresh_view(force=True)

    def _privilege(self) -> Text:
        """The note's parts (" · " between them) one a line, the first (the mode's meaning) bold."""
        parts = [p for p in self.privilege_note.split(" · ") if p]
        text = Text("\n".join(parts), overflow="fold")  # plain: never markup
        if parts:
            text.stylize("bold", 0, len(parts[0]))
        return text

    def _where(self) -> Text:
        """The instance and the keys, at the end of the body (they scroll; nothing is cut)."""
        text = Text(f"In another terminal: export SIMMTA_INSTANCE={self.runner.instance.path}\n")
        text.append("Keys: " + " · ".join(f"{k} {label.lower()}" for k, _, label in LESSON_KEYS))
        text.overflow = "fold"
        return text


def _plain(text: str) -> str:
    """Text shown inert: no Rich markup from labels or command output."""
    return text.replace("[", r"\[")


def mount_lesson_panel(
    parent: Widget,
    runner: LessonRunner,
    *,
    dock: str | None = "right",
    perform: Callable[[], str] | None = None,
    reset: Callable[[], None] | None = None,
) -> LessonPanel:
    """Add a lesson panel to ``parent`` (e.g. a host app's screen, docked beside the map).

    Hosts that keep focus elsewhere forward LESSON_KEYS to ``panel.action_lesson``.
    """
    panel = LessonPanel(runner, perform=perform, reset=reset)
    if dock:
        panel.styles.dock = dock
    parent.mount(panel)
    return panel
