"""``simmta lesson list`` / usage errors, and the core of the lessons staying free of Textual."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def simmta(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "simmta", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO, env={**os.environ, **(env or {})}, check=False)


def test_list_shows_saved_progress(tmp_path: Path) -> None:
    progress = tmp_path / "progress.json"
    progress.write_text(json.dumps({
        "02-life-of-a-message": {"completed": [1, 2], "current": 2, "finished": False},
        "04-chroot-jail": {"completed": [1, 2, 3], "current": 3, "finished": True}}))
    done = simmta("lesson", "list", env={"SIMMTA_LESSON_PROGRESS": str(progress),
                                         "COLUMNS": "160"})
    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines()
            if line.count("│") > 3 and line.split("│")[1].strip().isdigit()}
    assert {str(n) for n in range(1, 11)} <= set(rows)
    assert "50 %" in rows["2"] and "done" in rows["4"] and rows["1"].rstrip("│ ").endswith("-")


def test_usage_errors_are_plain() -> None:
    done = simmta("lesson", "check", "1")
    assert done.returncode == 2 and "--autoplay" in done.stderr
    done = simmta("lesson", "77")
    assert done.returncode == 2 and "no lesson '77'" in done.stderr
    assert "Traceback" not in done.stderr


def test_lesson_core_does_not_import_textual() -> None:
    code = ("import sys, simmta.lessons.cli, simmta.lessons.autoplay, simmta.lessons.runner;"
            "bad = [m for m in sys.modules if m.split('.')[0] == 'textual'];"
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=REPO, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
