"""``simmta lesson N``: start the lesson's MTA and open a Textual app with the lesson panel.

The lesson gets its own instance (``--instance DIR``, or one per lesson under
``$XDG_STATE_HOME/simmta/lessons/instances/``) started fresh with the lesson's
setup, so a lesson's short retry times or faults never leak into the user's
own MTA. The app is simmta's TUI (``simmta.tui.app.SimmtaApp``) with the
lesson panel docked on the right (``mount_lesson_panel``) and the lesson keys
added; if the TUI cannot be loaded, ``LessonApp`` shows the panel beside a
plain event log. The student may also type commands in another terminal with
``SIMMTA_INSTANCE`` set (printed at start).

Trust: runs simmta's own tools only (simmta.lessons.session).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Header, RichLog

from simmta.core.busclient import Subscription
from simmta.core.errors import SimmtaError
from simmta.lessons.format import Lesson
from simmta.lessons.panel import LESSON_KEYS, LessonPanel, mount_lesson_panel
from simmta.lessons.progress import ProgressStore
from simmta.lessons.runner import LessonRunner
from simmta.lessons.session import LessonMTA
from simmta.tui.widgets.quiet import QuietFooter


def lesson_instance_dir(lesson: Lesson) -> Path:
    """Where the lesson's MTA lives: under the user's state directory, unless (as root)
    mail_owner could not pass through it, e.g. a 0700 home under sudo: then a 0711
    directory of its own in the system's temporary directory."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    path = Path(state) / "simmta" / "lessons" / "instances" / lesson.key
    if os.geteuid() != 0 or _passable(path.parent):
        return path
    base = Path(tempfile.gettempdir()) / f"simmta-lessons-{os.getuid()}"
    base.mkdir(mode=0o711, exist_ok=True)
    if base.lstat().st_uid != os.getuid() or base.is_symlink():
        raise SimmtaError(f"{base} exists but is not ours: remove it or give --instance DIR")
    base.chmod(0o711)
    return base / lesson.key


def _passable(directory: Path) -> bool:
    """Whether every existing ancestor of ``directory`` lets others pass (o+x)."""
    return all(d.stat().st_mode & stat.S_IXOTH for d in (directory, *directory.parents) if d.exists())


class LessonController:
    """The lesson's MTA, its bus subscription and the runner, kept together."""

    def __init__(self, lesson: Lesson, instance_dir: Path, restart: bool):
        self.mta = LessonMTA(lesson, instance_dir)
        self.runner = LessonRunner(lesson, self.mta.instance, ProgressStore(), resume=not restart)
        if restart:
            self.runner.reset()
        self.bus: Subscription | None = None
        # called with each new subscription before it starts (the lesson TUI's feed shares it)
        self.attach: Callable[[Subscription], None] | None = None

    def start(self) -> None:
        self.mta.start(fresh=True)
        self.runner.forget_mta()
        self.runner.restart_step()
        self.bus = self.runner.subscription()
        if self.attach is not None:
            self.attach(self.bus)
        self.bus.start()

    def stop(self) -> None:
        if self.bus is not None:
            self.bus.stop()
            self.bus = None
        self.mta.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def where(self) -> str:
        path = self.mta.instance.path
        return f"lesson MTA: instance {path}\nin another terminal: export SIMMTA_INSTANCE={path}"

    def perform_current(self) -> str:
        """Do the current step's stored solution (the panel's "do it for me")."""
        step = self.runner.view().step
        if step is None:
            return "The lesson is finished."
        results = []
        for action in step.solution:
            context = {**self.runner.context(), "last_qid": self.runner.last_qid()}
            try:
                results.append(self.mta.perform(action, context, step.timeout).summary(PERFORM_LINES))
            except Exception as e:  # shown to the student, never a traceback
                results.append(f"{action.describe()}: {e}")
        return "\n".join(results)


# Under the map (a narrow screen) the panel leaves the TUI its header, status line (2), tabs (2),
# the map's 9 rows (the fewest the compact map's frames take), the narration and the footer.
ROWS_ABOVE_PANEL = 1 + 2 + 2 + 9 + 1 + 1
PERFORM_LINES = 60  # lines of each command's output "do it for me" shows (the panel keeps 200)

LESSON_BINDINGS: list[BindingType] = [
    Binding(key, f"lesson('{name}')", label) for key, name, label in LESSON_KEYS
]


class LessonApp(App[int]):
    """A minimal host: an event log on the left, the lesson panel on the right.

    Used when the full TUI cannot be loaded, and by the tests.
    """

    TITLE = "simmta lesson"
    # No map beside it here: the panel keeps the wider share (beside the map it takes 40 %).
    CSS = "LessonPanel { width: 58%; max-width: 60; }"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("q", "quit", "Quit"), *LESSON_BINDINGS]

    def __init__(self, runner: LessonRunner, controller: LessonController | None = None):
        super().__init__()
        self.runner = runner
        self.controller = controller
        self._seen = 0

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield RichLog(id="event-log", markup=False, wrap=True, max_lines=2000)
            c = self.controller
            yield LessonPanel(
                self.runner, perform=c.perform_current if c else None, reset=c.restart if c else None
            )
        yield QuietFooter()

    def on_mount(self) -> None:
        self.sub_title = self.runner.lesson.title
        if self.controller is not None:
            self.query_one(RichLog).write(self.controller.where())
        self.query_one(LessonPanel).focus()
        self._drain_events()
        self.set_interval(0.5, self._drain_events)

    def action_lesson(self, name: str) -> None:
        self.query_one(LessonPanel).action_lesson(name)

    def _drain_events(self) -> None:
        events = self.runner.events
        log = self.query(RichLog).first() if self.query(RichLog) else None
        if log is None:  # the app is shutting down
            return
        for event in events[self._seen : self._seen + 200]:
            raw = event.get("data")
            data: dict[str, Any] = raw if isinstance(raw, dict) else {}
            said = next(
                (str(data[k]) for k in ("outcome", "line", "rcpt", "child_service", "to") if k in data), ""
            )
            log.write(
                f"{event.get('service', '?'):>8} {event.get('kind')}/{event.get('type')}"
                f" {event.get('qid') or ''} {said[:120]}"
            )
        self._seen = min(len(events), self._seen + 200)


def lesson_tui(controller: LessonController) -> App[Any]:
    """simmta's TUI (map, processes, queue, ...) with the lesson panel docked on the right."""
    from textual import events
    from textual.css.query import NoMatches

    from simmta.tui import app as tui_app
    from simmta.tui import maplayout
    from simmta.tui.app import SimmtaApp
    from simmta.tui.feed import LiveFeed
    from simmta.tui.widgets.diagram import Diagram
    from simmta.tui.widgets.hoplist import HopList
    from simmta.tui.widgets.mapview import NodeDetail

    instance = controller.mta.instance

    class LessonTUI(SimmtaApp):
        # Textual resolves CSS_PATH beside the defining module: point at the TUI's own
        CSS_PATH = str(Path(tui_app.__file__).with_name(str(SimmtaApp.CSS_PATH)))
        BINDINGS: ClassVar[list[BindingType]] = [*SimmtaApp.BINDINGS, *LESSON_BINDINGS]

        map_least: tuple[int, int] = (0, 0)  # (id of the map's graph, the columns it needs)

        def on_mount(self) -> None:
            super().on_mount()
            self.sub_title = f"lesson {controller.runner.lesson.id}"
            panel = mount_lesson_panel(
                self.base, controller.runner, perform=controller.perform_current, reset=self._fresh_mta
            )
            panel.show_privilege(self.privilege_told)  # told before the panel was there
            self.fit_panel()

        def tell_privilege(self, note: str) -> None:  # kept in the panel: no toast over the map
            for panel in self.base.query(LessonPanel).results(LessonPanel):
                panel.show_privilege(note)

        def place_hop_list(self, width: int) -> None:
            """Beside the lesson panel the narration tells the hops: the hop list only on ``v``."""
            super().place_hop_list(width)
            if not self.hops_chosen:
                self.base.query_one(HopList).display = False

        def fit_panel(self, size: tuple[int, int] | None = None) -> None:
            """The panel beside the map where the map keeps the columns its boxes' names need
            (``maplayout.least_width``), else under it (the box detail then gives its rows)."""
            panels = self.base.query(LessonPanel)
            if not panels:
                return
            graph = self.base.query_one(Diagram).graph
            if self.map_least[0] != id(graph):
                self.map_least = (id(graph), maplayout.least_width(graph))
            width, height = size or self.size
            stacked = panels.first().fit(width, height, self.map_least[1], ROWS_ABOVE_PANEL)
            self.base.query_one(NodeDetail).display = not stacked

        def on_resize(self, event: events.Resize) -> None:  # (Textual runs SimmtaApp's too)
            if self.screen_stack:
                self.fit_panel(event.size)

        def refresh_views(self) -> None:
            super().refresh_views()
            with contextlib.suppress(NoMatches):  # a new services table may need other room
                if self.screen_stack and id(self.base.query_one(Diagram).graph) != self.map_least[0]:
                    self.fit_panel()

        def action_lesson(self, name: str) -> None:
            self.base.query_one(LessonPanel).action_lesson(name)

        def _fresh_mta(self) -> None:  # in the panel's worker thread: the new MTA's
            controller.restart()  # subscription feeds a new feed (its snapshot resets the model)

        def share_subscription(self, sub: Subscription) -> None:
            self.feed = LiveFeed(instance.bus_socket, subscription=sub)

    app = LessonTUI(LiveFeed(instance.bus_socket), instance=instance.path)
    controller.attach = app.share_subscription
    return app


def run_lesson(lesson: Lesson, instance_dir: Path | None, restart: bool) -> int:
    controller = LessonController(lesson, instance_dir or lesson_instance_dir(lesson), restart)
    try:
        app: App[Any] = lesson_tui(controller)  # (before the MTA: its feed shares the subscription)
    except ImportError:  # the full TUI is not available: the minimal host will do
        app = LessonApp(controller.runner, controller)
    print(f"starting a fresh MTA for lesson {lesson.id} in {controller.mta.instance.path} …")
    controller.start()
    print(controller.where())
    try:
        app.run()
    finally:
        controller.stop()
    return 0
