"""Snapshot tests (pytest-textual-snapshot): the screens a class sees, kept stable.

Replays paused with the clock frozen to the recording's time and no header
clock, so every run draws the same frame. The map is drawn at the three
sizes it is designed for, in each theme, paused at the moment the third
message's token is on the edge from the Internet into smtpd, crossing the
jail's frame; one more draws a services table with a service added. Update
with ``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from tuihelp import REAL, STORY, replay_app, story

from simmta.core import maildir
from simmta.core.instance import Instance

SIZES = {"80x24": (80, 24), "120x40": (120, 40), "200x50": (200, 50)}
THEMES = ("dark", "light", "projector")


def mid_flight() -> int:
    """The position in the real recording just after the third client connected to smtpd."""
    lines = REAL.read_text().splitlines()
    opens = [i for i, line in enumerate(lines) if '"kind":"smtp"' in line and '"type":"open"' in line]
    smtpd = [i for i in opens if '"service":"smtpd"' in lines[i]]
    return smtpd[2] + 2  # replay_app(position=N) has applied N - 1 events: the first N - 1 lines


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("theme", THEMES)
def test_map(snap_compare: Any, theme: str, size: str) -> None:
    app = replay_app(theme=theme, position=mid_flight(), recording=REAL)
    assert snap_compare(app, terminal_size=SIZES[size])


def test_map_with_a_service_added(snap_compare: Any, tmp_path: Path) -> None:
    """A services table with one more jailed daemon: it gets a free slot in the jail, with its edge."""
    events = [json.loads(line) for line in STORY.read_text().splitlines()]
    extra = dict(events[0]["data"]["services"][0], name="postscreen", talks_to=["smtpd"], faces="")
    events[0]["data"]["services"].append(extra)
    recording = tmp_path / "added.jsonl"
    recording.write_text("".join(json.dumps(e) + "\n" for e in events))
    assert snap_compare(replay_app(recording=recording), terminal_size=(120, 40))


async def _queue_detail(pilot: Any) -> None:
    await pilot.press("u")
    pilot.app.follow("5D6E7F")
    await pilot.pause()


@pytest.mark.parametrize(
    ("view", "keys", "run_before", "size"),
    [("processes", ("p",), None, (80, 24)), ("queue-detail", (), _queue_detail, (120, 40))],
)
def test_views(
    snap_compare: Any, view: str, keys: tuple[str, ...], run_before: Any, size: tuple[int, int]
) -> None:
    app = replay_app(recording=STORY)
    assert snap_compare(app, press=keys, terminal_size=size, run_before=run_before)


def test_mailboxes(snap_compare: Any, tmp_path: Path) -> None:
    """Delivered mail per user and the peer, the newest letter shown inert (files with fixed names
    and times, so the frame is stable)."""
    inst = Instance(tmp_path / "i")
    for user in ("alice", "bob", "carol"):
        maildir.create(inst.maildir(user))
    maildir.create(inst.peer_maildir)
    letters = [
        (inst.maildir("bob"), "4A1B2C", "bob@simmta.test", "lunch?", "see you at noon\n"),
        (inst.peer_maildir, "7E8F9A", "someone@example.net", story.HOSTILE_SUBJECT, "\x1b[31mred?\x07\n"),
    ]
    for n, (where, qid, rcpt, subject, body) in enumerate(letters):
        path = where / "new" / f"{int(story.T0)}.M{n}P1Q{n}.mx"
        path.write_bytes(
            f"Return-Path: <alice@simmta.test>\nDelivered-To: {rcpt}\nReceived: from client (127.0.0.1)\n"
            f"\tby mx.simmta.test (simmta) with ESMTP id {qid}\nFrom: alice@simmta.test\n"
            f"Subject: {subject}\n\n{body}".encode()
        )
        os.utime(path, (story.T0 + 8 + n, story.T0 + 8 + n))
    assert snap_compare(
        replay_app(recording=STORY, instance=inst.path), press=("i",), terminal_size=(120, 40)
    )
