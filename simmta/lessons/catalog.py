"""Where lessons live and how they are found: by number, slug or file name.

Lessons are the ``*.md`` files (other than README.md) of the lessons directory:
``$SIMMTA_LESSONS`` if set, else ``lessons/`` beside the ``simmta`` package (a
source checkout), else ``share/simmta/lessons`` of the installation (a wheel
installs them there). They are ordered by their ``id``.

Trust: reads teacher-written files through simmta.lessons.format.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import simmta
from simmta.core.errors import SimmtaError
from simmta.lessons.format import Lesson, LessonError, load


def lessons_dir() -> Path:
    if env := os.environ.get("SIMMTA_LESSONS"):
        return Path(env)
    checkout = Path(simmta.__file__).resolve().parent.parent / "lessons"
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "simmta" / "lessons"


def lesson_files(directory: Path | None = None) -> list[Path]:
    d = directory or lessons_dir()
    if not d.is_dir():
        raise SimmtaError(f"no lessons directory at {d} (set SIMMTA_LESSONS)")
    return sorted(p for p in d.glob("*.md") if p.name.lower() != "readme.md")


def load_all(directory: Path | None = None) -> list[Lesson]:
    """Every lesson, ordered by id; LessonError with every file's problems."""
    lessons, problems = [], []
    for path in lesson_files(directory):
        try:
            lessons.append(load(path))
        except LessonError as e:
            problems.append(str(e))
    if problems:
        raise SimmtaError("\n".join(problems))
    ids = [lesson.id for lesson in lessons]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise SimmtaError(f"two lessons share id {min(dup)}")
    return sorted(lessons, key=lambda lesson: lesson.id)


def find(which: str, directory: Path | None = None) -> Lesson:
    """A lesson by id ("2"), slug ("life-of-a-message") or path."""
    path = Path(which)
    if path.suffix == ".md" and path.exists():
        return load(path)
    for lesson in load_all(directory):
        if which in (str(lesson.id), f"{lesson.id:02d}", lesson.slug, lesson.key):
            return lesson
    raise SimmtaError(f"no lesson {which!r} (see 'simmta lesson list')")
