"""The Mailboxes view: delivered mail read from an instance's Maildirs, shown inert, and
a letter chosen replays its message's path on the map (by the queue ID in its Received: line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import TabbedContent
from tuihelp import replay_app, screen_text, story, sync, until

from simmta.core import maildir
from simmta.core.instance import Instance
from simmta.tui.widgets.diagram import Diagram
from simmta.tui.widgets.mailboxes import MAX_LINES, letter_lines

SIZE = (120, 40)
DELIVERED = "4A1B2C"  # the story's local delivery to bob


def letter(qid: str, subject: str, body: str = "hello bob\n") -> bytes:
    return (
        "Return-Path: <alice@simmta.test>\nDelivered-To: bob@simmta.test\n"
        f"Received: from client (127.0.0.1)\n\tby mx.simmta.test (simmta) with ESMTP id {qid}\n"
        f"\tfor <bob@simmta.test>; Tue, 29 Dec 2025 09:20:00 +0000\nFrom: alice@simmta.test\n"
        f"Subject: {subject}\n\n{body}"
    ).encode()


def instance_with_mail(root: Path, letters: dict[str, list[bytes]]) -> Path:
    inst = Instance(root)
    for user in ("alice", "bob", "carol"):
        maildir.create(inst.maildir(user))
    maildir.create(inst.peer_maildir)
    for user, contents in letters.items():
        for content in contents:
            maildir.deliver(inst.maildir(user), [content])
    return root


@sync
async def test_choosing_a_letter_replays_its_path_on_the_map(tmp_path: Path) -> None:
    root = instance_with_mail(tmp_path / "i", {"bob": [letter(DELIVERED, "lunch?")]})
    app = replay_app(instance=root)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        assert app.query_one(TabbedContent).active == "mail"
        text = await until(pilot, lambda: "lunch?" in (t := screen_text(app)) and t, what="the letter")
        assert "bob 1" in text and "alice 0" in text and "peer 0" in text and DELIVERED in text
        diagram = app.query_one(Diagram)
        shown: list[int | None] = []  # the hop each replay step found on the map
        step = app.replay_next

        def recorded() -> None:
            shown.append(diagram.pinned)
            step()

        app.replay_next = recorded  # type: ignore[method-assign]
        await pilot.press("enter")
        assert app.query_one(TabbedContent).active == "map"
        assert diagram.followed == DELIVERED
        hops = app.model.journeys.of(DELIVERED)
        assert len(hops) > 2
        await until(pilot, lambda: app.replaying is None, what="the replay reaching the Maildir")
        assert shown == list(range(len(hops)))  # hop by hop from the first; at the last it stops
        assert diagram.pinned == len(hops) - 1
        assert (hops[-1].src, hops[-1].dst) == ("local", "mailboxes")
        assert "local" in screen_text(app)


@sync
async def test_a_letter_whose_path_was_not_seen_says_so(tmp_path: Path) -> None:
    root = instance_with_mail(tmp_path / "i", {"carol": [letter("ABCDEF123", "older")]})
    app = replay_app(instance=root)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        await until(pilot, lambda: "older" in screen_text(app), what="the letter")
        await pilot.press("enter")
        await until(pilot, lambda: "not in the events this TUI saw" in screen_text(app))
        assert app.query_one(TabbedContent).active == "mail"


@sync
async def test_hostile_letters_are_shown_inert(tmp_path: Path) -> None:
    body = f"{story.HOSTILE_EHLO}\n" + "line\n" * (MAX_LINES + 50)
    root = instance_with_mail(tmp_path / "i", {"bob": [letter(DELIVERED, story.HOSTILE_SUBJECT, body)]})
    app = replay_app(instance=root)
    async with app.run_test(size=(200, 60)) as pilot:
        await pilot.press("i")
        text = await until(pilot, lambda: "click" in (t := screen_text(app)) and t, what="the letter")
        assert "[link=http://x]click[/link]" in text and "\\x1b[2J" in text  # markup and ESC visible
        assert "[bold red]boom[/]" in text
        assert "\x1b" not in app.export_screenshot().replace("\\x1b", "")


def test_letter_lines_are_bounded_and_inert() -> None:
    raw = letter("Q1", "x\x07y", "a\x1b[31mb\n" * (MAX_LINES * 2))
    lines = letter_lines(raw, len(raw) + 10_000)
    assert len(lines) <= MAX_LINES + 1
    assert "cut:" in lines[-1].plain
    assert all("\x1b" not in line.plain and "\x07" not in line.plain for line in lines)
    assert any("\\x07" in line.plain for line in lines)


@sync
async def test_unreadable_maildir_is_named(tmp_path: Path, monkeypatch: Any) -> None:
    """In real privilege mode a Maildir is its user's (0700): the view says so."""
    root = instance_with_mail(tmp_path / "i", {})

    def refuse(path: Path, **kw: Any) -> list[maildir.Letter]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(maildir, "letters", refuse)

    app = replay_app(instance=root)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        await until(pilot, lambda: "cannot read" in (t := screen_text(app)) and "Permission denied" in t)
