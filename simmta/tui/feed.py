"""Event sources for the viewer: a live bus subscription or a recording.

The app is handed a feed and calls ``feed.pump(model, now)`` on a timer; the
feed applies whatever is due to the model in one batch and returns how many
events it applied. Nothing here imports Textual, so tests (and lessons) drive
feeds directly with a scripted clock.

- ``LiveFeed``: a bus subscription (``busclient.Subscription``, its reader
  thread) appends validated events to a bounded inbox; ``pump`` drains it for
  at most ``budget`` seconds (the app then lets input through and pumps again
  while ``backlog`` says more waits, so a key press never waits for a whole
  burst). When the viewer falls
  behind the inbox drops the oldest events and counts them (``overflow``)
  so the UI can say it cannot keep up instead of freezing.
- ``ReplayFeed``: a recording (JSON lines, first line a snapshot) played on a
  virtual clock with play/pause, step forward/back and speed.

Trust: everything read is untrusted; lines are parsed with
``events.parse_line`` and bad ones are reported (with their line number for
recordings), never applied.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from simmta.core import busclient, events
from simmta.core.errors import SimmtaError
from simmta.core.events import parse_line, read_recording
from simmta.core.records import BusDropped
from simmta.tui.model import Model

INBOX_SIZE = 20_000  # events buffered between the reader thread and the UI (~20 MiB parsed)
LOST_QIDS = 256  # messages named in one drop notice at most (as the daemons' own)
BATCH_LIMIT = 5_000  # events applied by one pump at most
SLICE = 0.015  # seconds one pump may spend applying events (it looks at the clock every CHUNK)
CHUNK = 64
SPEEDS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 16.0, 64.0)


class Feed(Protocol):
    live: bool

    @property
    def problem(self) -> str: ...

    @property
    def fatal(self) -> str: ...  # why the MTA this feed waited for never started ("" otherwise)

    @property
    def backlog(self) -> int: ...  # events due but not applied yet (the budget ran out)

    def pump(self, model: Model, now: float, budget: float | None = None) -> int: ...
    def status(self) -> str: ...
    def stop(self) -> None: ...


class LiveFeed:
    """Takes a running master's events from a bus subscription (``busclient.Subscription``)."""

    live = True

    def __init__(
        self,
        bus_socket: Path,
        inbox_size: int = INBOX_SIZE,
        wait: float = 0.0,
        starting: Callable[[], str] | None = None,
        sock: socket.socket | None = None,
        subscription: busclient.Subscription | None = None,
    ) -> None:
        """``wait``, ``starting``, ``sock``: as for ``busclient.Subscription``. ``subscription``:
        share one that someone else starts (a lesson's runner reads the same stream)."""
        self.bus_socket = bus_socket
        self.inbox: deque[dict[str, Any]] = deque()
        self.inbox_size = inbox_size
        self.overflow = 0
        self.backlog = 0
        self.lost = 0  # events the inbox let go since the last pump (the fold is told) ...
        self.lost_qids: dict[str, None] = {}  # ... and the messages they were about (bounded)
        self._lock = threading.Lock()
        self.owned = subscription is None
        self.sub = subscription or busclient.Subscription(bus_socket, wait, starting, sock)
        self.sub.listen(self._take)

    def start(self) -> LiveFeed:
        if self.owned:
            self.sub.start()
        return self

    @property
    def problem(self) -> str:
        return self.sub.problem

    @property
    def fatal(self) -> str:
        return self.sub.fatal

    @property
    def bad_lines(self) -> int:
        return self.sub.bad_lines

    def offer(self, raw: bytes | str) -> None:
        """One line from the bus (also the seam tests use)."""
        try:
            event = parse_line(raw)
        except ValueError as e:
            self.sub.bad_lines += 1
            self.sub.problem = f"bad event from the bus: {e}"
            return
        self._take(event)

    def _take(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.inbox.append(event)
            if len(self.inbox) > self.inbox_size:
                qid = self.inbox.popleft().get("qid")
                if qid and len(self.lost_qids) < LOST_QIDS:
                    self.lost_qids[qid] = None
                self.lost += 1
                self.overflow += 1

    def pump(self, model: Model, now: float, budget: float | None = None) -> int:
        deadline = time.perf_counter() + (SLICE if budget is None else budget)
        applied = 0
        with self._lock:
            lost, qids, self.lost, self.lost_qids = self.lost, list(self.lost_qids), 0, {}
        if lost:  # the view fell behind: its fold marks those messages incomplete, never guesses
            model.apply_all([_drop_notice(lost, qids, model.state.last_seq)])
        while applied < BATCH_LIMIT:
            with self._lock:
                n = min(len(self.inbox), CHUNK, BATCH_LIMIT - applied)
                batch = [self.inbox.popleft() for _ in range(n)]
                self.backlog = len(self.inbox)
            if not batch:
                break
            model.apply_all(batch)
            applied += n
            if time.perf_counter() >= deadline:
                break
        return applied

    def status(self) -> str:
        if self.problem:
            return self.problem
        if self.overflow or self.backlog:
            return f"falling behind: {self.backlog} waiting, {self.overflow} skipped"
        return "live" if self.sub.connected else "starting the MTA…"

    def stop(self) -> None:
        if self.owned:
            self.sub.stop(timeout=0)


def _drop_notice(count: int, qids: list[str], seq: int) -> dict[str, Any]:
    """A ``bus/dropped`` event, as the bus would send it, for what this view's inbox let go."""
    notice = events.make(
        "tui", BusDropped(count=count, where="this view's inbox (it fell behind)", qids=qids)
    )
    notice["seq"] = seq  # the last one this view applied: its fold's place in the stream stays
    return notice


def load_recording(path: Path) -> tuple[list[dict[str, Any]], str]:
    """The valid events of a recording, and a problem naming the first bad line.

    Events up to the first malformed (or truncated) line are kept; a recording
    whose first line is not a snapshot cannot be replayed at all.
    """
    events: list[dict[str, Any]] = []
    problem = ""
    try:
        for event in read_recording(path):
            events.append(event)
    except SimmtaError as e:
        problem = str(e)
    if not events or events[0]["kind"] != "snapshot":
        raise SimmtaError(problem or f"{path} line 1: a recording starts with a snapshot event")
    return events, problem


class ReplayFeed:
    """Plays a recording on a virtual clock (seconds of the recording's ``ts``)."""

    live = False
    fatal = ""

    def __init__(
        self,
        events: list[dict[str, Any]],
        speed: float = 1.0,
        problem: str = "",
        playing: bool = True,
    ) -> None:
        self.events = events
        self.problem = problem
        self.speed = speed
        self.playing = playing
        self.position = 0  # events applied so far
        self.t0 = float(events[0]["ts"])
        self.virtual = self.t0  # the recording's clock
        self._last: float | None = None
        self._rebuild = True
        self.backlog = 0

    def pump(self, model: Model, now: float, budget: float | None = None) -> int:
        if self._rebuild:
            model.reset()
            model.apply_all(self.events[: max(self.position, 1)])
            self.position = max(self.position, 1)
            self._rebuild = False
        if self._last is not None and self.playing:
            self.virtual += (now - self._last) * self.speed
        self._last = now
        if not self.playing:
            return 0
        start = self.position
        deadline = time.perf_counter() + (SLICE if budget is None else budget)
        while self.position - start < BATCH_LIMIT:
            chunk = self.position
            while (
                self.position < len(self.events)
                and self.position - chunk < CHUNK
                and float(self.events[self.position]["ts"]) <= self.virtual
            ):
                self.position += 1
            model.apply_all(self.events[chunk : self.position])
            if self.position - chunk < CHUNK or time.perf_counter() >= deadline:
                break
        due = self.position < len(self.events) and float(self.events[self.position]["ts"]) <= self.virtual
        self.backlog = int(due)
        if self.position >= len(self.events):
            self.playing = False
        return self.position - start

    @property
    def finished(self) -> bool:
        return self.position >= len(self.events)

    def _seek(self, position: int) -> None:
        self.position = max(1, min(position, len(self.events)))
        self.virtual = float(self.events[self.position - 1]["ts"])
        self._rebuild = True

    def toggle(self) -> None:
        if self.finished and not self.playing:
            self._seek(1)
        self.playing = not self.playing

    def step(self, count: int = 1) -> None:
        """Forward or back ``count`` events (pauses the replay)."""
        self.playing = False
        self._seek(self.position + count)

    def seek_end(self) -> None:
        self.playing = False
        self._seek(len(self.events))

    def next_of(self, qid: str) -> None:
        """Jump to the next event about message ``qid``."""
        for i in range(self.position, len(self.events)):
            if self.events[i].get("qid") == qid:
                self.step(i + 1 - self.position)
                return

    def faster(self, up: bool) -> float:
        i = min(range(len(SPEEDS)), key=lambda k: abs(SPEEDS[k] - self.speed))
        self.speed = SPEEDS[max(0, min(len(SPEEDS) - 1, i + (1 if up else -1)))]
        return self.speed

    def status(self) -> str:
        state = "playing" if self.playing else ("end" if self.finished else "paused")
        elapsed = self.virtual - self.t0
        return f"replay {state} x{self.speed:g} {self.position}/{len(self.events)} t+{elapsed:.1f}s" + (
            f"  ! {self.problem}" if self.problem else ""
        )

    def stop(self) -> None:
        self.playing = False
