"""``simmta bench-tui``: what the TUI costs, measured on the real app driven headless.

Prints four figures, each from the real ``SimmtaApp`` (Textual's headless
driver: everything is composed and rendered, nothing is written to a tty):
- CPU share of this process while the map animates 10 tokens at 200x50, and
  the frames per second the map drew (tokens at 3 s per hop keep moving);
- CPU share when nothing happens (the idle redraws only);
- key-press latency p50/p99 (a view switch posted as the terminal would, until
  the new view is drawn: the screen's layout-refresh signal, which Textual
  publishes after the compositor has drawn the new layout) while a thread
  feeds 5,000 events/s;
- the growth of RSS after 100,000 events (everything the model keeps is bounded).
Events go in through ``LiveFeed.offer``, the seam the bus reader uses.
Trust: drives only its own in-process app; no MTA, no sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

from simmta.core import services
from simmta.core.events import SCHEMA_VERSION

KEY_GIVES_UP = 10.0  # seconds: a view that never shows ends the bench with a message


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "bench-tui",
        parents=[parent],
        help="measure the TUI: CPU animating and idle, "
        "key latency under a burst, memory after 100,000 events",
    )
    p.add_argument("--seconds", type=float, default=5.0, help="length of each CPU measurement")
    p.add_argument("--rate", type=int, default=5000, help="events per second of the burst")
    p.add_argument("--events", type=int, default=100_000, help="events for the memory figure")
    p.add_argument("--json", action="store_true", help="figures as JSON")
    p.set_defaults(func=main)


def _event(
    seq: int, service: str, kind: str, type_: str, qid: str | None, sid: str | None, **data: Any
) -> bytes:
    return json.dumps(
        {
            "v": SCHEMA_VERSION,
            "seq": seq,
            "ts": time.time(),
            "clock": seq,
            "mono": time.monotonic(),
            "pid": 1000,
            "service": service,
            "kind": kind,
            "type": type_,
            "qid": qid,
            "sid": sid,
            "data": data,
        }
    ).encode()


def snapshot() -> bytes:
    table = services.load().as_list()
    return _event(
        0,
        "master",
        "snapshot",
        "state",
        None,
        None,
        services=table,
        processes=[],
        queues={},
        queue_counts={},
        privilege={"mode": "simulated"},
        instance="bench",
        queue_dir="bench/queue",
        profile={"name": "postfix"},
        ids={},
        config={},
        privilege_mode="simulated",
        smtp={"host": "127.0.0.1", "port": 25},
        peer={},
        pace={"mode": "live", "delay_ms": 0},
        faults={},
        lab=False,
    )


def journey(n: int, seq: int) -> list[bytes]:
    """One message's hops, from the client's connection to the Maildir."""
    qid, sid = f"B{n:09X}", f"SB{n}"
    steps: list[tuple[str, str, str, str | None, dict[str, Any]]] = [
        ("smtpd", "smtp", "open", None, {"client": "127.0.0.1:9"}),
        ("smtpd", "ipc", "request", None, {"to": "cleanup", "what": "queue"}),
        (
            "cleanup",
            "queue",
            "created",
            qid,
            {
                "queue": "incoming",
                "size": 300,
                "sender": "a@b",
                "recipients": ["bob@simmta.test"],
                "origin": "smtpd",
                "subject": "bench",
            },
        ),
        ("cleanup", "ipc", "request", qid, {"to": "qmgr", "what": "I"}),
        ("qmgr", "queue", "moved", qid, {"from": "incoming", "to": "active"}),
        ("qmgr", "ipc", "request", qid, {"to": "local", "what": "deliver"}),
        (
            "local",
            "delivery",
            "delivered",
            qid,
            {"rcpt": "bob@simmta.test", "via": "local", "dsn": "2.0.0", "where": "bob/Maildir/new/x"},
        ),
        ("qmgr", "queue", "removed", qid, {"queue": "active", "reason": "done"}),
    ]
    return [_event(seq + i, s, k, t, q, sid, **d) for i, (s, k, t, q, d) in enumerate(steps)]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def measure(args: argparse.Namespace) -> dict[str, float]:
    from textual import events

    from simmta.tui.app import SimmtaApp
    from simmta.tui.feed import LiveFeed
    from simmta.tui.widgets.diagram import Diagram

    feed = LiveFeed(Path("/nonexistent/bus.sock"))
    feed.offer(snapshot())
    app = SimmtaApp(feed)
    out: dict[str, float] = {}
    async with app.run_test(size=(200, 50)) as pilot:
        while not app.model.services:
            await pilot.pause(0.05)
        diagram = app.query_one(Diagram)
        for _ in range(3):
            app.action_view_pace(False)  # 3 s per hop: the tokens keep moving
        seq = 1
        cpu, wall, frames = time.process_time(), time.perf_counter(), diagram.frames
        while time.perf_counter() - wall < args.seconds:
            if len(diagram.tokens()) < 10:
                for line in journey(seq, seq):
                    feed.offer(line)
                seq += 8
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - wall
        out["animating_cpu_percent"] = 100 * (time.process_time() - cpu) / elapsed
        out["animating_fps"] = (diagram.frames - frames) / elapsed
        out["tokens"] = len(diagram.tokens())
        for _ in range(3):
            app.action_view_pace(True)  # back to live pace: the journeys play out, then nothing moves
        await asyncio.sleep(4)
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.sleep(args.seconds)
        out["idle_cpu_percent"] = 100 * (time.process_time() - cpu) / (time.perf_counter() - wall)

        stop = threading.Event()

        # Made before the clock starts: the bus reader thread only parses, as it would live.
        lines = [
            line for n in range(0, int(args.rate * args.seconds) + 8, 8) for line in journey(100_000 + n, n)
        ]

        def burst() -> None:
            sent = 0
            start = time.perf_counter()
            while not stop.is_set() and sent < len(lines):
                due = min(len(lines), int((time.perf_counter() - start) * args.rate))
                for line in lines[sent:due]:
                    feed.offer(line)
                sent = max(sent, due)
                time.sleep(0.005)

        thread = threading.Thread(target=burst, daemon=True)
        thread.start()
        lags: list[float] = []
        views = [("procs", "p"), ("map", "m"), ("events", "e"), ("map", "m")]
        drawn = [0]  # screen layouts done: Textual publishes this after drawing the new layout
        app.screen.screen_layout_refresh_signal.subscribe(
            app.screen, lambda _: drawn.__setitem__(0, drawn[0] + 1)
        )
        started = time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            view, key = views[len(lags) % len(views)]
            pressed, layouts = time.perf_counter(), drawn[0]
            app.post_message(events.Key(key, key))
            # Until the new view is on the screen, not only chosen: what the presenter waits for.
            while app.query_one("#tabs").active != view or drawn[0] == layouts:  # type: ignore[attr-defined]
                if time.perf_counter() - pressed > KEY_GIVES_UP:
                    raise SystemExit(f"bench-tui: '{key}' did not show {view} in {KEY_GIVES_UP} s")
                await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - pressed)
            await asyncio.sleep(0.1)
        stop.set()
        thread.join()
        lags.sort()
        out["key_p50_ms"] = 1000 * lags[len(lags) // 2]
        out["key_p99_ms"] = 1000 * lags[min(len(lags) - 1, int(len(lags) * 0.99))]
        out["key_presses"] = len(lags)
        before, applied = rss_mb(), app.pumped
        n = 0
        while n < args.events:
            for line in journey(500_000 + n, seq + n):
                feed.offer(line)
            n += 8
            if n % 4000 == 0:
                await asyncio.sleep(0.05)  # let the app pump, as the bus would pace it
        while app.pumped - applied < args.events and feed.inbox:
            await asyncio.sleep(0.05)
        out["events_for_memory"] = app.pumped - applied
        out["rss_growth_mb"] = rss_mb() - before
        out["rss_mb"] = rss_mb()
    return out


def main(args: argparse.Namespace) -> int:
    import os

    figures = asyncio.run(measure(args))
    figures["load_average_1m"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(
        f"animating 10 tokens at 200x50: {figures['animating_cpu_percent']:.1f} % of a core, "
        f"{figures['animating_fps']:.0f} frames/s ({figures['tokens']:.0f} tokens at the end)"
    )
    print(f"idle: {figures['idle_cpu_percent']:.1f} % of a core")
    print(
        f"key press during {args.rate} events/s: p50 {figures['key_p50_ms']:.0f} ms, "
        f"p99 {figures['key_p99_ms']:.0f} ms ({figures['key_presses']:.0f} presses)"
    )
    print(
        f"after {figures['events_for_memory']:.0f} more events: RSS {figures['rss_mb']:.0f} MiB "
        f"({figures['rss_growth_mb']:+.1f} MiB)"
    )
    print(f"load average (1 min) {figures['load_average_1m']:.1f} on {os.cpu_count()} cores")
    return 0
