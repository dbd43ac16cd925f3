"""assets/: the shipped demo recordings replay on the current event schema, the README's
screenshots exist, and assets/make.py still makes the demos from a real MTA."""

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mtakit import REPO

from simmta.tui.feed import ReplayFeed, load_recording
from simmta.tui.model import Model

DEMOS = REPO / "assets" / "demos"
# demo -> the event it exists to show
SHOWS = {
    "delivery": ("delivery", "delivered"),
    "bounce": ("delivery", "bounce"),
    "kill-and-recovery": ("process", "replaced"),
    "lab-attempt": ("lab", "attempt"),
    "delivery-qmail": ("delivery", "delivered"),  # the trilogy: the same delivery, other profiles
    "delivery-sendmail": ("delivery", "delivered"),
}


def played(path: Path) -> tuple[list[dict[str, object]], ReplayFeed]:
    """Every line parsed and validated, then replayed to the end into the TUI's model."""
    events, problem = load_recording(path)
    assert problem == "", f"{path}: {problem} (regenerate: python3 assets/make.py --demos)"
    feed, model, clock = ReplayFeed(events, speed=64.0), Model(), 0.0
    for _ in range(10_000):
        if feed.finished:
            break
        feed.pump(model, clock)
        clock += 1.0
    assert feed.finished and feed.position == len(events)
    return events, feed


def test_shipped_demos_replay_on_the_current_schema() -> None:
    assert sorted(p.stem for p in DEMOS.glob("*.jsonl")) == sorted(SHOWS)
    for name, (kind, type_) in SHOWS.items():
        events, _ = played(DEMOS / f"{name}.jsonl")
        assert any(e["kind"] == kind and e["type"] == type_ for e in events), name


def test_readme_shows_the_screenshots() -> None:
    shots = re.findall(r"\]\((assets/[\w-]+\.png)\)", (REPO / "README.md").read_text())
    views = ("map", "processes", "queue", "lesson", "trilogy")
    assert {f"assets/{view}.png" for view in views} <= set(shots)
    for shot in shots:
        assert (REPO / shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", shot


@pytest.mark.slow
def test_make_py_records_the_demos_from_a_real_mta(tmp_path: Path) -> None:
    # Started as a shell's background job is (`make.py &`, `nohup`): SIGINT ignored, and
    # inherited so by the recorder it starts, which must still stop when told.
    done = subprocess.run(
        [sys.executable, str(REPO / "assets" / "make.py"), "--demos", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert done.returncode == 0, done.stderr
    for name, (kind, type_) in SHOWS.items():
        events, _ = played(tmp_path / "demos" / f"{name}.jsonl")
        assert any(e["kind"] == kind and e["type"] == type_ for e in events), name
