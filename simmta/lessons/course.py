"""How long lessons take, measured, and the tracks that fit a class period.

A lesson's time is not declared by its author: it is the autoplay time
``simmta lesson check --autoplay --record`` measured on a real MTA (the
machine's part: starting the MTA, waiting for retries and idle timeouts),
kept in ``lessons/durations.toml``, plus an estimate of the student's part
from the text: prose read at READING_WPM words a minute, TYPING_SECONDS per
command typed, and THINKING_SECONDS per prediction. ``lessons/tracks.toml``
names ordered selections of lessons (``class-50``: a 50-minute class);
``simmta lesson track NAME`` shows one with its times and selects it.

Trust: reads files shipped with the course; nothing here runs anything.
"""

from __future__ import annotations

import re
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from simmta.core.errors import SimmtaError
from simmta.lessons.format import Lesson

READING_WPM = 150  # words a minute, for technical prose on a projector
TYPING_SECONDS = 15  # per command the student types (or pastes and checks)
THINKING_SECONDS = 60  # per prediction: read the question, commit to an answer
DURATIONS = "durations.toml"
TRACKS = "tracks.toml"


@dataclass(frozen=True)
class Track:
    name: str
    title: str
    lessons: tuple[int, ...]
    budget_minutes: int


def student_seconds(lesson: Lesson) -> float:
    """The estimate of the student's part: reading, typing, predicting."""
    texts = [lesson.intro]
    commands = predictions = 0
    for step in lesson.steps:
        texts += [step.instruction, step.explanation]
        commands += len(step.solution)
        if step.predict is not None:
            predictions += 1
            texts += [step.predict.question, *(text for text, _ in step.predict.choices)]
    words = len(re.findall(r"\w+", " ".join(texts)))
    return words * 60 / READING_WPM + commands * TYPING_SECONDS + predictions * THINKING_SECONDS


def measured(directory: Path) -> dict[str, float]:
    """Autoplay seconds per lesson key, as last recorded (empty if never)."""
    path = directory / DURATIONS
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SimmtaError(f"{path}: {e}") from None
    return {
        k: float(v["autoplay_seconds"])
        for k, v in data.items()
        if isinstance(v, dict) and isinstance(v.get("autoplay_seconds"), int | float)
    }


def minutes(lesson: Lesson, autoplay: dict[str, float]) -> float | None:
    """Measured autoplay + the student estimate, in minutes (None: never measured)."""
    if lesson.key not in autoplay:
        return None
    return (autoplay[lesson.key] + student_seconds(lesson)) / 60


def record(directory: Path, results: dict[str, tuple[float, str]]) -> Path:
    """Merge autoplay times (key -> (seconds, privilege mode)) into durations.toml."""
    path = directory / DURATIONS
    old: dict[str, dict[str, object]] = {}
    if path.exists():
        old = tomllib.loads(path.read_text(encoding="utf-8"))
    when = time.strftime("%Y-%m-%d", time.gmtime())
    for key, (seconds, mode) in results.items():
        old[key] = {"autoplay_seconds": round(seconds, 1), "mode": mode, "measured": when}
    lines = [
        "# Autoplay time of each lesson, measured by",
        "#   simmta lesson check all --autoplay --record",
        "# (the machine's part of a lesson; 'simmta lesson track' adds the student's part).",
        "",
    ]
    for key in sorted(old):
        v = old[key]
        lines += [
            f"[{key}]",
            f"autoplay_seconds = {v['autoplay_seconds']}",
            f'mode = "{v["mode"]}"',
            f'measured = "{v["measured"]}"',
            "",
        ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def tracks(directory: Path) -> dict[str, Track]:
    path = directory / TRACKS
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SimmtaError(f"{path}: {e}") from None
    out = {}
    for name, spec in data.items():
        ids = spec.get("lessons") if isinstance(spec, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise SimmtaError(f"{path}: [{name}] needs lessons = [ids]")
        out[name] = Track(name, str(spec.get("title", name)), tuple(ids), int(spec.get("budget_minutes", 50)))
    return out
