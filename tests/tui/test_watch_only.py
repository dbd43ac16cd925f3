"""A viewer of ``simmta serve`` (``SimmtaApp(watch_only=True)``): every key and palette
command that would act on the MTA or write a file is refused, before any dialog opens.

The list comes from the app's own command table, so an action added later is checked too.
"""

from __future__ import annotations

from pathlib import Path

from tuihelp import sync

from simmta.tui.app import SimmtaApp
from simmta.tui.controls import COMMANDS
from simmta.tui.feed import LiveFeed

# What only moves the viewer's own view (or a replay's timeline): allowed.
VIEW_ACTIONS = {"step", "step_back", "speed(True)", "speed(False)", "next_event"}


@sync
async def test_a_viewer_is_refused_every_action_on_the_mta(tmp_path: Path) -> None:
    feed = LiveFeed(tmp_path / "no-bus.sock").start()  # live, never connected: nothing to reach
    app = SimmtaApp(feed, instance=tmp_path, screenshot_dir=tmp_path / "shots", watch_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        app.followed = "ABCDEF012345"  # queue actions need a message: refused all the same
        refused = []
        for key, action, *_ in COMMANDS:
            if action in VIEW_ACTIONS:
                continue
            app.clear_notifications()
            await pilot.press(key)
            await pilot.pause()
            said = [n.message for n in app._notifications]
            assert len(app.screen_stack) == 1, f"{key} ({action}) opened a dialog"
            assert any(m.startswith("viewer: you cannot") for m in said), (key, action, said)
            refused.append(action)
        assert "send_one" in refused and "kill" in refused and "lab" in refused and "pace" in refused
        app.clear_notifications()
        await pilot.press("w")  # a screenshot writes a file
        await pilot.pause()
        assert any("cannot save a screenshot" in n.message for n in app._notifications)
        assert not (tmp_path / "shots").exists()
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert not [t for t in titles if "screenshot" in t.lower()], titles
        assert not {label for _, _, label, _, _ in COMMANDS} & set(titles)
