"""The defects a newcomer hit in the views, each pinned by a test that failed before its fix.

Trust: test code.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from tuihelp import replay_app, screen_text, story, sync, until

from simmta.core.errors import SimmtaError
from simmta.tui import fmt, launch, mappaint, settings
from simmta.tui.dialogs import LEGEND, Help
from simmta.tui.model import Message, Model


def tui_args(**kw: object) -> argparse.Namespace:
    base = dict(
        instance=None,
        replay=None,
        speed=1.0,
        theme=None,
        remember=False,
        screenshots=None,
        lab=False,
        smtp_port=0,
        profile="postfix",
    )
    return argparse.Namespace(**{**base, **kw})


def test_simmta_tui_attaches_to_simmta_instance_instead_of_starting_an_mta(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIMMTA_INSTANCE", str(tmp_path / "nothing-runs-here"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))

    def no_new_mta(*a: object, **k: object) -> None:
        raise AssertionError("started a new MTA although $SIMMTA_INSTANCE names one")

    monkeypatch.setattr(launch, "spawn_mta", no_new_mta)
    with pytest.raises(SimmtaError):  # nothing runs there: a clear error, not a silent new MTA
        launch.main(tui_args())


def test_the_theme_can_be_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert settings.default_theme() == "dark"
    settings.remember_theme("projector")
    assert settings.default_theme() == "projector"
    settings.path().write_text('theme = "neon"\n')
    with pytest.raises(SimmtaError, match=r"tui\.toml: key 'theme'"):
        settings.default_theme()


def test_a_multiline_reply_and_a_retry_time_read_as_words() -> None:
    reply = {
        **story.story()[0],
        "kind": "smtp",
        "type": "reply",
        "ts": 100.0,
        "data": {"line": "250-mx.simmta.test\n250-SIZE 10240000\n250 HELP"},
    }
    line = fmt.summary(reply)
    assert "\\n" not in line and "250-SIZE 10240000" in line
    deferred = {**reply, "kind": "queue", "type": "deferred", "data": {"next_retry": 400.0, "reason": "451"}}
    assert "next_retry=in 5m00s" in fmt.summary(deferred)


def test_held_mail_has_no_retry_countdown() -> None:
    m = Model()
    msg = Message("ABC", next_retry=500.0, queue="hold")
    assert m.retry_in(msg, 100.0) is None
    msg.queue = "deferred"
    assert m.retry_in(msg, 100.0) == 400.0


def test_the_hold_box_on_the_map_has_no_retry_countdown() -> None:
    from simmta.core import services
    from simmta.tui import mapfacts, regions

    m = Model()
    base = {**story.story()[0], "service": "qmgr", "kind": "queue", "qid": "ABC", "sid": None, "ts": 100.0}
    m.apply({**base, "seq": 900, "type": "deferred", "data": {"next_retry": 400.0, "reason": "451"}})
    graph = regions.graph_from_services(services.load().as_list())
    graph.add_nodes_from(("deferred", "hold"), kind="queue")  # as the map's layout draws every queue
    assert "⟳5m00s" in mapfacts.facts(m, graph, "deferred", 100.0).lines
    m.apply({**base, "seq": 901, "service": "master", "type": "held", "data": {}})
    held = mapfacts.facts(m, graph, "hold", 100.0)
    assert held.lines[0] == "1 message" and not any("⟳" in x for x in held.lines + held.chips)


def test_every_arrow_of_the_legend_is_drawn_on_the_map() -> None:
    drawn = set(mappaint.ARROW.values()) | set(mappaint.LINE.values()) | set(mappaint.CROSSING.values())
    drawn |= {mappaint.TOKEN, mappaint.FOLLOWED, "⟳", *"0123456789"}
    for glyphs, _ in LEGEND:
        for glyph in glyphs.replace(" ", ""):
            if glyph in "─│▶◀╫╪╂┿●◆⟳3":
                assert glyph in drawn, glyph
    assert "··▶" not in "".join(g for g, _ in LEGEND)  # the arrow that never appeared


@sync
async def test_palette_has_one_working_screenshot_and_w_works_over_help(tmp_path: Path) -> None:
    app = replay_app(screenshot_dir=tmp_path / "shots")
    async with app.run_test(size=(120, 40)) as pilot:
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert titles.count("Screenshot") == 1
        await pilot.press("question_mark")
        assert isinstance(app.screen, Help)
        await pilot.press("w")
        await until(pilot, lambda: list((tmp_path / "shots").glob("*.svg")), what="a screenshot over help")


def test_screenshots_go_to_pictures_or_the_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simmta.tui.app import default_screenshot_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_PICTURES_DIR", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert default_screenshot_dir() == tmp_path / ".local" / "state" / "simmta" / "screenshots"
    (tmp_path / "Pictures").mkdir()
    assert default_screenshot_dir() == tmp_path / "Pictures" / "simmta"


@sync
async def test_processes_keep_mode_uptime_served_at_80_columns() -> None:
    app = replay_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("p")
        await pilot.pause()
        header = next(line for line in screen_text(app).splitlines() if " pid " in line)
        for column in ("mode", "uptime", "served"):
            assert column in header


def test_the_lab_hint_names_the_tui_option() -> None:
    from simmta.tui import controls, dialogs

    assert "simmta tui --lab" in controls.LAB_TITLE
    assert any("simmta tui --lab" in what for _, what in dialogs.KEYS)
