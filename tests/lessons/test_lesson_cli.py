"""``simmta lesson list`` / usage errors, and the core of the lessons staying free of Textual."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def simmta(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simmta", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_list_shows_saved_progress(tmp_path: Path) -> None:
    progress = tmp_path / "progress.json"
    progress.write_text(
        json.dumps(
            {
                "02-life-of-a-message": {"completed": [1, 2], "current": 2, "finished": False},
                "04-chroot-jail": {"completed": [1, 2, 3], "current": 3, "finished": True},
            }
        )
    )
    done = simmta("lesson", "list", env={"SIMMTA_LESSON_PROGRESS": str(progress), "COLUMNS": "160"})
    assert done.returncode == 0, done.stderr
    rows = {
        line.split("│")[1].strip(): line
        for line in done.stdout.splitlines()
        if line.count("│") > 3 and line.split("│")[1].strip().isdigit()
    }
    assert {str(n) for n in range(1, 11)} <= set(rows)
    assert "50 %" in rows["2"] and "done" in rows["4"] and rows["1"].rstrip("│ ").endswith("-")


def test_usage_errors_are_plain() -> None:
    done = simmta("lesson", "check", "1")
    assert done.returncode == 2 and "--autoplay" in done.stderr
    done = simmta("lesson", "77")
    assert done.returncode == 2 and "no lesson '77'" in done.stderr
    assert "Traceback" not in done.stderr


def test_lesson_core_does_not_import_textual() -> None:
    code = (
        "import sys, simmta.lessons.cli, simmta.lessons.autoplay, simmta.lessons.runner;"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'textual'];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's daemons need to pass through the home")
def test_a_closed_home_under_sudo_gets_a_passable_instance_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """sudo simmta lesson N with a 0700 home: mail_owner could not reach the queue there."""
    from simmta.lessons import catalog
    from simmta.lessons.app import lesson_instance_dir

    base = Path(tempfile.mkdtemp(prefix="simmta-lessontest-"))  # pytest's own tmp is 0700
    try:
        base.chmod(0o755)
        home, spare = base / "home", base / "tmp"
        home.mkdir(mode=0o700)
        spare.mkdir()
        monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
        monkeypatch.setattr(tempfile, "tempdir", str(spare))
        lesson = catalog.find("1")
        path = lesson_instance_dir(lesson)
        assert path == spare / "simmta-lessons-0" / lesson.key
        assert (path.parent.stat().st_mode & 0o777) == 0o711
        home.chmod(0o755)
        assert lesson_instance_dir(lesson) == (
            home / ".local" / "state" / "simmta" / "lessons" / "instances" / lesson.key
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_teacher_notes_are_printed() -> None:
    done = simmta("lesson", "notes", "4")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("lesson 4: The chroot jail\n") and "ENOENT" in done.stdout


def test_a_lesson_runs_on_the_profiles_it_is_written_for(tmp_path: Path) -> None:
    """--profile: the lessons written for a design list and run on it; the others refuse,
    naming the design they describe; a profile's own explanation replaces the default."""
    from simmta.lessons import catalog

    env = {"SIMMTA_LESSON_PROGRESS": str(tmp_path / "p.json"), "COLUMNS": "160"}
    listed = simmta("lesson", "list", "--profile", "qmail", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("│")[1].strip() for line in listed.stdout.splitlines() if line.count("│") > 3]
    ids = [r for r in rows if r.isdigit()]
    assert ids == [str(lesson.id) for lesson in catalog.load_all() if "qmail" in lesson.setup.profiles]
    assert "3" not in ids and "11" in ids

    refused = simmta("lesson", "3", "--profile", "sendmail", env=env)
    assert refused.returncode != 0 and "written for postfix, not sendmail" in refused.stderr

    blast = catalog.find("11").with_profile("sendmail")
    assert blast.setup.profile == "sendmail" and blast.progress_key.endswith("@sendmail")
    first = blast.steps[0]
    assert first.explanation_for("sendmail") != first.explanation_for("postfix")
    assert "runs as root" not in first.explanation_for("postfix")


@pytest.mark.slow
def test_check_with_a_profile_runs_that_design(simmta_tmp: Path) -> None:
    env = {"TMPDIR": str(simmta_tmp)}
    done = simmta("lesson", "check", "11", "--autoplay", "--profile", "qmail", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"program": "qmail-smtpd"' in done.stdout and "ok, 3 steps" in done.stdout
