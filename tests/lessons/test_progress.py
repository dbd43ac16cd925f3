"""Saved lesson progress: written atomically, and never over a file that is not a regular one."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from simmta.lessons.progress import ProgressStore


def test_progress_is_written_and_read_back(tmp_path: Path) -> None:
    store = ProgressStore(tmp_path / "deep" / "progress.json")
    store.put("02-life", {"completed": [1], "current": 1})
    assert ProgressStore(tmp_path / "deep" / "progress.json").get("02-life")["completed"] == [1]


@pytest.mark.timeout(10)  # before the fix, reading the FIFO waited for a writer
def test_a_path_that_is_not_a_regular_file_keeps_no_progress_and_is_left_alone(tmp_path: Path) -> None:
    """SIMMTA_LESSON_PROGRESS=/dev/null means 'keep nothing': the atomic rename replaced the
    device with a regular file (found after assets/make.py ran as root; tmux then failed to
    start). A FIFO stands in for the device here: the test must not touch /dev/null."""
    fifo = tmp_path / "nowhere"
    os.mkfifo(fifo)
    store = ProgressStore(fifo)
    store.put("02-life", {"completed": [1]})  # does not block on the FIFO either
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert store.get("02-life") == {}
    assert [p.name for p in tmp_path.iterdir()] == ["nowhere"]  # no temporary file left
