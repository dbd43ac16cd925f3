"""The lesson runner: which step is current, whether its goal is met, progress.

``LessonRunner`` is plain Python with no I/O of its own, so the Textual panel,
the headless autoplay checker and the tests drive the same object: events go in
through ``feed()`` (from any thread), ``check()`` evaluates the current step's
goal against the events since the step began and the live state, and ``view()``
returns an immutable ``RunnerView`` that a UI renders. When a goal is met the
step is marked complete and its explanation is shown; ``advance()`` moves on.
A step with a prediction completes only once the student answered
(``answer()``, before the experiment), and then records what the live MTA did
and whether it matched the answer. Progress (and answers) are saved through an
optional ``ProgressStore``.

Trust: events are untrusted gossip from the MTA; they are only matched
against the lesson's declarative goals (see simmta.lessons.goals).
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from simmta.core import config as config_mod
from simmta.core.busclient import Subscription
from simmta.core.instance import Instance
from simmta.lessons.format import Lesson, Prediction, Step
from simmta.lessons.goals import Evaluation
from simmta.lessons.progress import ProgressStore
from simmta.lessons.state import LiveState

MAX_EVENTS = 200_000  # events kept per lesson run (older ones are forgotten)
CONNECT_TIMEOUT = 15.0  # seconds to wait for the bus socket of a starting MTA


@dataclass(frozen=True)
class RunnerView:
    """What a UI shows, taken at one moment."""

    lesson: Lesson
    index: int  # current step (0-based); == len(steps) when finished
    completed: frozenset[int]  # step numbers (1-based) whose goal was met
    checklist: tuple[tuple[str, bool], ...]
    hints_shown: int
    privilege_mode: str | None
    connected: bool
    events_seen: int
    events_dropped: int = 0  # by the bus for this subscriber: the state may lag behind
    answer: str | None = None  # the student's prediction for this step
    outcome: tuple[str, bool] | None = None  # what the MTA did, and whether it matched

    @property
    def step(self) -> Step | None:
        steps = self.lesson.steps
        return steps[self.index] if self.index < len(steps) else None

    @property
    def finished(self) -> bool:
        return self.index >= len(self.lesson.steps)

    @property
    def step_done(self) -> bool:
        return self.step is not None and self.step.number in self.completed

    @property
    def percent(self) -> int:
        return round(100 * len(self.completed) / max(1, len(self.lesson.steps)))


def goal_context(instance: Instance, lesson: Lesson, state: LiveState) -> dict[str, Any]:
    """Values for ``${...}`` placeholders in goals and solutions."""
    cfg = dict(config_mod.apply(config_mod.defaults(), dict(lesson.setup.config)))
    live_cfg = state.status.get("config")
    if isinstance(live_cfg, Mapping):
        cfg.update(live_cfg)
    return {
        "instance": str(instance.path.resolve()),
        "queue_dir": str(instance.queue.resolve()),
        "mail_dir": str(instance.mail.resolve()),
        "peer_maildir": str(instance.peer_maildir.resolve()),
        "lab_dir": str(instance.lab.resolve()),
        "privilege_mode": state.privilege_mode,
        "config": cfg,
    }


class LessonRunner:
    """One student's (or autoplay's) pass through one lesson, against one MTA."""

    def __init__(
        self, lesson: Lesson, instance: Instance, store: ProgressStore | None = None, resume: bool = True
    ):
        self.lesson = lesson
        self.instance = instance
        self.store = store
        self._lock = threading.Lock()  # guards everything below except the inbox
        # The bus reader only appends here and never waits for an evaluation,
        # so a slow goal check cannot make master drop events for us.
        self._inbox: deque[Mapping[str, Any]] = deque()
        self._arrived = threading.Condition()
        self.state = LiveState()
        self.events: list[Mapping[str, Any]] = []
        self._by_kind: dict[tuple[str, str], list[int]] = {}
        self.connected = False
        self.bus_dropped = 0
        self._dropped_old = 0
        self.index = 0
        self.step_start = 0
        self.completed: set[int] = set()
        self.hints_shown = 0
        self._checklist: tuple[tuple[str, bool], ...] = ()
        self.answers: dict[int, str] = {}
        self.outcomes: dict[int, tuple[str, bool]] = {}
        if resume and store is not None:
            saved = store.get(lesson.progress_key)
            self.completed = {n for n in saved.get("completed", []) if 1 <= n <= len(lesson.steps)}
            self.index = min(int(saved.get("current", 0)), len(lesson.steps))
            answers = saved.get("answers", {})
            if isinstance(answers, dict):
                self.answers = {int(k): str(v) for k, v in answers.items() if str(k).isdigit()}

    # -- input
    def feed(self, event: Mapping[str, Any]) -> None:
        """One event from the bus (any thread; cheap, never blocks on an evaluation)."""
        self._inbox.append(event)
        with self._arrived:
            self._arrived.notify_all()

    def _drain(self) -> None:
        """Fold the inbox into events, index and state (lock held)."""
        while self._inbox:
            event = self._inbox.popleft()
            kind, type_ = str(event.get("kind")), str(event.get("type"))
            if kind == "snapshot":
                self.connected = True
            if kind == "bus" and type_ == "dropped":
                self.bus_dropped += _count(event.get("data", {}).get("count"))
            self.bus_dropped += _count(event.get("dropped_before"))
            self.state.apply(event)
            self._by_kind.setdefault((kind, type_), []).append(len(self.events))
            self.events.append(event)
        if len(self.events) > MAX_EVENTS:
            cut = len(self.events) - MAX_EVENTS
            del self.events[:cut]
            self.step_start = max(0, self.step_start - cut)
            self._dropped_old += cut
            self._by_kind = {}
            for i, event in enumerate(self.events):
                key = (str(event.get("kind")), str(event.get("type")))
                self._by_kind.setdefault(key, []).append(i)

    def forget_mta(self) -> None:
        """Drop the state and events of the previous MTA (before subscribing to a new one)."""
        with self._lock:
            self._inbox.clear()
            self.state = LiveState()
            self.events = []
            self._by_kind = {}
            self.step_start = 0
            self.connected = False
            self.bus_dropped = 0

    def subscription(self) -> Subscription:
        """A bus subscription (not started) that feeds this runner; others may listen to it too."""
        sub = Subscription(self.instance.bus_socket, wait=CONNECT_TIMEOUT)
        return sub.listen(self.feed, self.disconnected)

    def disconnected(self) -> None:
        with self._lock:
            self._drain()
            self.connected = False
        with self._arrived:
            self._arrived.notify_all()

    def wait_for_event(self, timeout: float, settle: float = 0.05) -> None:
        """Wait (at most ``timeout``) for new events, then up to ``settle`` more so that a
        burst is evaluated once, not once per event (autoplay's bounded poll)."""
        with self._arrived:
            if not self._inbox:
                self._arrived.wait(timeout)
            if not self._inbox:
                return
            # coalesce: let the rest of a burst arrive (bounded by ``settle``)
            deadline = time.monotonic() + min(settle, timeout)
            while (left := deadline - time.monotonic()) > 0:
                self._arrived.wait(left)

    # -- evaluation
    def context(self) -> dict[str, Any]:
        return goal_context(self.instance, self.lesson, self.state)

    def check(self) -> bool:
        """Evaluate the current step's goal; True (and saved) when it is met."""
        with self._lock:
            self._drain()
            step = self._step()
            if step is None:
                return True
            ev = self._evaluation()
            progress = [(x.label, ok) for x, ok in step.goal.progress(ev)]
            if step.predict is not None:
                progress.insert(0, ("you made your prediction (E)", step.number in self.answers))
            self._checklist = tuple(progress)
            if all(ok for _, ok in progress) and step.number not in self.completed:
                self.completed.add(step.number)
                if step.predict is not None:
                    self.outcomes[step.number] = _outcome(step.predict, ev, self.answers[step.number])
                self._save()
            return step.number in self.completed

    def goal_met(self) -> bool:
        """Whether the current step's goal holds right now (its prediction aside), unsaved."""
        with self._lock:
            self._drain()
            step = self._step()
            return step is None or step.goal.met(self._evaluation())

    def answer(self, text: str) -> str:
        """Record the student's prediction for the current step; what the panel says back."""
        with self._lock:
            step = self._step()
            if step is None or step.predict is None:
                return "This step asks no question."
            if step.number in self.completed:
                return "The experiment is done: the prediction can no longer change."
            predict, text = step.predict, text.strip()
            if not re.fullmatch(r"\d{1,9}", text):
                return "Answer with a number" + (
                    f" from 1 to {len(predict.choices)}." if predict.choices else "."
                )
            if predict.choices and not 1 <= int(text) <= len(predict.choices):
                return f"Choose a number from 1 to {len(predict.choices)}."
            self.answers[step.number] = text
            self._save()
            return f"Prediction recorded: {describe_answer(predict, text)}. Now run the experiment."

    def advance(self) -> None:
        """Go to the next step (the current one need not be complete: students may skip)."""
        with self._lock:
            if self.index < len(self.lesson.steps):
                self.index += 1
                self._begin_step()

    def go_to(self, index: int) -> None:
        with self._lock:
            self.index = max(0, min(index, len(self.lesson.steps)))
            self._begin_step()

    def restart_step(self) -> None:
        """Forget the events so far for the current step (after the MTA was reset)."""
        with self._lock:
            self._begin_step()

    def reset(self) -> None:
        """Back to step 1 with no progress."""
        with self._lock:
            self.index = 0
            self.completed = set()
            self.answers, self.outcomes = {}, {}
            self._begin_step()

    def next_hint(self) -> str | None:
        with self._lock:
            step = self._step()
            if step is None or not step.hints:
                return None
            self.hints_shown = min(self.hints_shown + 1, len(step.hints))
            return step.hints[self.hints_shown - 1]

    def view(self) -> RunnerView:
        with self._lock:
            self._drain()
            number = self.index + 1
            return RunnerView(
                self.lesson,
                self.index,
                frozenset(self.completed),
                self._checklist,
                self.hints_shown,
                self.state.privilege_mode,
                self.connected,
                len(self.events) + self._dropped_old,
                self.bus_dropped,
                self.answers.get(number),
                self.outcomes.get(number),
            )

    def last_qid(self) -> str | None:
        with self._lock:
            self._drain()
            for event in reversed(self.events):
                if event.get("kind") == "queue" and event.get("type") == "created":
                    qid = event.get("qid")
                    return qid if isinstance(qid, str) else None
        return None

    # -- internals (lock held)
    def _evaluation(self) -> Evaluation:
        return Evaluation(self.events, self.step_start, self.state, self.context(), self._by_kind)

    def _step(self) -> Step | None:
        steps = self.lesson.steps
        return steps[self.index] if self.index < len(steps) else None

    def _begin_step(self) -> None:
        self._drain()  # what arrived before the step began does not count for it
        self.step_start = len(self.events)
        self.hints_shown = 0
        self._checklist = ()
        self._save()

    def _save(self) -> None:
        if self.store is not None:
            finished = len(self.completed) == len(self.lesson.steps)
            self.store.put(
                self.lesson.progress_key,
                {
                    "completed": sorted(self.completed),
                    "current": self.index,
                    "finished": finished,
                    "answers": {str(k): v for k, v in self.answers.items()},
                },
            )


def describe_answer(predict: Prediction, text: str) -> str:
    if predict.choices:
        return f"{text}. {predict.choices[int(text) - 1][0]}"
    return text


def _outcome(predict: Prediction, ev: Evaluation, answer: str) -> tuple[str, bool]:
    """What the live MTA did (the choice that holds, or the count) and whether it matched."""
    if predict.count is not None:
        n = predict.count.count(ev)
        return str(n), abs(n - int(answer)) <= predict.tolerance
    for i, (text, expectation) in enumerate(predict.choices, 1):
        if expectation.met(ev):
            return f"{i}. {text}", str(i) == answer
    return "none of the choices", False


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
