"""``simmta bench-tui`` runs end to end and prints its figures (their values are never asserted:
they belong in the README). Trust: test code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_tui_prints_every_figure() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "simmta", "bench-tui", "--seconds", "0.5", "--rate", "500",
         "--events", "800", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=True,
    )  # fmt: skip
    figures = json.loads(out.stdout)
    for name in ("animating_cpu_percent", "animating_fps", "idle_cpu_percent", "key_p50_ms", "key_p99_ms"):
        assert figures[name] >= 0, name
    assert figures["key_presses"] >= 1  # each press waited until its view was drawn
    assert figures["key_p99_ms"] >= figures["key_p50_ms"]
