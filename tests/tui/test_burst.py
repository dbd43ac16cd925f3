"""Burst: the UI keeps up with thousands of events per second, with bounded memory.

A stand-in for master's bus, in its own process (fixtures/burst_bus.py), pours
a realistic mix of events (a message's whole life: SMTP dialogue, queue moves,
IPC, delivery) at a fixed rate while the test keeps switching views and times
how long each key takes to take effect. What is asserted is behaviour: every
event applied, every key obeyed during the burst, memory and rings bounded. The
key lags are printed (``pytest -s``), never asserted: ``simmta bench-tui``
measures latency.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual import events
from textual.widgets import TabbedContent
from tuihelp import FIXTURES, sync, until

from simmta.tui.app import SimmtaApp
from simmta.tui.feed import LiveFeed
from simmta.tui.model import LOG_SIZE, MAX_MESSAGES

VIEWS = (("events", "e"), ("map", "m"), ("figures", "g"), ("procs", "p"), ("queue", "u"))
# Keys pressed at least, even when the producer ends first (a loaded machine starts the app late).
MIN_PRESSES = len(VIEWS)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run_burst(tmp_path: Path, rate: int, seconds: float) -> dict[str, float]:
    bus = tmp_path / "bus.sock"
    producer = subprocess.Popen(
        [sys.executable, str(FIXTURES / "burst_bus.py"), str(bus), str(rate), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not bus.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        app = SimmtaApp(LiveFeed(bus).start())
        async with app.run_test(size=(160, 48)) as pilot:
            await until(pilot, lambda: app.model.started, what="the snapshot")
            rss_before, lags = rss_mb(), []
            while len(lags) < MIN_PRESSES or producer.poll() is None:
                view, key = VIEWS[len(lags) % len(VIEWS)]
                # Post the key as the terminal driver would; Pilot.press also waits for an
                # idle CPU, which a burst never gives, so it would measure Pilot, not the UI.
                pressed = time.perf_counter()
                app.post_message(events.Key(key, key))
                while app.query_one(TabbedContent).active != view:
                    if time.perf_counter() - pressed > 60:
                        raise AssertionError(f"key {key!r} not obeyed within 60 s of the burst")
                    await asyncio.sleep(0.002)
                lags.append(time.perf_counter() - pressed)
                await asyncio.sleep(0.1)
            sent = int(producer.communicate(timeout=10)[0])
            await until(pilot, lambda: app.pumped >= sent, timeout=60, what="the backlog")
            figures = {
                "rate": rate,
                "seconds": seconds,
                "events_sent": sent,
                "events_applied": app.pumped - 1,
                "key_presses": len(lags),
                "key_lag_ms_median": sorted(lags)[len(lags) // 2] * 1000,
                "key_lag_ms_p90": sorted(lags)[int(len(lags) * 0.9)] * 1000,
                "key_lag_ms_max": max(lags) * 1000,
                "batch_ms_max": app.max_batch_seconds * 1000,
                "rss_growth_mb": rss_mb() - rss_before,
                "log_kept": len(app.model.log),
                "messages_kept": len(app.model.messages),
                "viewer_overflow": app.feed.overflow,
            }
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()
    print("\nburst figures:", json.dumps(figures, indent=1))
    return figures


def check(figures: dict[str, float]) -> None:
    assert figures["events_applied"] >= figures["events_sent"]
    assert figures["key_presses"] >= MIN_PRESSES
    assert figures["log_kept"] <= LOG_SIZE and figures["messages_kept"] <= MAX_MESSAGES
    assert figures["rss_growth_mb"] < 300


@sync
async def test_short_burst(tmp_path: Path) -> None:
    check(await run_burst(tmp_path, rate=5000, seconds=1.0))


@pytest.mark.slow
@sync
async def test_burst_5000_per_second_for_10_seconds(tmp_path: Path) -> None:
    check(await run_burst(tmp_path, rate=5000, seconds=10.0))
