"""``simmta lesson``: list lessons, take one in the TUI, check them headless, validate files.

    simmta lesson list                      lessons with saved progress and measured minutes
    simmta lesson N [--restart]             take lesson N (id or slug) in the TUI
    simmta lesson N --profile qmail         ... on another architecture the lesson is written for
    simmta lesson track [NAME]              the tracks (class-50: a 50-minute class); select one
    simmta lesson notes [N]                 the teacher's notes (what to show, what students get wrong)
    simmta lesson check N|all --autoplay    play the stored solutions on fresh MTAs [--record]
    simmta lesson validate FILE...          check lesson files, errors with line numbers

Trust: a front end; lesson files are validated by simmta.lessons.format.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simmta.cli import plain
from simmta.core.errors import SimmtaError
from simmta.core.services import PROFILES
from simmta.lessons import catalog, course
from simmta.lessons.format import Lesson, LessonError, load
from simmta.lessons.progress import ProgressStore

USAGE = """\
simmta lesson list
simmta lesson N [--restart] [--profile P]
simmta lesson track [NAME]
simmta lesson notes [N]
simmta lesson check N|all --autoplay [--keep] [--record] [--profile P]
simmta lesson validate FILE..."""
TRACK_KEY = "_track"  # where the selected track is saved in the progress file


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "lesson",
        parents=[parent],
        usage="simmta lesson list|N|track|notes|check|validate [options]",
        help="guided lessons: list, take, check (--autoplay), validate",
        description=plain(__doc__, slice(0, 2)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "what", nargs="+", metavar="list|N|track|notes|check|validate", help="what to do (see above)"
    )
    p.add_argument(
        "--autoplay", action="store_true", help="check: perform each step's stored solution on a fresh MTA"
    )
    p.add_argument(
        "--keep", action="store_true", help="check: keep the temporary instances of passing lessons too"
    )
    p.add_argument(
        "--record",
        action="store_true",
        help="check: write each lesson's autoplay time to lessons/durations.toml",
    )
    p.add_argument(
        "--restart", action="store_true", help="take the lesson from step 1, forgetting saved progress"
    )
    p.add_argument(
        "--profile",
        choices=tuple(PROFILES),
        help="the architecture the lesson's MTA runs (default: the lesson's own, postfix but for "
        "lesson 12's qmail); list, check all: only the lessons written for it",
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    verb, rest = args.what[0], args.what[1:]
    if verb == "list":
        return _list(args.profile)
    if verb == "notes":
        if len(rest) > 1:
            raise SimmtaError("usage: simmta lesson notes [N]")
        lessons = [catalog.find(rest[0])] if rest else catalog.load_all()
        for lesson in lessons:
            print(f"lesson {lesson.id}: {lesson.title}\n{lesson.teacher}\n")
        return 0
    if verb == "track":
        if len(rest) > 1:
            raise SimmtaError("usage: simmta lesson track [NAME]")
        return _track(rest[0] if rest else None)
    if verb == "validate":
        if not rest:
            raise SimmtaError("usage: simmta lesson validate FILE...")
        return _validate([Path(r) for r in rest])
    if verb == "check":
        if len(rest) != 1:
            raise SimmtaError("usage: simmta lesson check N|all --autoplay")
        if not args.autoplay:
            raise SimmtaError(
                "'simmta lesson check' runs headless with --autoplay "
                "(to take a lesson yourself: simmta lesson N)"
            )
        return _check(rest[0], args.keep, args.record, args.profile)
    if rest:
        raise SimmtaError("usage:\n" + USAGE)
    return _take(verb, args.instance, args.restart, args.profile)


def on_profile(lessons: list[Lesson], profile: str | None) -> list[Lesson]:
    """The lessons written for ``profile``, taken on it (all, on their own, if None)."""
    if profile is None:
        return lessons
    return [lesson.with_profile(profile) for lesson in lessons if profile in lesson.setup.profiles]


def _list(profile: str | None) -> int:
    from rich.console import Console
    from rich.table import Table

    saved = ProgressStore().load()
    autoplay = course.measured(catalog.lessons_dir())
    selected = saved.get(TRACK_KEY, {}).get("name")
    track = course.tracks(catalog.lessons_dir()).get(selected) if selected else None
    title = "simmta lessons" + (f" (track {selected})" if track else "")
    table = Table(title=title + (f", written for the {profile} profile" if profile else ""))
    for col in ("#", "lesson", "minutes", "steps", "progress"):
        table.add_column(col, justify="right" if col in ("#", "minutes", "steps") else "left")
    for lesson in on_profile(catalog.load_all(), profile):
        if track and lesson.id not in track.lessons:
            continue
        record = saved.get(lesson.progress_key, {})
        done = len(record.get("completed", []))
        total = len(lesson.steps)
        mark = "done" if done == total else f"{round(100 * done / total)} %" if done else "-"
        mins = course.minutes(lesson, autoplay)
        table.add_row(
            str(lesson.id),
            f"{lesson.title}\n[dim]{lesson.summary}[/dim]",
            f"{mins:.0f}" if mins is not None else "?",
            str(total),
            mark,
        )
    Console().print(table)
    print("take one with: simmta lesson N" + ("" if track else "; a class track: simmta lesson track"))
    return 0


def _track(name: str | None) -> int:
    directory = catalog.lessons_dir()
    tracks = course.tracks(directory)
    autoplay = course.measured(directory)
    by_id = {lesson.id: lesson for lesson in catalog.load_all()}
    if name is None:
        for t in tracks.values():
            print(f"{t.name}: {t.title} (lessons {', '.join(map(str, t.lessons))})")
        print("select one with: simmta lesson track NAME")
        return 0
    if name not in tracks:
        raise SimmtaError(f"no track {name!r} (known: {', '.join(tracks) or 'none'})")
    track = tracks[name]
    total = 0.0
    print(f"track {name}: {track.title}")
    for i in track.lessons:
        lesson = by_id.get(i)
        if lesson is None:
            raise SimmtaError(f"track {name} names lesson {i}, which does not exist")
        mins = course.minutes(lesson, autoplay)
        if mins is None:
            raise SimmtaError(
                f"lesson {lesson.key} has no measured time: run 'simmta lesson check all --autoplay --record'"
            )
        total += mins
        print(f"  {lesson.id:>2}. {lesson.title}: {mins:.1f} min")
    print(
        f"  total {total:.1f} min (budget {track.budget_minutes}): measured autoplay time, plus "
        f"reading at {course.READING_WPM} words/min, {course.TYPING_SECONDS} s per command and "
        f"{course.THINKING_SECONDS} s per prediction"
    )
    ProgressStore().put(TRACK_KEY, {"name": name})
    print(
        f"selected: 'simmta lesson list' now shows this track; start with: simmta lesson {track.lessons[0]}"
    )
    return 0


def _validate(paths: list[Path]) -> int:
    failed = 0
    for path in paths:
        try:
            lesson = load(path)
        except LessonError as e:
            print(e, file=sys.stderr)
            failed += 1
            continue
        print(f"{path}: ok (lesson {lesson.id}, {len(lesson.steps)} steps)")
    return 1 if failed else 0


def _check(which: str, keep: bool, record: bool, profile: str | None) -> int:
    from simmta.lessons.autoplay import check_lesson

    if which == "all":
        lessons = on_profile(catalog.load_all(), profile)
    else:
        lesson = catalog.find(which)
        lessons = [lesson.with_profile(profile) if profile else lesson]
    times: dict[str, tuple[float, str]] = {}
    for lesson in lessons:
        print(f"lesson {lesson.id}: {lesson.title}", flush=True)
        result = check_lesson(lesson, keep=keep, log=lambda text: print(text, flush=True))
        print(result.report(), flush=True)
        if not result.ok:
            return 1
        if lesson.setup.profile == lesson.setup.profiles[0]:  # the time of the lesson as listed
            times[lesson.key] = (result.seconds, result.privilege_mode or "unknown")
    if record:
        print(f"recorded in {course.record(catalog.lessons_dir(), times)}")
    return 0


def _take(which: str, instance_dir: str | None, restart: bool, profile: str | None) -> int:
    from simmta.lessons.app import run_lesson

    lesson = catalog.find(which)
    if profile is not None:
        lesson = lesson.with_profile(profile)
    return run_lesson(lesson, Path(instance_dir) if instance_dir else None, restart)
