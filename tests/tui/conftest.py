"""Fixtures for the TUI tests (helpers live in tuihelp.py). Trust: test code."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tuihelp import FakeMaster, SinkSMTP, real, replay_app

from simmta.core.instance import Instance
from simmta.tui.app import SimmtaApp
from simmta.tui.feed import LiveFeed


@pytest.fixture
def story_app() -> SimmtaApp:
    return replay_app()


@pytest.fixture
def fake_master(tmp_path: Path) -> Iterator[tuple[FakeMaster, SinkSMTP]]:
    smtp = SinkSMTP()
    master = FakeMaster(tmp_path, smtp.port)
    yield master, smtp
    master.close()
    smtp.close()


@pytest.fixture
def live_app(fake_master: tuple[FakeMaster, SinkSMTP], tmp_path: Path) -> SimmtaApp:
    feed = LiveFeed(tmp_path / "run" / "bus.sock").start()
    return SimmtaApp(feed, instance=tmp_path, screenshot_dir=tmp_path / "shots")


@pytest.fixture
def real_mta() -> Iterator[Instance]:
    """A real ``simmta run`` on free ports (outside pytest's 0700 tmp: mail_owner must reach it)."""
    directory = tempfile.mkdtemp(prefix="simmta-tui-test-")
    os.chmod(directory, 0o711)
    child, inst = real.start_mta(Path(directory) / "i", "--lab")
    yield inst
    real.stop(child)
    shutil.rmtree(directory, ignore_errors=True)
