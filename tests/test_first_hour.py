"""A newcomer's first hour: each defect found trying simmta fresh, as a test.

(The TUI's own first-start defects are tested in tests/tui/test_live_mta.py.)
"""

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
from mtakit import REPO, Mta, maildir_files, wait_for
from reachable import python_reachable

from simmta.cli import build_parser

DECOY = "raise ImportError('the simmta folder of a clone, not the installed package')\n"


def decoy_cwd(base: Path) -> Path:
    """A directory holding a ``simmta`` folder that is not the package: a clone's parent."""
    (base / "simmta").mkdir(parents=True)
    (base / "simmta" / "__init__.py").write_text(DECOY)
    return base


def test_children_import_the_installed_simmta_from_any_directory(simmta_tmp: Path) -> None:
    """Run from a clone's parent, ``python -m`` children found the clone folder first."""
    cwd = decoy_cwd(simmta_tmp / "parent")
    instance = simmta_tmp / "inst"
    # -P stands for the console script, which never puts the current directory on sys.path.
    run = subprocess.Popen(
        [sys.executable, "-P", "-m", "simmta", "run", "--smtp-port", "0", "--instance", str(instance)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        status = wait_for(lambda: _status(instance) or run.poll() is not None, 30, "master")
        assert run.poll() is None and isinstance(status, dict)
        done = subprocess.run(
            [sys.executable, "-P", "-m", "simmta", "send", "--instance", str(instance)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        wait_for(lambda: maildir_files(instance / "mail" / "bob" / "Maildir"), 30, "delivery by local")
    finally:
        run.terminate()
        out = run.communicate(timeout=30)[0].decode()
    assert "ImportError" not in out, out


def _status(instance: Path) -> dict[str, object] | None:
    try:
        return dict(json.loads((instance / "run" / "status.json").read_text()))
    except (OSError, ValueError):
        return None


def test_stop_while_events_attached_leaves_no_traceback(mta: Mta) -> None:
    events = subprocess.Popen(
        mta.command("events"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert events.stdout is not None
        assert "snapshot" in events.stdout.readline()
        mta.simmta("stop")
        mta.proc.wait(30)
        _, err = events.communicate(timeout=30)
    finally:
        if events.poll() is None:
            events.kill()
            events.wait()
    assert mta.proc.stdout is not None
    out = mta.proc.stdout.read().decode()
    assert "stopped" in out and "Traceback" not in out and "CancelledError" not in out, out
    assert "Traceback" not in err


def closed_pipe_run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """``cmd | head -0``: stdout is a pipe whose reader is already gone."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(cmd, stdout=write, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)


def test_a_closed_pipe_is_not_a_traceback(mta: Mta) -> None:
    for args in (("config",), ("events", "--json")):
        done = closed_pipe_run(mta.command(*args))
        assert done.returncode == 141 and done.stderr == "", (args, done.stderr)


def test_sendmail_records_the_login_name(mta: Mta) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("USER", "LOGNAME")}  # root's shells lack them
    subprocess.run(
        [*mta.command("sendmail"), "bob@simmta.test"],
        input=b"Subject: hi\n\nhello\n",
        env=env,
        check=True,
        timeout=60,
    )
    mail = wait_for(lambda: maildir_files(mta.maildir("bob")), 30, "the local submission")
    login = pwd.getpwuid(os.getuid()).pw_name
    assert f"Return-Path: <{login}@simmta.test>" in mail[0].read_text()


def test_hold_says_already_on_hold_and_not_a_queue_id(mta: Mta) -> None:
    mta.simmta("peer", "fault", "tempfail")
    qid = mta.send(to="someone@example.net")
    wait_for(lambda: qid in mta.queue_files("deferred"), what="the message in deferred/")
    assert mta.simmta("hold", qid).stdout.strip() == f"{qid}: deferred -> hold"
    again = mta.simmta("hold", qid, check=False)
    assert again.returncode == 2 and again.stderr.strip() == f"simmta: {qid} is already on hold"
    bad = mta.simmta("hold", "0000", check=False)
    assert bad.returncode == 2 and bad.stderr.strip() == "simmta: not a queue ID: 0000"


def test_control_answers_are_plain_text_unless_json(mta: Mta) -> None:
    plain = mta.simmta("peer", "fault", "slow").stdout.strip()
    assert plain.startswith("fault target=peer value=slow:") and "{" not in plain
    assert json.loads(mta.simmta("peer", "fault", "none", "--json").stdout)
    killed = mta.simmta("ctl", "kill", "qmgr").stdout.strip()
    assert killed.startswith("kill service=qmgr signal=TERM:") and "{" not in killed
    assert isinstance(json.loads(mta.simmta("ctl", "kill", "pickup", "--json").stdout), dict)


def test_help_has_no_markup_and_says_usage_once() -> None:
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, parser in commands.items():
        text = parser.format_help()
        assert "``" not in text, (name, text)
        assert text.count("usage:") == 1, (name, text)
    assert commands["lesson"].format_help().count("simmta lesson check N|all") == 1


def test_the_suite_puts_back_the_modes_it_changed(simmta_tmp: Path) -> None:
    """As root the suite opened root's home to o+x and left it ``drwx-----x``."""
    if os.geteuid() != 0:
        pytest.skip("only root changes modes")
    home = simmta_tmp / "home"
    inner = home / "pyenv"
    inner.mkdir(parents=True)
    for d in (home, inner):
        d.chmod(0o700)
    state = simmta_tmp / "state"
    other = subprocess.Popen(["sleep", "60"])  # another test session, still running
    try:
        with python_reachable([home, inner], state):
            assert home.stat().st_mode & 0o777 == 0o701
            record = json.loads((state / "modes.json").read_text())
            record["sessions"].append(other.pid)
            (state / "modes.json").write_text(json.dumps(record))
        assert home.stat().st_mode & 0o777 == 0o701  # the other session still needs it
        with python_reachable([home, inner], state):
            pass
        assert home.stat().st_mode & 0o777 == 0o701
    finally:
        other.kill()
        other.wait()
    with python_reachable([home, inner], state):
        pass
    assert [d.stat().st_mode & 0o777 for d in (home, inner)] == [0o700, 0o700]
    assert not (state / "modes.json").exists()


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("exactly what `.ci/run` runs", 1)[1].split("```sh\n", 1)[1].split("\n```", 1)[0]
    assert "sudo apt-get install -y python3-venv && python3 -m venv .venv" in block
    assert (REPO / ".ci" / "run").read_text().rstrip().splitlines()[-1] == block.strip()
