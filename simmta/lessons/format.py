"""The lesson file format: Markdown prose plus declarative TOML, parsed and validated.

A lesson file (``lessons/NN-slug.md``; the full description is in
``lessons/README.md``) is:

    +++                      front matter (TOML): id, slug, title, summary,
    ...                      teacher, prerequisites, sources, [setup]
    +++
    Introduction (Markdown).
    ## Step title            every level-2 heading starts a step
    Instruction (Markdown).
    ```step                  the step's data (TOML): solution, hints, sources,
    ...                      timeout, [predict], [[expect]] goal tables
    ```
    ### Hint                 (any number) one hint each
    ### Explanation          shown once the goal is met
    ### In simulated mode    shown instead of nothing when boundaries are simulated

Nothing in a lesson file is executed: solutions are simmta command lines
(checked against a fixed list of simmta tools) and scripted SMTP dialogues,
goals are data for ``simmta.lessons.goals``. Every problem is reported with
the file and line, and every problem in the file is reported at once.

Trust: lesson files come from teachers; they are validated as strictly as
configuration, and nothing in them can name a path or a program to run.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from simmta.core import config as config_mod
from simmta.core import names
from simmta.core.errors import ConfigError, SimmtaError
from simmta.core.services import DEFAULT_PROFILE, PROFILES
from simmta.lessons import sources as sources_mod
from simmta.lessons.goals import Expectation, Goal, GoalError, compile_expectation

# simmta sub-commands a stored solution or suggested action may use.
# simmta sub-commands a stored solution may use (the panel shows them, autoplay runs them).
SOLUTION_COMMANDS = (
    "send",
    "sendmail",
    "queue",
    "cat",
    "hold",
    "release",
    "requeue",
    "delete",
    "peer",
    "ctl",
    "ps",
    "status",
    "config",
    "events",
    "scan",
    "lab",
)
SOLUTION_PLACEHOLDERS = ("instance", "last_qid")
SECTIONS = {"hint": "hints", "explanation": "explanation", "in simulated mode": "simulated"}
_FRONT_KEYS = {"id", "slug", "title", "summary", "teacher", "prerequisites", "sources", "setup"}
_SETUP_KEYS = {"config", "peer_fault", "pace", "lab", "timeout", "profile", "profiles"}
_STEP_KEYS = {"solution", "hints", "sources", "timeout", "expect", "predict"}
_RUN_KEYS = {"run", "stdin", "background", "may_fail"}
_PREDICT_KEYS = {"question", "choice", "count", "tolerance"}
_GONE = {
    "minutes": "minutes are measured, not declared: remove the key "
    "('simmta lesson track' shows the measured time)",
    "action": "the panel shows the solution's commands as they are run: remove 'action'",
}
DEFAULT_TIMEOUT = 30.0


class LessonError(SimmtaError):
    """One or more problems in a lesson file, each with its line."""

    def __init__(self, path: Path | str, problems: list[tuple[int | None, str]]):
        self.path = Path(path)
        self.problems = sorted(problems, key=lambda p: p[0] or 0)
        super().__init__("\n".join(self.format_problem(line, what) for line, what in self.problems))

    def format_problem(self, line: int | None, what: str) -> str:
        return f"{self.path}, line {line}: {what}" if line else f"{self.path}: {what}"


@dataclass(frozen=True)
class SolutionAction:
    """One thing autoplay does: a simmta command line, or a scripted SMTP dialogue."""

    argv: tuple[str, ...] = ()
    stdin: str | None = None
    background: bool = False
    may_fail: bool = False

    def describe(self) -> str:
        """The command as the student sees it (and autoplay runs it)."""
        return "simmta " + shlex.join(self.argv)


@dataclass(frozen=True)
class Prediction:
    """A question asked before the experiment; the live outcome answers it.

    With ``choices`` the outcome is the first choice whose expectation holds
    once the step's goal is met; with ``count`` it is how many events (or
    records) match since the step began.
    """

    question: str
    choices: tuple[tuple[str, Expectation], ...] = ()
    count: Expectation | None = None
    tolerance: int = 0


@dataclass(frozen=True)
class Step:
    number: int
    title: str
    line: int
    instruction: str
    goal: Goal
    solution: tuple[SolutionAction, ...]
    hints: tuple[str, ...] = ()
    explanation: str = ""
    simulated: str = ""
    sources: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    predict: Prediction | None = None
    # "### Explanation (qmail)": what the step showed under that profile, instead of the default
    by_profile: Mapping[str, str] = field(default_factory=dict)

    def explanation_for(self, profile: str) -> str:
        return self.by_profile.get(profile, self.explanation)

    @property
    def commands(self) -> tuple[str, ...]:
        """What the panel shows, word for word what autoplay runs."""
        return tuple(a.describe() for a in self.solution)


@dataclass(frozen=True)
class Setup:
    config: Mapping[str, Any] = field(default_factory=dict)
    peer_fault: str = "none"
    pace: str = "live"
    lab: bool = False
    timeout: float = DEFAULT_TIMEOUT
    profile: str = DEFAULT_PROFILE  # the architecture the lesson's MTA runs
    profiles: tuple[str, ...] = (DEFAULT_PROFILE,)  # those it may be taken with (--profile)


@dataclass(frozen=True)
class Lesson:
    path: Path
    id: int
    slug: str
    title: str
    summary: str
    teacher: str
    prerequisites: tuple[int, ...]
    sources: tuple[str, ...]
    setup: Setup
    intro: str
    steps: tuple[Step, ...]

    @property
    def key(self) -> str:
        """The name progress is saved under."""
        return f"{self.id:02d}-{self.slug}"

    @property
    def progress_key(self) -> str:
        """Progress is saved per lesson and profile: the same steps on another design count apart."""
        own = self.setup.profile == self.setup.profiles[0]
        return self.key if own else f"{self.key}@{self.setup.profile}"

    def with_profile(self, profile: str) -> Lesson:
        """The lesson on another of its profiles (``simmta lesson N --profile P``)."""
        if profile not in self.setup.profiles:
            raise SimmtaError(
                f"lesson {self.id} ({self.title}) is written for "
                + " and ".join(self.setup.profiles)
                + f", not {profile}: its steps and explanations describe that design"
            )
        return replace(self, setup=replace(self.setup, profile=profile))


# ---------------------------------------------------------------- TOML with lines


class _Block:
    """A TOML fragment of the file, with its first line, to locate keys and tables."""

    def __init__(self, text: str, first_line: int):
        self.text, self.first_line = text, first_line
        self.lines = text.splitlines()

    def parse(self) -> dict[str, Any]:
        try:
            return tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as e:
            m = re.search(r"\(at line (\d+), column \d+\)", str(e))
            msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
            line = self.first_line + int(m.group(1)) - 1 if m else self.first_line
            raise _Problem(line, f"TOML syntax error: {msg}") from None

    def line_of(self, key: str | None, start: int = 0, end: int | None = None) -> int:
        """File line of ``key = ...`` (or ``[key]``) between block lines start..end."""
        if key:
            k = re.escape(key)
            # a key at the start of a line, then one inside an inline table
            for pat in (
                re.compile(rf"^\s*(?:\"?{k}\"?\s*=|\[+\s*{k}\s*\]+)"),
                re.compile(rf"(?:^|[\s{{,.])\"?{k}\"?\s*="),
            ):
                for i, text in enumerate(self.lines[start:end], start=start):
                    if pat.search(text):
                        return self.first_line + i
        return self.first_line + start

    def table_starts(self, header: str) -> list[int]:
        pat = re.compile(rf"^\s*\[\[\s*{re.escape(header)}\s*\]\]")
        return [i for i, t in enumerate(self.lines) if pat.match(t)]


class _Problem(Exception):
    def __init__(self, line: int | None, what: str):
        super().__init__(what)
        self.line, self.what = line, what


def _strings(value: Any, what: str, line: int) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Problem(line, f"{what}: expected a list of strings")
    return tuple(value)


def _timeout(value: Any, line: int) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 600:
        raise _Problem(line, "timeout: expected seconds between 0 and 600")
    return float(value)


# ---------------------------------------------------------------- front matter


def _front_matter(block: _Block) -> tuple[dict[str, Any], Setup]:
    data = block.parse()
    for key in data:
        if key in _GONE:
            raise _Problem(block.line_of(key), _GONE[key])
        if key not in _FRONT_KEYS:
            raise _Problem(
                block.line_of(key),
                f"unknown front-matter key {key!r} (known: " + ", ".join(sorted(_FRONT_KEYS)) + ")",
            )
    for key in ("id", "slug", "title", "summary", "teacher"):
        if key not in data:
            raise _Problem(block.first_line, f"front matter: missing {key!r}")
    if isinstance(data["id"], bool) or not isinstance(data["id"], int) or data["id"] < 1:
        raise _Problem(block.line_of("id"), "id: expected a whole number >= 1")
    if not isinstance(data["slug"], str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", data["slug"]):
        raise _Problem(block.line_of("slug"), "slug: expected lower-case words joined by '-'")
    for key in ("title", "summary", "teacher"):
        if not isinstance(data[key], str) or not data[key].strip():
            raise _Problem(block.line_of(key), f"{key}: expected text")
    prereq = data.get("prerequisites", [])
    if not isinstance(prereq, list) or not all(
        isinstance(p, int) and not isinstance(p, bool) for p in prereq
    ):
        raise _Problem(block.line_of("prerequisites"), "prerequisites: expected a list of lesson ids")
    data["prerequisites"] = tuple(prereq)
    data["sources"] = _citations(data.get("sources", []), block.line_of("sources"))
    return data, _setup(data.get("setup", {}), block)


def _citations(value: Any, line: int) -> tuple[str, ...]:
    """Sources a student can open: sections of docs/sources.md or files of simmta's tree."""
    cited = _strings(value, "sources", line)
    for citation in cited:
        if (why := sources_mod.problem(citation)) is not None:
            raise _Problem(line, why)
    return cited


def _setup(raw: Any, block: _Block) -> Setup:
    line = block.line_of("setup")
    if not isinstance(raw, dict):
        raise _Problem(line, "setup: expected a table")
    start = line - block.first_line
    for key in raw:
        if key not in _SETUP_KEYS:
            raise _Problem(
                block.line_of(key, start),
                f"setup: unknown key {key!r} (known: " + ", ".join(sorted(_SETUP_KEYS)) + ")",
            )
    overrides = raw.get("config", {})
    if not isinstance(overrides, dict):
        raise _Problem(block.line_of("config", start), "setup.config: expected a table")
    try:
        config_mod.apply(config_mod.defaults(), overrides)
    except ConfigError as e:
        key = e.key.split(".")[0] if e.key else "config"
        line = block.line_of(key if key in overrides else "config", start)
        raise _Problem(line, f"setup.config: {e.key}: {e.what}") from None
    fault = raw.get("peer_fault", "none")
    if fault not in names.PEER_FAULTS:
        raise _Problem(
            block.line_of("peer_fault", start),
            "setup.peer_fault: expected one of " + ", ".join(names.PEER_FAULTS),
        )
    pace = raw.get("pace", "live")
    if pace not in ("live", "slow", "step"):
        raise _Problem(block.line_of("pace", start), "setup.pace: expected live, slow or step")
    lab = raw.get("lab", False)
    if not isinstance(lab, bool):
        raise _Problem(block.line_of("lab", start), "setup.lab: expected true or false")
    timeout = _timeout(raw.get("timeout", DEFAULT_TIMEOUT), block.line_of("timeout", start))
    profile = raw.get("profile", DEFAULT_PROFILE)
    if profile not in PROFILES:
        raise _Problem(
            block.line_of("profile", start), "setup.profile: expected one of " + ", ".join(PROFILES)
        )
    profiles = raw.get("profiles", [profile])
    if (
        not isinstance(profiles, list)
        or not set(profiles) <= set(PROFILES)
        or profile not in profiles
        or len(set(profiles)) != len(profiles)
    ):
        raise _Problem(
            block.line_of("profiles", start),
            "setup.profiles: expected a list of " + ", ".join(PROFILES) + " that includes setup.profile",
        )
    return Setup(dict(overrides), fault, pace, lab, timeout, profile, tuple(profiles))


# ---------------------------------------------------------------- steps


def parse_command(text: str, line: int, what: str) -> tuple[str, ...]:
    """A simmta command line (without the leading ``simmta``), checked against the tool list."""
    try:
        argv = shlex.split(text)
    except ValueError as e:
        raise _Problem(line, f"{what}: cannot split {text!r} ({e})") from None
    if argv[:1] == ["simmta"]:
        argv = argv[1:]
    if not argv or argv[0] not in SOLUTION_COMMANDS:
        raise _Problem(
            line,
            f"{what}: {text!r} is not a simmta command a lesson may run "
            "(known: " + ", ".join(SOLUTION_COMMANDS) + ")",
        )
    if any(a == "--instance" or a.startswith("--instance=") for a in argv):
        raise _Problem(line, f"{what}: do not give --instance; the runner chooses the instance")
    for name in re.findall(r"\$\{([^}]*)\}", text):
        if name not in SOLUTION_PLACEHOLDERS:
            raise _Problem(
                line,
                f"{what}: unknown placeholder ${{{name}}} (known: " + ", ".join(SOLUTION_PLACEHOLDERS) + ")",
            )
    return tuple(argv)


def _solution(raw: Any, block: _Block) -> tuple[SolutionAction, ...]:
    line = block.line_of("solution")
    if not isinstance(raw, list) or not raw:
        raise _Problem(line, "solution: expected a list of simmta commands (a step must ship one)")
    out = []
    for item in raw:
        if isinstance(item, str):
            out.append(SolutionAction(parse_command(item, line, "solution")))
            continue
        if not isinstance(item, dict):
            raise _Problem(line, "solution: each item is a command string or a table")
        unknown = sorted(set(item) - _RUN_KEYS)
        if unknown or "run" not in item:
            raise _Problem(
                line,
                f"solution: unknown key {unknown[0]!r} (known: " + ", ".join(sorted(_RUN_KEYS)) + ")"
                if unknown
                else "solution: a table needs 'run' (a simmta command line)",
            )
        for flag in ("background", "may_fail"):
            if not isinstance(item.get(flag, False), bool):
                raise _Problem(line, f"solution: {flag}: expected true or false")
        if not isinstance(item["run"], str):
            raise _Problem(line, "solution: run: expected a command string")
        stdin = item.get("stdin")
        if stdin is not None and not isinstance(stdin, str):
            raise _Problem(line, "solution: stdin: expected a string")
        out.append(
            SolutionAction(
                parse_command(item["run"], line, "solution"),
                stdin,
                item.get("background", False),
                item.get("may_fail", False),
            )
        )
    return tuple(out)


def _goal(raw: Any, block: _Block, problems: list[tuple[int | None, str]]) -> Goal:
    starts = block.table_starts("expect")
    if not isinstance(raw, list) or not raw:
        problems.append((block.first_line, "step: a goal needs at least one [[expect]] table"))
        return Goal(())
    compiled: list[Expectation] = []
    for i, spec in enumerate(raw):
        start = starts[i] if i < len(starts) else 0
        end = starts[i + 1] if i + 1 < len(starts) else None
        try:
            compiled.append(compile_expectation(spec))
        except GoalError as e:
            problems.append(
                (block.line_of(e.key, start, end) if e.key else block.first_line + start, f"expect: {e}")
            )
    return Goal(tuple(compiled))


def _step(
    number: int,
    title: str,
    line: int,
    prose: dict[str, Any],
    block: _Block | None,
    default_timeout: float,
    problems: list[tuple[int | None, str]],
) -> Step | None:
    if block is None:
        problems.append((line, f"step {number} ({title!r}) has no ```step block"))
        return None
    try:
        data = block.parse()
    except _Problem as p:
        problems.append((p.line, p.what))
        return None
    for key in data:
        if key in _GONE:
            problems.append((block.line_of(key), _GONE[key]))
        elif key not in _STEP_KEYS:
            problems.append(
                (
                    block.line_of(key),
                    f"unknown step key {key!r} (known: " + ", ".join(sorted(_STEP_KEYS)) + ")",
                )
            )
    goal = _goal(data.get("expect"), block, problems)
    try:
        solution = _solution(data.get("solution"), block)
        hints = _strings(data.get("hints", []), "hints", block.line_of("hints"))
        sources = _citations(data.get("sources", []), block.line_of("sources"))
        timeout = _timeout(data.get("timeout", default_timeout), block.line_of("timeout"))
        predict = _prediction(data.get("predict"), block)
    except _Problem as p:
        problems.append((p.line, p.what))
        return None
    if not prose["instruction"].strip():
        problems.append((line, f"step {number}: no instruction text"))
    if not prose["explanation"].strip():
        problems.append((line, f"step {number}: no '### Explanation' section"))
    return Step(
        number,
        title,
        line,
        prose["instruction"].strip(),
        goal,
        solution,
        (*hints, *prose["hints"]),
        prose["explanation"].strip(),
        prose["simulated"].strip(),
        sources,
        timeout,
        predict,
        {k: v.strip() for k, v in prose["by_profile"].items()},
    )


def _prediction(raw: Any, block: _Block) -> Prediction | None:
    """``[predict]``: a question, then ``[[predict.choice]]`` (text + expectation) or ``count``."""
    if raw is None:
        return None
    line = block.line_of("predict")
    if not isinstance(raw, dict):
        raise _Problem(line, "predict: expected a table")
    unknown = sorted(set(raw) - _PREDICT_KEYS)
    if unknown:
        raise _Problem(
            line, f"predict: unknown key {unknown[0]!r} (known: " + ", ".join(sorted(_PREDICT_KEYS)) + ")"
        )
    question = raw.get("question")
    if not isinstance(question, str) or not question.strip():
        raise _Problem(line, "predict.question: expected text")
    if ("choice" in raw) == ("count" in raw):
        raise _Problem(line, "predict: give either [[predict.choice]] tables or a count")
    tolerance = raw.get("tolerance", 0)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
        raise _Problem(line, "predict.tolerance: expected a whole number >= 0")
    try:
        if "count" in raw:
            counted = compile_expectation(raw["count"])
            if counted.form not in ("event", "state"):
                raise _Problem(line, "predict.count: expected an event = ... or state = ... table")
            return Prediction(question.strip(), count=counted, tolerance=tolerance)
        choices = raw["choice"]
        if not isinstance(choices, list) or not 2 <= len(choices) <= 9:
            raise _Problem(line, "predict.choice: expected 2 to 9 [[predict.choice]] tables")
        out = []
        for choice in choices:
            if not isinstance(choice, dict) or not isinstance(choice.get("text"), str):
                raise _Problem(line, 'predict.choice: each needs text = "..." and an expectation')
            spec = {k: v for k, v in choice.items() if k != "text"}
            out.append((choice["text"], compile_expectation(spec)))
        return Prediction(question.strip(), tuple(out), tolerance=tolerance)
    except GoalError as e:
        raise _Problem(line, f"predict: {e}") from None


# ---------------------------------------------------------------- the file


_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w-]*)")


def parse_text(text: str, path: Path | str = "<lesson>") -> Lesson:
    """A validated lesson, or LessonError listing every problem with its line."""
    lines = text.splitlines()
    problems: list[tuple[int | None, str]] = []
    if not lines or lines[0].strip() != "+++":
        raise LessonError(path, [(1, "a lesson starts with '+++' front matter (TOML)")])
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "+++")
    except StopIteration:
        raise LessonError(path, [(1, "front matter is not closed by a '+++' line")]) from None
    try:
        front, setup = _front_matter(_Block("\n".join(lines[1:end]), 2))
    except _Problem as p:
        raise LessonError(path, [(p.line, p.what)]) from None

    intro: list[str] = []
    raw_steps: list[dict[str, Any]] = []
    target: list[str] = intro
    fence: str | None = None
    block_start = 0
    block_lines: list[str] = []
    for i in range(end + 1, len(lines)):
        lineno, text_line = i + 1, lines[i]
        m = _FENCE.match(text_line)
        if fence is not None:  # inside a fenced block
            if m and m.group(2).startswith(fence) and not m.group(3):
                fence = None
                if block_start:
                    step = raw_steps[-1] if raw_steps else None
                    if step is None:
                        problems.append((block_start, "a ```step block before the first '## ' step"))
                    elif step["block"] is not None:
                        problems.append((block_start, "a second ```step block in one step"))
                    else:
                        step["block"] = _Block("\n".join(block_lines), block_start + 1)
                    block_start = 0
                else:
                    target.append(text_line)
            elif block_start:
                block_lines.append(text_line)
            else:
                target.append(text_line)
            continue
        if m:
            fence = m.group(2)
            if m.group(3) == "step":
                block_start, block_lines = lineno, []
            else:
                target.append(text_line)
            continue
        if text_line.startswith("## "):
            raw_steps.append(
                {
                    "title": text_line[3:].strip(),
                    "line": lineno,
                    "block": None,
                    "instruction": [],
                    "hints": [],
                    "explanation": [],
                    "simulated": [],
                    "by_profile": {},
                }
            )
            target = raw_steps[-1]["instruction"]
        elif text_line.startswith("### ") and raw_steps:
            name = text_line[4:].strip().lower()
            variant = re.fullmatch(r"explanation \((\w+)\)", name)
            if variant and variant.group(1) in setup.profiles:
                target = raw_steps[-1]["by_profile"].setdefault(variant.group(1), [])
            elif variant:
                problems.append(
                    (lineno, f"'### Explanation ({variant.group(1)})': not one of setup.profiles")
                )
                target = []
            elif name not in SECTIONS:
                problems.append(
                    (
                        lineno,
                        f"unknown section {text_line[4:].strip()!r} in a step "
                        "(known: Hint, Explanation, In simulated mode; "
                        "use '####' for other headings)",
                    )
                )
                target = []
            elif SECTIONS[name] == "hints":
                raw_steps[-1]["hints"].append([])
                target = raw_steps[-1]["hints"][-1]
            else:
                target = raw_steps[-1][SECTIONS[name]]
        elif text_line.startswith("# "):
            problems.append((lineno, "use '## ' for steps (the title comes from the front matter)"))
        else:
            target.append(text_line)
    if fence is not None:
        problems.append((block_start or len(lines), "a fenced block is not closed"))
    if not raw_steps:
        problems.append((end + 1, "a lesson needs at least one '## ' step"))

    steps: list[Step] = []
    for n, raw in enumerate(raw_steps, start=1):
        prose = {
            "instruction": "\n".join(raw["instruction"]),
            "hints": ["\n".join(h).strip() for h in raw["hints"]],
            "explanation": "\n".join(raw["explanation"]),
            "simulated": "\n".join(raw["simulated"]),
            "by_profile": {k: "\n".join(v) for k, v in raw["by_profile"].items()},
        }
        parsed = _step(n, raw["title"], raw["line"], prose, raw["block"], setup.timeout, problems)
        if parsed is not None:
            steps.append(parsed)
    if problems:
        raise LessonError(path, problems)
    return Lesson(
        Path(path),
        front["id"],
        front["slug"],
        front["title"].strip(),
        front["summary"].strip(),
        front["teacher"].strip(),
        front["prerequisites"],
        front["sources"],
        setup,
        "\n".join(intro).strip(),
        tuple(steps),
    )


def load(path: Path) -> Lesson:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise LessonError(path, [(None, f"cannot read: {e.strerror}")]) from None
    except UnicodeDecodeError:
        raise LessonError(path, [(None, "not UTF-8 text")]) from None
    return parse_text(text, path)
