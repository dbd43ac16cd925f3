"""Helpers for the TUI tests: the scripted story, a replaying app, fake master sockets.

The fake bus and control servers stand in for master until the real MTA runs:
they speak the documented protocols (JSON lines on AF_UNIX stream sockets) and
record what the TUI asked for. A tiny aiosmtpd server receives mail the TUI
sends. Trust: test code.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import io
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from simmta.tui.app import SimmtaApp
from simmta.tui.feed import ReplayFeed, load_recording

FIXTURES = Path(__file__).parent / "fixtures"
STORY = FIXTURES / "story.jsonl"
REAL = FIXTURES / "real.jsonl"  # recorded from the real MTA by fixtures/record_real.py


_story_spec = importlib.util.spec_from_file_location("story", FIXTURES / "story.py")
assert _story_spec and _story_spec.loader
story = importlib.util.module_from_spec(_story_spec)
_story_spec.loader.exec_module(story)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll with a deadline (no sleeps standing in for synchronisation)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def until(
    pilot: Any, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition"
) -> Any:
    """The same inside a Pilot test: yield to the app while polling."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def replay_app(
    theme: str = "dark", position: int | None = None, recording: Path = STORY, **kw: Any
) -> SimmtaApp:
    """An app replaying a recording (the story), paused at its end (or at ``position``),
    clock frozen."""
    events, problem = load_recording(recording)
    feed = ReplayFeed(events, playing=False, problem=problem)
    if position is None:
        feed.seek_end()
    else:
        feed.step(position - 1)
    return SimmtaApp(feed, clock=lambda: story.T0, theme=theme, **kw)


def screen_text(app: Any) -> str:
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


class FakeMaster:
    """A bus socket that sends the story and a control socket that records requests."""

    def __init__(self, root: Path, smtp_port: int) -> None:
        self.root = root
        (root / "run").mkdir(parents=True, exist_ok=True)
        self.requests: list[dict[str, Any]] = []
        self.bus_clients: list[socket.socket] = []
        self.smtp_port = smtp_port
        self._servers: list[socket.socket] = []
        self._serve(root / "run" / "bus.sock", self._bus)
        self._serve(root / "run" / "control.sock", self._control)
        (root / "run" / "status.json").write_text(json.dumps({"master_pid": 1}))

    def _serve(self, path: Path, handler: Callable[[socket.socket], None]) -> None:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        server.listen(8)
        self._servers.append(server)

        def loop() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                threading.Thread(target=handler, args=(conn,), daemon=True).start()

        threading.Thread(target=loop, daemon=True).start()

    def _bus(self, conn: socket.socket) -> None:
        events = story.story()
        for e in events:
            if e["kind"] in ("snapshot", "master") and "smtp" in e["data"]:
                e["data"]["smtp"] = {"host": "127.0.0.1", "port": self.smtp_port}
        conn.sendall("".join(json.dumps(e) + "\n" for e in events).encode())
        self.bus_clients.append(conn)

    def send(self, events: list[dict[str, Any]]) -> None:
        for conn in self.bus_clients:
            conn.sendall("".join(json.dumps(e) + "\n" for e in events).encode())

    def _control(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as f:
            self.requests.append(json.loads(f.readline()))
            conn.sendall(b'{"ok": true, "message": "done"}\n')

    def close(self) -> None:
        for s in self._servers + self.bus_clients:
            s.close()


class SinkSMTP:
    """An aiosmtpd server on a free loopback port that keeps what it receives."""

    def __init__(self) -> None:
        from aiosmtpd.smtp import SMTP

        self.received: list[tuple[str, list[str]]] = []
        self.loop = asyncio.new_event_loop()
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                sink.received.append((envelope.mail_from, list(envelope.rcpt_tos)))
                return "250 2.0.0 Ok: queued"

        async def start() -> Any:
            return await self.loop.create_server(lambda: SMTP(Handler()), "127.0.0.1", 0)

        self.server = self.loop.run_until_complete(start())
        self.port = self.server.sockets[0].getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def sync(test: Callable[..., Any]) -> Callable[..., Any]:
    """Run an async Pilot test with asyncio.run (no async pytest plugin needed)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(test(*args, **kwargs))

    return run


_real_spec = importlib.util.spec_from_file_location("record_real", FIXTURES / "record_real.py")
assert _real_spec and _real_spec.loader
real = importlib.util.module_from_spec(_real_spec)
_real_spec.loader.exec_module(real)
