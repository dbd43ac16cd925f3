"""``simmta lesson``: list lessons, take one in the TUI, check them headless, validate files.

    simmta lesson list                      lessons with saved progress
    simmta lesson N [--restart]             take lesson N (id or slug) in the TUI
    simmta lesson check N|all --autoplay    play the stored solutions on fresh MTAs
    simmta lesson validate FILE...          check lesson files, errors with line numbers

Trust: a front end; lesson files are validated by simmta.lessons.format.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simmta.cli import plain
from simmta.core.errors import SimmtaError
from simmta.lessons import catalog
from simmta.lessons.format import LessonError, load
from simmta.lessons.progress import ProgressStore

USAGE = """\
simmta lesson list
simmta lesson N [--restart]
simmta lesson check N|all --autoplay [--keep]
simmta lesson validate FILE..."""


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("lesson", parents=[parent], usage="simmta lesson list|N|check|validate [options]",
                       help="guided lessons: list, take, check (--autoplay), validate",
                       description=plain(__doc__, slice(0, 2)),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="+", metavar="list|N|check|validate",
                   help="what to do (see above)")
    p.add_argument("--autoplay", action="store_true",
                   help="check: perform each step's stored solution on a fresh MTA")
    p.add_argument("--keep", action="store_true",
                   help="check: keep the temporary instances of passing lessons too")
    p.add_argument("--restart", action="store_true",
                   help="take the lesson from step 1, forgetting saved progress")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    verb, rest = args.what[0], args.what[1:]
    if verb == "list":
        return _list()
    if verb == "validate":
        if not rest:
            raise SimmtaError("usage: simmta lesson validate FILE...")
        return _validate([Path(r) for r in rest])
    if verb == "check":
        if len(rest) != 1:
            raise SimmtaError("usage: simmta lesson check N|all --autoplay")
        if not args.autoplay:
            raise SimmtaError("'simmta lesson check' runs headless with --autoplay "
                              "(to take a lesson yourself: simmta lesson N)")
        return _check(rest[0], args.keep)
    if rest:
        raise SimmtaError("usage:\n" + USAGE)
    return _take(verb, args.instance, args.restart)


def _list() -> int:
    from rich.console import Console
    from rich.table import Table

    saved = ProgressStore().load()
    table = Table(title="simmta lessons")
    for col in ("#", "lesson", "minutes", "steps", "progress"):
        table.add_column(col, justify="right" if col in ("#", "minutes", "steps") else "left")
    for lesson in catalog.load_all():
        record = saved.get(lesson.key, {})
        done = len(record.get("completed", []))
        total = len(lesson.steps)
        mark = "done" if done == total else f"{round(100 * done / total)} %" if done else "-"
        table.add_row(str(lesson.id), f"{lesson.title}\n[dim]{lesson.summary}[/dim]",
                      str(lesson.minutes), str(total), mark)
    Console().print(table)
    print("take one with: simmta lesson N")
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


def _check(which: str, keep: bool) -> int:
    from simmta.lessons.autoplay import check_lesson

    lessons = catalog.load_all() if which == "all" else [catalog.find(which)]
    for lesson in lessons:
        print(f"lesson {lesson.id}: {lesson.title}", flush=True)
        result = check_lesson(lesson, keep=keep, log=lambda text: print(text, flush=True))
        print(result.report(), flush=True)
        if not result.ok:
            return 1
    return 0


def _take(which: str, instance_dir: str | None, restart: bool) -> int:
    from simmta.lessons.app import run_lesson

    lesson = catalog.find(which)
    return run_lesson(lesson, Path(instance_dir) if instance_dir else None, restart)
