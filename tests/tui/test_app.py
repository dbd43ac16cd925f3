"""Pilot tests: every view and action, driven by the recorded story and fake master sockets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.widgets import TabbedContent
from tuihelp import REAL, STORY, FakeMaster, SinkSMTP, replay_app, screen_text, sync, until

from simmta.core import names
from simmta.tui.app import VIEWS, SimmtaApp
from simmta.tui.dialogs import Choose, Help
from simmta.tui.playback import PACES
from simmta.tui.widgets.diagram import Diagram as ArchitectureMap
from simmta.tui.widgets.eventlog import EventLog
from simmta.tui.widgets.hoplist import HopList
from simmta.tui.widgets.sessions import SessionsView
from simmta.tui.widgets.tables import ProcessTable

SIZE = (120, 40)


@pytest.mark.parametrize(
    ("view", "key", "expect"),
    [
        ("map", "m", "JAIL = queue dir"),
        ("procs", "p", "restarts"),
        ("queue", "u", "5D6E7F"),
        ("sessions", "t", "EHLO"),
        ("events", "e", "process/replaced"),
        ("figures", "g", "delivered 1"),
    ],
)
@sync
async def test_every_view_by_letter_and_fkey(view: str, key: str, expect: str) -> None:
    app = replay_app()
    fkey = next(f for v, _, f, _ in VIEWS if v == view)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5" if view != "events" else "f1")
        await pilot.press(key)
        assert app.query_one(TabbedContent).active == view
        await until(pilot, lambda: expect in screen_text(app), what=expect)
        await pilot.press("f1" if view != "map" else "f2")
        await pilot.press(fkey)
        assert app.query_one(TabbedContent).active == view


@sync
async def test_map_shows_regions_tokens_and_simulated_boundaries() -> None:
    app = replay_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = screen_text(app)
        for label in ("INTERNET", "JAIL", "UNPRIV", "ROOT", "USERS"):
            assert label in text
        assert "SIMULATED" in text and "⟳" in text  # dashed frames say so; deferred/ counts down
        assert re.search(r"│1 (delivered|mail) ", text)  # the users' Maildirs box, as wide as it is
        diagram = app.query_one(ArchitectureMap)
        assert diagram.followed == "8G9H0I"  # nobody chosen: the newest message that moved
        assert "8G9H0I hop" in text


@sync
async def test_map_selection_shows_processes_and_messages() -> None:
    app = replay_app()
    async with app.run_test(size=SIZE) as pilot:
        amap = app.query_one(ArchitectureMap)
        while amap.selected != "qmgr":
            await pilot.press("down")
        await until(pilot, lambda: "pid 1002" in screen_text(app), what="qmgr's process")
        while amap.selected != "deferred":
            await pilot.press("down")
        await until(pilot, lambda: "someone@example.net" in screen_text(app), what="message")


@sync
async def test_queue_detail_follows_a_message() -> None:
    app = replay_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("u")
        await pilot.press("down", "enter")
        await until(pilot, lambda: app.followed == "5D6E7F", what="follow")
        await until(pilot, lambda: "history" in screen_text(app), what="message detail")
        text = screen_text(app)
        assert "alice@simmta.test" in text and "retry in" in text
        await pilot.press("m")
        assert app.query_one(ArchitectureMap).followed == "5D6E7F"
        assert "following 5D6E7F" in screen_text(app)


@sync
async def test_hostile_ehlo_and_subject_are_shown_escaped() -> None:
    app = replay_app()
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.press("t")
        table = app.query_one("#session-table")
        table.move_cursor(row=0)  # newest first: the hostile session
        await pilot.pause()
        text = screen_text(app)
        assert "evil\\x1b]0;pwned\\x07\\x1b[31m[bold red]boom[/]" in text
        await pilot.press("u")
        app.follow("8G9H0I")
        await pilot.pause()
        text = screen_text(app)
        assert "[link=http://x]click[/link]" in text and "\\x1b[2J" in text
        assert "\x1b]8" not in app.export_screenshot()


@sync
async def test_event_log_filter_and_pause() -> None:
    app = replay_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e", "slash")
        await pilot.press(*"qid:5D6E7F", "enter")
        log = app.query_one(EventLog)
        assert log.filter == "qid:5D6E7F"
        shown = log.visible_rows(100)
        assert shown and all(e["qid"] == "5D6E7F" for e in shown)
        await pilot.press("slash", *"kind:process", "enter")
        assert {e["kind"] for e in log.visible_rows(100)} == {"process"}


@sync
async def test_replay_timeline_keys() -> None:
    app = replay_app(position=1)
    feed = app.feed
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("full_stop", "full_stop", "full_stop")
        await until(pilot, lambda: feed.position == 4, what="three steps")
        await pilot.press("comma")
        await until(pilot, lambda: feed.position == 3, what="step back")
        await pilot.press("plus")
        assert feed.speed == 2.0
        await pilot.press("space")
        assert feed.playing
        await pilot.press("space")
        assert not feed.playing
        app.follow("5D6E7F")
        await pilot.press("n")
        await until(pilot, lambda: feed.events[feed.position - 1]["qid"] == "5D6E7F")
        assert "replay paused" in screen_text(app)


@sync
async def test_mta_actions_in_a_replay_say_there_is_no_mta() -> None:
    app = replay_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await until(pilot, lambda: any("no MTA" in str(n.message) for n in app._notifications))


@sync
async def test_help_palette_theme_and_screenshot(tmp_path: Path) -> None:
    app = replay_app(screenshot_dir=tmp_path / "shots")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, Help)
        await pilot.press("escape")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for wanted in (
            "Send",
            "Kill",
            "Fault",
            "Crash point",
            "Hold",
            "Release",
            "Requeue",
            "Delete",
            "Lab attempt",
            "Hold MTA",
            "Let one go",
            "Step",
            "Burst",
            "Local submit",
            "View: Map",
            "Screenshot",
        ):
            assert wanted in titles
        await pilot.press("T")
        assert app.theme == "simmta-light"
        await pilot.press("T")
        assert app.theme == "projector"
        await pilot.press("w")
        await until(pilot, lambda: list((tmp_path / "shots").glob("*.svg")), what="screenshot")


@sync
async def test_quit_key() -> None:
    app = replay_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, what="quit")


# Live: a fake master (bus + control sockets) and a real SMTP sink -------------------


@sync
async def test_live_attach_shows_the_snapshot(live_app: SimmtaApp) -> None:
    async with live_app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: live_app.model.counts["delivered"] == 1, what="events")
        assert "live" in screen_text(live_app) and "SIMULATED" in screen_text(live_app)


@sync
async def test_live_send_goes_over_smtp(
    live_app: SimmtaApp, fake_master: tuple[FakeMaster, SinkSMTP]
) -> None:
    _, smtp = fake_master
    async with live_app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: live_app.model.smtp.get("port") == smtp.port)
        await pilot.press("s")
        await until(pilot, lambda: smtp.received, what="mail at the sink")
        assert smtp.received[0] == ("alice@simmta.test", ["bob@simmta.test"])
        await pilot.press("S")
        assert isinstance(live_app.screen, Choose)
        await pilot.press("end", "enter")  # the remote recipient is last
        await until(pilot, lambda: len(smtp.received) == 2, what="second mail")
        assert smtp.received[1][1] == ["someone@example.net"]


@pytest.mark.parametrize(
    ("keys", "request_"),
    [
        (("k", "enter", "down", "enter"), {"op": "kill", "service": "cleanup", "signal": "KILL"}),
        (("f", "down", "down", "enter"), {"op": "fault", "target": "peer", "value": "tempfail"}),
        (
            ("c", "enter"),
            {
                "op": "crash",
                "service": next(iter(names.CRASH_POINTS)),
                "point": next(iter(names.CRASH_POINTS.values()))[0],
            },
        ),
        (("a", "enter"), {"op": "lab", "action": "read-secret", "service": "smtpd"}),
        (("P",), {"op": "pace", "mode": "live", "delay_ms": 500}),
        (("G",), {"op": "step"}),
    ],
)
@sync
async def test_live_control_actions(
    live_app: SimmtaApp,
    fake_master: tuple[FakeMaster, SinkSMTP],
    keys: tuple[str, ...],
    request_: dict[str, object],
) -> None:
    master, _ = fake_master
    async with live_app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: live_app.model.started, what="snapshot")
        await until(pilot, lambda: live_app.model.pace.get("mode") == "step")
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        await until(pilot, lambda: master.requests, what="a control request")
        assert master.requests[-1] == request_


@pytest.mark.parametrize("op", ["hold", "release", "requeue", "delete"])
@sync
async def test_live_queue_actions(
    live_app: SimmtaApp, fake_master: tuple[FakeMaster, SinkSMTP], op: str
) -> None:
    master, _ = fake_master
    async with live_app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "5D6E7F" in live_app.model.queues["deferred"])
        live_app.follow("5D6E7F")
        await pilot.press({"hold": "h", "release": "r", "requeue": "R", "delete": "D"}[op])
        await until(pilot, lambda: master.requests, what="queue request")
        assert master.requests[-1] == {"op": "queue", "action": op, "qid": "5D6E7F"}


@sync
async def test_event_log_click_goes_to_the_message_session_or_process() -> None:
    app = replay_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
        await pilot.pause()
        log = app.query_one(EventLog)

        async def click(predicate: Any) -> None:
            await pilot.press("e")
            await pilot.pause()
            row = next(i for i, e in enumerate(log.shown) if predicate(e))
            await pilot.click("#event-log", offset=(5, row + 1))
            await pilot.pause()

        await click(lambda e: e["qid"] == "5D6E7F")
        assert app.followed == "5D6E7F" and app.query_one(TabbedContent).active == "queue"
        await click(lambda e: e["qid"] is None and e["sid"] == "S3")
        assert app.query_one(TabbedContent).active == "sessions"
        assert app.query_one(SessionsView).sid == "smtpd/S3"
        await click(lambda e: e["kind"] == "process" and e["type"] == "spawned")
        assert app.query_one(TabbedContent).active == "procs"
        assert app.query_one(ProcessTable).filter == "1008"


@sync
async def test_replay_of_a_real_recording() -> None:
    """Recorded from the real MTA (root: real privilege separation)."""
    app = replay_app(recording=REAL)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        text = screen_text(app)
        assert "privilege REAL" in text and "SIMULATED" not in text
        jailed = next(
            e["data"]["uid"][1]
            for e in app.feed.events
            if e["kind"] == "privilege"
            and e["type"] == "observed"
            and e["data"]["observed_service"] == "smtpd"
        )
        assert re.search(r"│2 (delivered|mail) ", text)  # the users' Maildirs
        assert f"u{jailed}⛓" in text or f"uid {jailed} ⛓jail" in text  # a jailed daemon's uid
        assert "⟳" in text  # the message deferred by the peer fault waits with a countdown
        await pilot.press("p")
        # chrooted daemons' root: "jail" in the table (the path, the queue directory, under the map)
        assert " jail " in screen_text(app)
        await pilot.press("t")
        table = app.query_one("#session-table")
        hostile = next(s.key for s in app.model.sessions.values() if "boom" in s.helo)
        table.move_cursor(row=table.get_row_index(hostile))
        await pilot.pause()
        assert "EHLO evil\\x1b]0;pwned\\x07\\x1b[31m[bold red]boom[/]" in screen_text(app)
        await pilot.press("comma", "comma")  # step back over the kill of smtpd
        assert app.feed.position == len(app.feed.events) - 2


@sync
async def test_click_a_node_on_the_map() -> None:
    app = replay_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        lines = screen_text(app).splitlines()
        row = next(i for i, line in enumerate(lines) if "┌qmgr" in line)
        col = lines[row].index("┌qmgr") + 2
        await pilot.click(offset=(col, row))
        assert app.query_one(ArchitectureMap).selected == "qmgr"
        await until(pilot, lambda: "pid 1002" in screen_text(app), what="qmgr's process")


PARTIAL_SETUP = {
    "mode": "partial",
    "missing": "newuidmap/newgidmap are not installed",
    "fix": "sudo apt-get install uidmap",
    "uid": 1000,
    "gid": 1000,
}


def partial_recording(tmp_path: Path, *, restarted: bool = False) -> tuple[Path, int]:
    """The story as an MTA in partial mode would record it (the snapshot's privilege setup,
    as master sends it), and its length. ``restarted``: the story as it is (simulated, no
    setup), then a second snapshot, from the MTA started again in partial mode."""
    import json

    events = [json.loads(line) for line in STORY.read_text().splitlines()]
    if restarted:
        again = json.loads(json.dumps(events[0]))
        again["seq"], again["ts"] = events[-1]["seq"] + 1, events[-1]["ts"] + 1
        again["data"].update(privilege_mode="partial", privilege=PARTIAL_SETUP)
        events.append(again)
    else:
        for e in events:  # the snapshot and master's "started" name the mode
            if "privilege_mode" in e["data"]:
                e["data"]["privilege_mode"] = "partial"
        events[0]["data"]["privilege"] = PARTIAL_SETUP
    recording = tmp_path / "partial.jsonl"
    recording.write_text("".join(json.dumps(e) + "\n" for e in events))
    return recording, len(events)


@sync
async def test_the_tui_says_what_a_mode_lacks_and_the_command_that_fixes_it(tmp_path: Path) -> None:
    """From the snapshot's privilege setup (as master sends it): one notification."""
    recording, _ = partial_recording(tmp_path)
    app = replay_app(recording=recording)
    async with app.run_test(size=SIZE) as pilot:
        told = await until(pilot, lambda: [n for n in app._notifications if "uidmap" in str(n.message)])
        assert len(told) == 1 and "uid separation is simulated" in str(told[0].message)
        assert "PARTIAL" in screen_text(app)


@sync
async def test_repeated_notices_leave_one_toast_on_the_screen() -> None:
    """Keys that each say something (the map's pace), pressed one by one and several in one
    tick, as tmux's send-keys delivers them: one toast on the screen, the last one said
    (Textual left the holders of replaced toasts, and missed those still mounting)."""
    app = replay_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:

        def toasts() -> list[str]:
            holders = app.screen.query("#textual-toastrack > *")
            return [str(toast.render()) for holder in holders for toast in holder.query("Toast")] + [
                "(empty holder)" for holder in holders if not holder.query("Toast")
            ]

        def said() -> str:
            return f"map pace: {PACES[app.pace_index][0]} "

        await pilot.press("left_square_bracket", "left_square_bracket")
        await until(pilot, lambda: said() in "".join(toasts()), what="the second pace notice")
        for key in ("right_square_bracket",) * 3:
            app.post_message(events.Key(key, "]"))  # one tick
        await until(pilot, lambda: said() in "".join(toasts()), what="the last pace notice")
        for _ in range(5):
            await pilot.pause(0.05)
        shown = toasts()
        assert len(shown) == 1 and said() in shown[0], shown


@sync
async def test_the_privilege_note_replaces_the_last_notification(tmp_path: Path) -> None:
    """A note arriving while another message shows (here: the MTA started again in partial
    mode) replaces it, as every say() does: one notification, never two stacked over the map."""
    recording, length = partial_recording(tmp_path, restarted=True)
    app = replay_app(recording=recording, position=length)  # all but the second snapshot
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")  # a replay has no MTA: the app says so
        await until(pilot, lambda: app._notifications, what="the replay's answer")
        await pilot.press("full_stop")  # the MTA's new snapshot, in partial mode
        told = await until(pilot, lambda: [n for n in app._notifications if "uidmap" in str(n.message)])
        for _ in range(3):  # told once: later ticks add nothing
            await pilot.pause(app.tick)
        assert list(app._notifications) == told and told[0].title == "privilege partial"
        assert "uid separation is simulated" in str(told[0].message)


@sync
async def test_the_lesson_tui_keeps_the_privilege_note_in_its_panel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a lesson the note is a part of the panel, there for the whole lesson: no toast over the map."""
    from textual.widgets import Static

    from simmta.lessons import catalog
    from simmta.lessons.app import LessonController, lesson_tui
    from simmta.lessons.panel import LessonPanel
    from simmta.tui.feed import ReplayFeed, load_recording

    monkeypatch.setenv("SIMMTA_LESSON_PROGRESS", str(tmp_path / "progress.json"))
    lesson = catalog.find("2", Path(__file__).resolve().parents[2] / "lessons")
    controller = LessonController(lesson, tmp_path / "instance", restart=True)  # not started: no MTA
    app = lesson_tui(controller)
    recording, _ = partial_recording(tmp_path)
    events, problem = load_recording(recording)
    app.feed = ReplayFeed(events, playing=False, problem=problem)  # type: ignore[attr-defined]
    app.feed.seek_end()  # type: ignore[attr-defined]
    async with app.run_test(size=SIZE) as pilot:
        panels = await until(pilot, lambda: list(app.query(LessonPanel)), what="the lesson panel")
        panel = panels[0]

        def shown() -> str:
            return str(panel.query_one("#privilege", Static).render())

        await until(pilot, lambda: "uidmap" in shown(), what="the note in the panel")
        for _ in range(3):
            await pilot.pause(app.tick)
        assert "uid separation is simulated" in shown() and "sudo apt-get install uidmap" in shown()
        assert panel.query_one("#privilege").display and not app._notifications


@sync
async def test_figures_keep_moving_when_idle(
    fake_master: tuple[FakeMaster, SinkSMTP], tmp_path: Path
) -> None:
    """Live, time passes with no events: the sparklines scroll on at zero, with axes and units."""
    from textual.widgets import Sparkline

    from simmta.tui.feed import LiveFeed
    from simmta.tui.model import SERIES_SIZE

    now = [0.0]
    app = SimmtaApp(LiveFeed(tmp_path / "run" / "bus.sock").start(), instance=tmp_path, clock=lambda: now[0])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.model.counts["delivered"] == 1, what="the story")
        last = app.model.second
        assert last is not None
        now[0] = last + 0.5
        await pilot.press("g")
        spark = app.query_one("#spark-events", Sparkline)
        await until(pilot, lambda: spark.data and spark.data[-1] > 0, what="the story's events drawn")
        now[0] = last + 5.5  # five seconds of nothing
        await until(pilot, lambda: app.model.second == last + 5, what="the series moving on")
        await until(pilot, lambda: spark.data and list(spark.data[-5:]) == [0] * 5, what="zeros drawn")
        assert spark.data[-6] > 0  # the story's last second, moved left
        text = screen_text(app)
        assert "msg/s" in text and "events/s" in text and "now" in text and f"-{SERIES_SIZE} s" in text


@sync
async def test_a_key_is_obeyed_before_a_backlog_is_applied(monkeypatch: Any) -> None:
    """A pump applies events for feed.SLICE seconds, then input goes first: a key pressed while
    a whole BATCH_LIMIT of events waits is obeyed before they are all applied (one pump of up to
    BATCH_LIMIT events kept keys waiting for up to 1.8 s during a burst)."""
    from textual.widgets import TabbedContent as Tabs

    from simmta.tui import app as app_mod
    from simmta.tui import feed as feed_mod

    monkeypatch.setattr(feed_mod, "SLICE", 0.0)  # one chunk per pump
    monkeypatch.setattr(app_mod, "CATCH_UP", 60.0)  # and no catching up between ticks
    feed = feed_mod.LiveFeed(Path("/nonexistent/bus.sock"))
    lines = STORY.read_text().splitlines()
    feed.offer(lines[0])
    for i in range(feed_mod.BATCH_LIMIT - 1):
        feed.offer(lines[1 + i % (len(lines) - 1)])
    app = SimmtaApp(feed)
    obeyed: list[int] = []
    view = app.action_view

    def noted(name: str) -> None:
        obeyed.append(app.pumped)
        view(name)

    app.action_view = noted  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("p")
        assert app.query_one(Tabs).active == "procs"
        assert obeyed and obeyed[0] < feed_mod.BATCH_LIMIT
        assert feed.backlog > 0  # the rest waits for the next slices


@sync
async def test_back_to_the_map_needs_no_new_layout(monkeypatch: Any) -> None:
    """A tab switch resizes the hidden map to nothing and back: the layout it had is kept
    (routing one took 0.3-1 s, each time the map tab came back)."""
    from simmta.tui.widgets import diagram

    made: list[tuple[int, int]] = []
    layout = diagram.layout

    def counted(graph: Any, width: int, height: int, *args: Any) -> Any:
        made.append((width, height))
        return layout(graph, width, height, *args)

    monkeypatch.setattr(diagram, "layout", counted)
    app = replay_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        before = len(made)
        assert before >= 1
        for key in "pmemgm":
            await pilot.press(key)
            await pilot.pause()
        assert len(made) == before or len(set(made)) == len(made)  # a size seen before: no new layout


@sync
async def test_the_hop_list_follows_the_width_until_the_user_toggles_it() -> None:
    app = replay_app()
    async with app.run_test(size=(120, 40)) as pilot:
        hops = app.query_one(HopList)
        assert hops.display
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert not hops.display  # a window shrunk to 80 columns gives the map its width back
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        assert hops.display
        await pilot.press("v")
        await pilot.resize_terminal(200, 50)
        await pilot.pause()
        assert not hops.display  # the user's choice stands


@sync
async def test_the_footer_is_rebuilt_only_when_its_keys_change() -> None:
    from textual.widgets._footer import FooterKey

    app = replay_app()
    async with app.run_test(size=(120, 40)) as pilot:

        async def keys_after(key: str) -> tuple[list[str], set[int]]:
            await pilot.press(key)
            await pilot.pause()
            await pilot.pause()  # the footer recomposes after a refresh
            shown = list(app.screen.query(FooterKey))
            return [k.description for k in shown], {id(k) for k in shown}

        on_map, map_widgets = await keys_after("m")
        on_events, event_widgets = await keys_after("e")  # focus moves, the keys stay
        assert on_events == on_map and event_widgets == map_widgets
        on_procs, _ = await keys_after("p")  # the process table adds its own key
        assert "Sort" in on_procs and "Sort" not in on_map
        back, _ = await keys_after("m")
        assert back == on_map
