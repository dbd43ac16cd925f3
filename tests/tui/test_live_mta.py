"""The TUI on the real MTA: a live Pilot test and an end-to-end run in tmux.

Both start ``simmta run`` (slow: a few seconds each). The tmux test does what a
teacher does: type ``simmta``, press the send key, watch the message counted
as delivered, kill a daemon from the UI and see master bring it back, quit.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mtakit import require_tool  # installs tmux with apt-get if missing
from textual.widgets import DataTable
from tuihelp import real, screen_text, sync, until, wait_for

from simmta.core.instance import Instance
from simmta.tui.app import SimmtaApp
from simmta.tui.dialogs import Choose
from simmta.tui.feed import LiveFeed

REPO = Path(__file__).parents[2]


@pytest.mark.slow
@sync
async def test_live_pilot_on_the_real_mta(real_mta: Instance) -> None:
    app = SimmtaApp(LiveFeed(real_mta.bus_socket).start(), instance=real_mta.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.model.smtp.get("port"), what="the snapshot")
        await pilot.press("s")
        await until(pilot, lambda: app.model.counts["delivered"] == 1, what="delivery")
        await until(pilot, lambda: "delivered to bob@simmta.test" in screen_text(app))
        await pilot.press("k")
        choose = app.screen
        assert isinstance(choose, Choose)
        services = [value for value, _ in choose.choices]
        await pilot.press(*["down"] * services.index("qmgr"), "enter")
        await until(pilot, lambda: isinstance(app.screen, Choose) and app.screen is not choose)
        await pilot.press("enter")  # SIGTERM, the first signal
        await until(pilot, lambda: app.model.restarts["qmgr"] == 1, what="qmgr replaced")
        await until(pilot, lambda: app.model.processes_of("qmgr"), what="a new qmgr")


@pytest.mark.slow
@sync
async def test_live_flush_key(real_mta: Instance) -> None:
    """F is `simmta flush` (postqueue -f): master says so on the bus."""
    app = SimmtaApp(LiveFeed(real_mta.bus_socket).start(), instance=real_mta.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.model.smtp.get("port"), what="the snapshot")
        await pilot.press("F")
        await until(
            pilot,
            lambda: any(e["kind"] == "queue" and e["type"] == "flush" for e in app.model.log),
            what="the flush event",
        )


@pytest.mark.slow
@sync
async def test_live_burst_local_submission_and_lab(real_mta: Instance) -> None:
    app = SimmtaApp(LiveFeed(real_mta.bus_socket).start(), instance=real_mta.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.model.smtp.get("port"), what="the snapshot")
        await pilot.press("b", "enter")  # a burst of 10
        await until(pilot, lambda: app.model.counts["delivered"] == 10, timeout=60)
        await pilot.press("l")  # sendmail -> maildrop -> pickup -> cleanup
        await until(
            pilot,
            lambda: app.model.counts["delivered"] == 11,
            timeout=60,
            what="the local submission delivered",
        )
        assert any(e["service"] == "pickup" for e in app.model.log)
        await pilot.press("a", "enter")  # lab: smtpd tries to read the secret
        await until(pilot, lambda: app.model.lab_attempts, what="the lab attempt")
        attempt = app.model.lab_attempts[-1]
        assert attempt["action"] == "read-secret" and attempt["service"] == "smtpd"
        assert attempt["outcome"].startswith("refused"), attempt  # the jail holds


@pytest.mark.slow
@sync
async def test_live_hostile_subject_and_queue_file(real_mta: Instance) -> None:
    """A deferred hostile message: its Subject (from the queue file) and EHLO shown inert."""
    app = SimmtaApp(LiveFeed(real_mta.bus_socket).start(), instance=real_mta.path)
    async with app.run_test(size=(200, 90)) as pilot:
        await until(pilot, lambda: app.model.smtp.get("port"), what="the snapshot")
        await pilot.press("f")
        await pilot.press(*["down"] * 2, "enter")  # peer: tempfail
        await until(pilot, lambda: app.model.faults.get("peer") == "tempfail")
        await asyncio.to_thread(
            real.send, real_mta, "someone@example.net", real.HOSTILE_SUBJECT, real.HOSTILE_EHLO
        )
        await until(pilot, lambda: app.model.queues["deferred"], what="a deferred message")
        await pilot.press("u", "enter")
        await until(pilot, lambda: app.records.get(app.followed or ""), what="simmta cat")
        # The records arrive before the detail pane is re-rendered: wait for the screen.
        hostile_subject = "Subject: hi \\x1b[2J[link=http://x]click[/link]"
        text = await until(
            pilot,
            lambda: hostile_subject in (t := screen_text(app)) and t,
            what="the hostile Subject on screen, inert",
        )
        assert "ENVELOPE RECORDS" in text
        await pilot.press("t")
        table = app.query_one("#session-table", DataTable)
        hostile = next(s.key for s in app.model.sessions.values() if "boom" in s.helo)
        table.move_cursor(row=table.get_row_index(hostile))
        await until(pilot, lambda: "[bold red]boom[/]" in screen_text(app), what="the EHLO")
        assert "\x1b" not in app.export_screenshot().replace("\\x1b", "")


def tmux(*args: str) -> str:
    return subprocess.run([require_tool("tmux"), *args], capture_output=True, text=True, check=True).stdout


class Tmux:
    """``simmta`` typed into a fresh 120x40 tmux session, as a new user would."""

    def __init__(
        self,
        cwd: Path,
        simmta: str = f"PYTHONPATH={REPO} {sys.executable} -m simmta",
        size: tuple[int, int] = (120, 40),
    ) -> None:
        self.session = f"simmta-e2e-{os.getpid()}-{cwd.name}"
        command = f"unset COLUMNS LINES; cd {cwd} && {simmta}; echo SIMMTA-EXIT=$?; sleep 300"
        tmux("new-session", "-d", "-s", self.session, "-x", str(size[0]), "-y", str(size[1]), command)

    def screen(self) -> str:
        return tmux("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str) -> None:
        tmux("send-keys", "-t", self.session, *keys)

    def shows(self, text: str, timeout: float = 30.0) -> str:
        def seen() -> str:
            current = self.screen()
            return current if text in current else ""

        try:
            return wait_for(seen, timeout, text)
        except AssertionError:
            raise AssertionError(f"{text!r} not on screen:\n{self.screen()}") from None

    def master_pid(self) -> int:
        """master's pid, read off the processes view."""
        self.keys("p")
        row = wait_for(lambda: re.search(r"(\d+)\s+\d+\s+master\s", self.screen()), 10, "master")
        return int(row.group(1))

    def close(self) -> None:
        subprocess.run([require_tool("tmux"), "kill-session", "-t", self.session], check=False)


@pytest.mark.slow
def test_end_to_end_in_tmux(tmp_path: Path) -> None:
    state = tmp_path / "state"  # screenshots go to the user's state directory (no ~/Pictures here)
    env = f"XDG_STATE_HOME={state} XDG_PICTURES_DIR={tmp_path / 'none'} PYTHONPATH={REPO}"
    simmta = f"{env} {sys.executable} -m simmta"
    term = Tmux(tmp_path, simmta)
    try:
        term.shows("JAIL")  # the map is drawn from the services table at once
        first = term.shows("smtp 127.0.0.1:")  # then the MTA's snapshot says where it listens
        assert re.search(r"smtp 127\.0\.0\.1:\d+", first) and "privilege" in first
        term.keys("[", "[", "[")  # the map's pace: 3 s per hop (the view only)
        term.shows("map 3 s/hop")
        term.keys("s")

        # The message's token on its first edge, and its hop told in words.
        def moving() -> str:
            screen = term.screen()
            return screen if "hop 1/" in screen and "◆" in screen else ""

        assert "a client at 127.0.0.1" in wait_for(moving, 30, "the token on its first hop, and its sentence")
        term.keys("]", "]", "]")  # back to live pace: the rest of the journey plays out
        term.shows("delivered to bob@simmta.test")
        term.keys("k")
        options = re.findall(r"(\w[\w-]*) \(\d+ process", term.shows("qmgr (1 process"))
        term.keys(*["Down"] * options.index("qmgr"), "Enter")
        term.shows("Signal for qmgr")
        term.keys("Enter")
        term.shows("kill service=qmgr signal=TERM")  # master's answer, once the dialog is gone
        term.keys("e")
        term.shows("process/replaced")
        term.keys("w")
        wait_for(lambda: list(state.glob("simmta/screenshots/*.svg")), 10, "a screenshot")
        master = term.master_pid()
        term.keys("q")
        final = term.shows("SIMMTA-EXIT=0")
        wait_for(lambda: not _alive(master), 15, "the MTA it started to stop")
        shutil.rmtree(re.findall(r"its files stay in (\S+)", final)[0], ignore_errors=True)
    finally:
        term.close()


DECOY = "raise ImportError('a simmta folder that is not the package')\n"
# The console script: the current directory is not on its sys.path (-P); the real package is.
CONSOLE_SCRIPT = (
    f'{sys.executable} -P -c \'import sys; sys.path.insert(0, "{REPO}"); '
    "from simmta.cli import main; sys.exit(main())'"
)


@pytest.mark.slow
def test_simmta_from_a_clones_parent_directory(tmp_path: Path) -> None:
    """A clone's folder in the current directory must not shadow the installed package."""
    (tmp_path / "simmta").mkdir()
    (tmp_path / "simmta" / "__init__.py").write_text(DECOY)
    term = Tmux(tmp_path, f"PYTHONPATH={REPO} {CONSOLE_SCRIPT}")
    try:
        term.shows("smtp 127.0.0.1:")
        term.keys("s")
        term.shows("delivered to bob@simmta.test")  # the map tells the hop into the Maildir
        term.keys("q")
        final = term.shows("SIMMTA-EXIT=0")
        shutil.rmtree(re.findall(r"its files stay in (\S+)", final)[0], ignore_errors=True)
    finally:
        term.close()


@pytest.mark.slow
def test_a_failed_start_says_why_and_exits_non_zero(tmp_path: Path) -> None:
    """The MTA child cannot start (here it imports a broken package): one sentence, status 1."""
    (tmp_path / "decoy" / "simmta").mkdir(parents=True)
    (tmp_path / "decoy" / "simmta" / "__init__.py").write_text(DECOY)
    term = Tmux(tmp_path, f"PYTHONPATH={tmp_path / 'decoy'} {CONSOLE_SCRIPT}")
    try:
        final = term.shows("SIMMTA-EXIT=").replace("\n", "")
        assert "SIMMTA-EXIT=1" in final
        said = re.search(r"MTA did not start \(simmta run exited with status 1: (.*?)\); its output", final)
        assert said and "ImportError: a simmta folder that is not the package" in said.group(1), final
        assert "Traceback" not in final
        shutil.rmtree(re.findall(r"its output is in (\S+)/simmta-run.out", final)[0], ignore_errors=True)
    finally:
        term.close()


@pytest.mark.slow
def test_closing_the_terminal_stops_the_mta(tmp_path: Path) -> None:
    """tmux kill-session (SIGHUP) must not leave the MTA it started running."""
    term = Tmux(tmp_path)
    try:
        term.shows("smtp 127.0.0.1:")
        master = term.master_pid()
        term.keys("m")  # the jail's path is under the map, for a chrooted daemon's box (pickup runs)

        def jail_path() -> re.Match[str] | None:
            # One box per press, each seen drawn: pressed faster than tmux's screen is read, the
            # selection ran past pickup's box between two reads (the test failed with the map's
            # boxes in another order).
            before = term.screen()
            term.keys("Down")
            wait_for(lambda: term.screen() != before, 5, "the selection to move")
            return re.search(r"(/\S+)/instance/queue", term.screen())

        jail = wait_for(jail_path, 30, "a jail")
    finally:
        term.close()
    wait_for(lambda: not _alive(master), 20, "the MTA to stop with its terminal")
    shutil.rmtree(jail.group(1), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def run_tui(*args: str) -> subprocess.CompletedProcess[str]:
    """``simmta tui ARGS`` as a user runs it, bounded in time."""
    return subprocess.run(
        [sys.executable, "-m", "simmta", "tui", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_replay_cli_names_a_bad_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    done = run_tui("--replay", str(bad))
    assert done.returncode == 2 and "line 1" in done.stderr


def test_attach_cli_says_when_nothing_runs(tmp_path: Path) -> None:
    done = run_tui("--instance", str(tmp_path))
    assert done.returncode == 2 and "no simmta running" in done.stderr


@pytest.mark.slow
@sync
async def test_totals_are_the_instances_when_attached_after_delivery(real_mta: Instance) -> None:
    """Mail delivered while nobody watched is counted: the snapshot carries the Maildirs' totals."""
    from simmta.core import maildir

    for _ in range(2):
        await asyncio.to_thread(real.send, real_mta, "bob@simmta.test")
    wait_for(lambda: maildir.count(real_mta.maildir("bob")) == 2, timeout=30, what="two letters for bob")
    app = SimmtaApp(LiveFeed(real_mta.bus_socket).start(), instance=real_mta.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.model.smtp.get("port"), what="the snapshot")
        assert app.model.counts["delivered"] == 2 and app.model.mailboxes["bob"] == 2
        await pilot.press("g")
        await until(pilot, lambda: "delivered 2" in screen_text(app), what="the figures' total")
        await pilot.press("s")  # alice -> bob, seen live: counted once on top of the total
        await until(pilot, lambda: app.model.counts["delivered"] == 3, what="the third delivery")
        await pilot.press("i")
        await until(pilot, lambda: "bob 3" in screen_text(app), what="bob's Maildir in the view")
        assert app.model.counts["delivered"] == 3
