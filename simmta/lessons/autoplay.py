"""``simmta lesson check --autoplay``: prove a lesson works by playing its solution.

For each lesson: start a fresh MTA in a temporary instance with the lesson's
setup, subscribe to its event bus, then for every step check that its goal is
*not* already met (a step must wait for the student's action, not tick itself
from what happened before; a step that asks a prediction waits for the answer),
answer its prediction if it asks one, perform the
stored solution (the commands the panel shows, word for word) and wait
(polling on each new event, with the step's time limit) until the step's goal
is met, and that one of the prediction's choices describes what happened. The
first step that fails any of this fails the lesson, naming the step, the
expectations still open and what the solution's commands printed. The time
each lesson took is what ``simmta lesson track`` adds up.

Trust: runs only simmta's own tools (see simmta.lessons.session).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from simmta.core import privilege
from simmta.core.busclient import Subscription
from simmta.core.errors import SimmtaError
from simmta.lessons.format import Lesson
from simmta.lessons.runner import LessonRunner
from simmta.lessons.session import ActionResult, LessonMTA

SNAPSHOT_TIMEOUT = 15.0
SETTLE = 0.3  # seconds of late events from the previous step a new step must survive unmet


@dataclass
class CheckResult:
    lesson: Lesson
    ok: bool = False
    failed_step: int | None = None
    reason: str = ""
    privilege_mode: str | None = None
    seconds: float = 0.0
    actions: list[ActionResult] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)  # solution run until goal met

    def report(self) -> str:
        head = f"lesson {self.lesson.id} ({self.lesson.slug})"
        mode = f" [{self.privilege_mode}]" if self.privilege_mode else ""
        if self.ok:
            return f"{head}: ok, {len(self.lesson.steps)} steps in {self.seconds:.1f} s{mode}"
        where = f"step {self.failed_step}" if self.failed_step else "setup"
        title = f" ({self.lesson.steps[self.failed_step - 1].title})" if self.failed_step else ""
        return f"{head}: FAILED at {where}{title}{mode}: {self.reason}"


def check_lesson(
    lesson: Lesson, workdir: Path | None = None, keep: bool = False, log: Callable[[str], None] | None = None
) -> CheckResult:
    say = log or (lambda _text: None)
    result = CheckResult(lesson)
    began = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix=f"simmta-lesson-{lesson.id:02d}-", dir=workdir))
    base.chmod(0o711)  # as root, mail_owner must be able to pass through to the queue
    mta = LessonMTA(lesson, base / "instance", say)
    runner = LessonRunner(lesson, mta.instance, store=None, resume=False)
    bus: Subscription | None = None
    try:
        try:
            mta.start()
        except SimmtaError as e:
            result.reason = str(e)
            return result
        bus = runner.subscription().start()
        if not _wait(runner, SNAPSHOT_TIMEOUT, lambda: runner.view().connected):
            result.reason = "no snapshot from the event bus" + (f" ({bus.problem})" if bus.problem else "")
            return result
        result.privilege_mode = runner.view().privilege_mode
        for step in lesson.steps:
            runner.go_to(step.number - 1)
            say(f"  step {step.number}: {step.title}")
            runner.wait_for_event(SETTLE, settle=SETTLE)
            # (a step that asks a prediction waits for the answer: that is the student's action)
            if step.predict is None and runner.goal_met():
                result.failed_step = step.number
                result.reason = (
                    "the goal was already met when the step began: it must wait for the student's action"
                )
                return result
            if step.predict is not None:
                say("    " + runner.answer("1"))
            step_began = time.monotonic()
            for action in step.solution:
                context = {**runner.context(), "last_qid": runner.last_qid()}
                try:
                    done = mta.perform(action, context, step.timeout)
                except SimmtaError as e:
                    done = ActionResult(action, False, str(e))
                result.actions.append(done)
                say("    " + done.summary().replace("\n", "\n    "))
                if not done.ok:
                    result.failed_step = step.number
                    result.reason = "the stored solution failed: " + done.summary()
                    return result
            if not _wait(runner, step.timeout, runner.check):
                open_items = [label for label, ok in runner.view().checklist if not ok]
                result.failed_step = step.number
                result.reason = f"goal not met within {step.timeout:.0f} s; still open: " + "; ".join(
                    open_items or ["(nothing evaluated)"]
                )
                if bus.problem:
                    result.reason += f" (event bus: {bus.problem})"
                return result
            outcome = runner.view().outcome
            if step.predict is not None and (outcome is None or outcome[0] == "none of the choices"):
                result.failed_step = step.number
                result.reason = "none of the prediction's choices describes what the MTA did"
                return result
            result.step_seconds.append(time.monotonic() - step_began)
        result.ok = True
        return result
    finally:
        if bus is not None:
            bus.stop()
        mta.stop()
        result.seconds = time.monotonic() - began
        if result.ok and not keep:
            privilege.remove_instance(mta.instance.path)  # rootless: its files are the range's
            shutil.rmtree(base, ignore_errors=True)
        elif not result.ok:
            seen = base / "lesson-events.jsonl"
            with open(seen, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(e) + "\n" for e in list(runner.events))
            result.reason += f"\n  (instance kept in {mta.instance.path}; events seen: {seen})"


def _wait(runner: LessonRunner, timeout: float, done: Callable[[], bool]) -> bool:
    """Poll ``done`` after each event (or every 0.2 s) until it holds or the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        if done():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        runner.wait_for_event(min(0.2, remaining))
