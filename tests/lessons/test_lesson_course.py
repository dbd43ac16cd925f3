"""The shipped course: every lesson validates, and every lesson's stored solution
completes it on a real MTA (``simmta lesson check all --autoplay``), as root and
as an unprivileged user. A lesson whose solution misses its goal fails, naming
the step."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from lessonkit import HEADER

from simmta.lessons import catalog, course, sources
from simmta.lessons.format import load

REPO = Path(__file__).resolve().parents[2]
LESSON_FILES = sorted((REPO / "lessons").glob("[0-9]*.md"))
NOBODY = 65534


def simmta(
    *args: str, user: int | None = None, env: dict[str, str] | None = None, timeout: float = 1200
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "simmta", *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory others may pass through (pytest's own tmp is 0700, and as root the
    MTA's mail_owner must reach the queue directory below it)."""
    path = Path(tempfile.mkdtemp(prefix="simmta-lessontest-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_course_is_complete_and_valid() -> None:
    lessons = [load(p) for p in LESSON_FILES]
    ids = sorted(lesson.id for lesson in lessons)
    assert ids[:10] == list(range(1, 11))
    assert [lesson.id for lesson in catalog.load_all(REPO / "lessons")] == ids
    for lesson in lessons:
        assert lesson.teacher and lesson.sources, lesson.key
        for step in lesson.steps:
            assert step.solution and step.explanation and step.hints, (lesson.key, step.title)


def test_every_source_section_quotes_a_public_address() -> None:
    text = (REPO / "docs" / "sources.md").read_text()
    index = sources.parse(text)
    assert len(index) >= 30
    for section in index.values():
        assert section.url and section.url.startswith(("https://", "http://")), section.id
        body = text.split(f"## {section.id}\n", 1)[1].split("\n## ", 1)[0]
        assert "\n> " in body, f"section {section.id} quotes nothing"
    cited = {
        c
        for p in LESSON_FILES
        for lesson in [load(p)]
        for c in (*lesson.sources, *(s for step in lesson.steps for s in step.sources))
    }
    assert all(sources.problem(c) is None for c in cited)


def test_the_class_track_fits_fifty_minutes() -> None:
    """Measured autoplay time (lessons/durations.toml) plus the reading estimate."""
    directory = REPO / "lessons"
    track = course.tracks(directory)["class-50"]
    autoplay = course.measured(directory)
    by_id = {lesson.id: lesson for lesson in catalog.load_all(directory)}
    assert [by_id[i].slug for i in track.lessons] == [
        "meet-the-processes",
        "least-privilege",
        "chroot-jail",
        "insulation",
        "no-setuid",
        "hostile-inputs",
        "blast-radius",
    ]
    total = 0.0
    for i in track.lessons:
        minutes = course.minutes(by_id[i], autoplay)
        assert minutes is not None, f"lesson {i} was never measured (check --autoplay --record)"
        total += minutes
    assert total <= track.budget_minutes == 50, total


def test_track_command_selects_and_adds_up(tmp_path: Path) -> None:
    env = {"SIMMTA_LESSON_PROGRESS": str(tmp_path / "progress.json")}
    done = simmta("lesson", "track", "class-50", env=env)
    assert done.returncode == 0, done.stderr
    assert "total" in done.stdout and "(budget 50)" in done.stdout
    listed = simmta("lesson", "list", env=env)
    assert "track class-50" in listed.stdout and "Throughput" not in listed.stdout
    assert simmta("lesson", "track", "nope", env=env).returncode != 0


def test_validate_command(tmp_path: Path) -> None:
    done = simmta("lesson", "validate", *map(str, LESSON_FILES))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": ok (lesson") == len(LESSON_FILES)
    bad = tmp_path / "bad.md"
    bad.write_text(
        HEADER + '\n## A step\n\nDo it.\n\n```step\nsolution = ["ps"]\n\n'
        '[[expect]]\nevent = "delivery/delivered"\nwhere = { data.rcpt = 1 }\n'
        'colour = "red"\n```\n\n### Explanation\nx\n'
    )
    done = simmta("lesson", "validate", str(bad))
    assert done.returncode == 1
    line = bad.read_text().splitlines().index('colour = "red"') + 1
    assert f"{bad}, line {line}: expect: unknown key 'colour'" in done.stderr


WRONG_USER = (
    HEADER.replace("id = 2", "id = 42")
    + """
## Send to bob

The stored solution sends to carol, so this step must stay open.

```step
solution = ["send --from alice@simmta.test --to carol@simmta.test"]
timeout = 8

[[expect]]
event = "delivery/delivered"
where = { data.rcpt = "bob@simmta.test" }
label = "a message reached bob's Maildir"
```

### Explanation
Never shown.
"""
)


@pytest.mark.slow
def test_autoplay_names_the_step_whose_goal_is_not_met(workdir: Path) -> None:
    lessons = workdir / "lessons"
    lessons.mkdir()
    (lessons / "42-wrong.md").write_text(WRONG_USER)
    done = simmta(
        "lesson",
        "check",
        "42",
        "--autoplay",
        timeout=120,
        env={"SIMMTA_LESSONS": str(lessons), "TMPDIR": str(workdir)},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED at step 1 (Send to bob)" in done.stdout
    assert "still open: a message reached bob's Maildir" in done.stdout
    assert list(workdir.glob("simmta-lesson-42-*/lesson-events.jsonl"))  # kept for a human


TICKS_ITSELF = (
    HEADER.replace("id = 2", "id = 43")
    + """
## Send to bob

Send it.

```step
solution = ["send --from alice@simmta.test --to bob@simmta.test"]
timeout = 20

[[expect]]
event = "delivery/delivered"
where = { data.rcpt = "bob@simmta.test" }
```

### Hint
Send.

### Explanation
Sent.

## Is qmgr there?

This step's goal holds before the student does anything.

```step
solution = ["ps"]

[[expect]]
state = "processes"
where = { service = "qmgr" }
label = "qmgr runs"
```

### Hint
Look.

### Explanation
Never shown.
"""
)


@pytest.mark.slow
def test_autoplay_fails_a_step_whose_goal_is_met_before_it_begins(workdir: Path) -> None:
    lessons = workdir / "lessons"
    lessons.mkdir()
    (lessons / "43-ticks.md").write_text(TICKS_ITSELF)
    done = simmta(
        "lesson",
        "check",
        "43",
        "--autoplay",
        timeout=120,
        env={"SIMMTA_LESSONS": str(lessons), "TMPDIR": str(workdir)},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED at step 2 (Is qmgr there?)" in done.stdout
    assert "already met when the step began" in done.stdout


def _check_all(user: int | None, workdir: Path, privilege: str = "auto") -> subprocess.CompletedProcess[str]:
    """All lessons with temporary instances (and HOME) under ``workdir``."""
    env = {"TMPDIR": str(workdir), "HOME": str(workdir), "SIMMTA_PRIVILEGE": privilege}
    return simmta("lesson", "check", "all", "--autoplay", user=user, env=env)


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="real privilege separation needs root")
def test_every_lesson_autoplays_as_root(workdir: Path) -> None:
    done = _check_all(None, workdir)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert done.stdout.count("[real]") == len(LESSON_FILES)


@pytest.mark.slow
@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None,
    reason="as root, needs setpriv to become an unprivileged user",
)
def test_every_lesson_autoplays_unprivileged(workdir: Path) -> None:
    """As root: setpriv to nobody (65534); as anyone else: simply as this user."""
    user = None
    if os.geteuid() == 0:
        os.chown(workdir, NOBODY, NOBODY)
        user = NOBODY
    done = _check_all(user, workdir, privilege="simulated")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert done.stdout.count("[simulated]") == len(LESSON_FILES)
