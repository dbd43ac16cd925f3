"""The goal language of lessons: declarative matching over events and state.

A step's goal is a list of *expectations*, all of which must hold. Each one is
written as a ``[[expect]]`` TOML table in the lesson file and compiled here
into a small tree of matchers:

    event = "kind/type"   events of that kind and type ("kind" or "kind/*": any type)
    state = "processes" | "queue" | "services" | "status"   records of the live state
    sequence = [{event=..., where=...}, ...]   events in this order
    any = [{...}, {...}]  at least one of the nested expectations

with the modifiers ``where`` (field tests), ``min`` / ``max`` (how many
matches; default at least one), ``distinct`` (count distinct values of a field
instead of records), ``same`` (fields equal across a sequence), ``since``
("step", the default, or "lesson"), ``mode`` ("real" / "simulated": the
expectation only applies in that privilege mode, otherwise it counts as met;
"real" covers rootless mode too, "simulated" partial mode, see ``goal_mode``)
and ``label`` (what the lesson panel shows).

Field tests name a field by a dotted path (``data.rcpt``, ``privilege.euid``)
and give either a value (equality) or a table of operators
(``{ ne = 0 }``, ``{ in = [...] }``, ``{ matches = "regex" }`` ...). Values may
use ``${name}`` placeholders filled in by the runner (``${queue_dir}``,
``${config.mail_owner_uid}``, ...).

Every name is checked when the lesson is loaded: an unknown key, kind, type,
field or operator is an error naming the line, never a goal that silently
never matches.

Trust: lesson files are written by teachers (trusted for content, not for
code: nothing here evaluates code); events are gossip from the MTA and are
only compared, never executed or used as paths.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from simmta.core import fold, privilege, records
from simmta.core.events import Envelope
from simmta.core.records import RECORDS
from simmta.lessons.state import CONVENIENCE

# Envelope fields every event has (see simmta.core.events).
EVENT_FIELDS = tuple(f.name for f in msgspec.structs.fields(Envelope))

# Fields of the live state's records (see simmta.lessons.state): /proc's facts (cap_eff is in
# the snapshot's reading only) and the convenience ids.
_PRIV_FIELDS = (*fold.PRIVILEGE_FACTS, "cap_eff", *CONVENIENCE)
STATE_FIELDS: dict[str, tuple[str, ...]] = {
    "processes": ("pid", "ppid", "service", "state", "privilege", *(f"privilege.{f}" for f in _PRIV_FIELDS)),
    "queue": ("queue", "qid", "size", "sender", "recipients", "arrival", "next_retry", "reason"),
    "services": (
        "name",
        "type",
        "command",
        "private",
        "unpriv",
        "chroot",
        "wakeup",
        "maxproc",
        "talks_to",
        "reads",
        "writes",
        "faces",
        "role",
        "summary",
        "resident",
    ),
    "status": ("privilege_mode", "pace", "faults", "lab", "smtp", "peer", "config"),
}
# Fields whose sub-fields are open-ended (tables).
_OPEN_FIELDS = ("data", "faults", "config", "smtp", "peer", "privilege.caps", "lab", "pace")

_MISSING = object()  # a field that is not there (None is a value)
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
    "contains": lambda a, b: isinstance(a, str | list | tuple | dict) and b in a,
    "startswith": lambda a, b: isinstance(a, str) and a.startswith(b),
    "matches": lambda a, b: isinstance(a, str) and b.search(a) is not None,
    "gt": lambda a, b: _num(a) and a > b,
    "ge": lambda a, b: _num(a) and a >= b,
    "lt": lambda a, b: _num(a) and a < b,
    "le": lambda a, b: _num(a) and a <= b,
    "exists": lambda a, b: (a is not _MISSING) == b,
}
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")
PLACEHOLDERS = ("instance", "queue_dir", "mail_dir", "peer_maildir", "lab_dir", "privilege_mode")
MODES = ("real", "simulated")

_KEYS = {
    "event": {"event", "where", "min", "max", "distinct", "since", "mode", "label"},
    "state": {"state", "where", "min", "max", "distinct", "mode", "label"},
    "sequence": {"sequence", "same", "since", "mode", "label"},
    "any": {"any", "mode", "label"},
}


def _num(a: Any) -> bool:
    return isinstance(a, int | float) and not isinstance(a, bool)


class GoalError(ValueError):
    """A goal that cannot be compiled; ``key`` names the offending key (for the line)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


# ---------------------------------------------------------------- field tests


def lookup(record: Any, path: str) -> Any:
    """The value at a dotted path (list items by index), or _MISSING."""
    value = record
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list | tuple) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def substitute(value: Any, context: Mapping[str, Any]) -> Any:
    """Fill ``${name}`` placeholders; a value that is only a placeholder keeps its type."""
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole:
            return _context_value(context, whole.group(1))
        return _PLACEHOLDER.sub(lambda m: str(_context_value(context, m.group(1))), value)
    if isinstance(value, list):
        return [substitute(v, context) for v in value]
    return value


def _context_value(context: Mapping[str, Any], name: str) -> Any:
    value = lookup(context, name)
    return None if value is _MISSING else value


def _check_placeholders(value: Any, key: str) -> None:
    texts = (
        [value]
        if isinstance(value, str)
        else [v for v in value if isinstance(v, str)]
        if isinstance(value, list)
        else []
    )
    for text in texts:
        for name in _PLACEHOLDER.findall(text):
            if name not in PLACEHOLDERS and not name.startswith("config."):
                raise GoalError(
                    f"unknown placeholder ${{{name}}} (known: " + ", ".join(PLACEHOLDERS) + ", config.NAME)",
                    key,
                )


@dataclass(frozen=True)
class FieldTest:
    path: str
    op: str
    value: Any

    def test(self, record: Any, context: Mapping[str, Any]) -> bool:
        actual = lookup(record, self.path)
        if self.op == "exists":
            return _OPERATORS["exists"](actual, self.value)
        if actual is _MISSING:
            return False
        expected = self.value if self.op == "matches" else substitute(self.value, context)
        try:
            return bool(_OPERATORS[self.op](actual, expected))
        except TypeError:
            return False

    def describe(self) -> str:
        return f"{self.path} {self.op} {self.value!r}"


def _flatten(where: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """TOML dotted keys nest tables; a table of operators ends the path."""
    for key, value in where.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and not set(value) <= set(_OPERATORS):
            if any(k in _OPERATORS for k in value):
                bad = sorted(k for k in value if k not in _OPERATORS)
                raise GoalError(
                    f"where.{path}: unknown operator(s) {', '.join(bad)} "
                    "(known: " + ", ".join(_OPERATORS) + ")",
                    "where",
                )
            yield from _flatten(value, path + ".")
        else:
            yield path, value


def compile_where(where: Any, known: Callable[[str], str | None]) -> tuple[FieldTest, ...]:
    """Field tests from a ``where`` table; ``known(path)`` returns an error text or None."""
    if not isinstance(where, Mapping):
        raise GoalError("where: expected a table of field = value", "where")
    tests = []
    for path, value in _flatten(where):
        problem = known(path)
        if problem:
            raise GoalError(f"where: {problem}", "where")
        if isinstance(value, Mapping):
            if not value:
                raise GoalError(f"where.{path}: empty table", "where")
            for op, operand in value.items():
                tests.append(_field_test(path, op, operand))
        else:
            tests.append(_field_test(path, "eq", value))
    return tuple(tests)


def _field_test(path: str, op: str, operand: Any) -> FieldTest:
    if op in ("in", "not_in") and not isinstance(operand, list):
        raise GoalError(f"where.{path}.{op}: expected a list", "where")
    if op in ("gt", "ge", "lt", "le") and not _num(operand):
        raise GoalError(f"where.{path}.{op}: expected a number", "where")
    if op == "exists" and not isinstance(operand, bool):
        raise GoalError(f"where.{path}.exists: expected true or false", "where")
    if op in ("matches", "startswith") and not isinstance(operand, str):
        raise GoalError(f"where.{path}.{op}: expected a string", "where")
    if op == "matches":
        try:
            operand = re.compile(operand)
        except re.error as e:
            raise GoalError(f"where.{path}.matches: bad regular expression ({e})", "where") from None
    _check_placeholders(operand, "where")
    return FieldTest(path, op, operand)


def _event_field_checker(kind: str, type_: str | None) -> Callable[[str], str | None]:
    def known(path: str) -> str | None:
        head, _, rest = path.partition(".")
        if head not in EVENT_FIELDS:
            return f"unknown event field {head!r} (known: " + ", ".join(EVENT_FIELDS) + ")"
        if head != "data" or not rest:
            return None
        key, _, deeper = rest.partition(".")
        classes = [RECORDS[kind][type_]] if type_ is not None else list(RECORDS[kind].values())
        allowed = tuple(dict.fromkeys(f for c in classes for f in records.field_names(c)))
        if key not in allowed:
            return (
                f"{kind}/{type_ or '*'} events have no data field {key!r} (known: " + ", ".join(allowed) + ")"
            )
        if deeper and not any(key in records.structured(c) for c in classes) and not deeper.isdigit():
            return (
                f"data.{key} is a single value, so {deeper!r} is neither a field nor an "
                "operator (operators: " + ", ".join(_OPERATORS) + ")"
            )
        return None

    return known


def _state_field_checker(collection: str) -> Callable[[str], str | None]:
    fields = STATE_FIELDS[collection]

    def known(path: str) -> str | None:
        if path in fields or any(path.startswith(f + ".") for f in fields if f in _OPEN_FIELDS):
            return None
        if collection == "processes" and re.fullmatch(r"privilege\.(uid|gid|groups)\.\d+", path):
            return None
        return f"unknown {collection} field {path!r} (known: " + ", ".join(fields) + ")"

    return known


# ---------------------------------------------------------------- matchers


@dataclass(frozen=True)
class EventPattern:
    kind: str
    type: str | None
    tests: tuple[FieldTest, ...]

    def matches(self, event: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
        return (
            event.get("kind") == self.kind
            and (self.type is None or event.get("type") == self.type)
            and all(t.test(event, context) for t in self.tests)
        )


def _event_pattern(spec: Mapping[str, Any]) -> EventPattern:
    name = spec.get("event")
    if not isinstance(name, str):
        raise GoalError('event: expected "kind/type"', "event")
    kind, _, type_ = name.partition("/")
    if kind not in RECORDS:
        raise GoalError(f"event: unknown kind {kind!r} (known: " + ", ".join(RECORDS) + ")", "event")
    if type_ in ("", "*"):
        type_name: str | None = None
    elif type_ not in RECORDS[kind]:
        raise GoalError(
            f"event: {kind!r} has no type {type_!r} (known: " + ", ".join(RECORDS[kind]) + ")", "event"
        )
    else:
        type_name = type_
    tests = compile_where(spec.get("where", {}), _event_field_checker(kind, type_name))
    return EventPattern(kind, type_name, tests)


@dataclass
class Evaluation:
    """What the engine sees: events (with the index where the step began) and state.

    ``index`` (optional) maps (kind, type) to the ascending positions of such
    events in ``events``, so a goal looks only at the events it can match.
    """

    events: Sequence[Mapping[str, Any]]
    step_start: int
    state: Any  # simmta.lessons.state.LiveState (records(collection), status)
    context: Mapping[str, Any]
    index: Mapping[tuple[str, str], Sequence[int]] | None = None

    def select(self, since: str, patterns: Iterable[EventPattern]) -> list[Mapping[str, Any]]:
        """The events since the step (or lesson) began that could match one of ``patterns``."""
        start = self.step_start if since == "step" else 0
        wanted = {(p.kind, p.type) for p in patterns}
        if self.index is None:
            return [
                e
                for e in self.events[start:]
                if (e.get("kind"), e.get("type")) in wanted or (e.get("kind"), None) in wanted
            ]
        positions: list[int] = []
        for (kind, type_), where in self.index.items():
            if (kind, type_) in wanted or (kind, None) in wanted:
                positions.extend(where[bisect.bisect_left(where, start) :])
        positions.sort()
        return [self.events[i] for i in positions]


@dataclass(frozen=True)
class Expectation:
    """One compiled ``[[expect]]`` (or a nested one in ``any``)."""

    form: str  # event | state | sequence | any
    label: str
    mode: str | None = None
    since: str = "step"
    min: int = 1
    max: int | None = None
    distinct: str | None = None
    pattern: EventPattern | None = None
    collection: str | None = None
    tests: tuple[FieldTest, ...] = ()
    sequence: tuple[EventPattern, ...] = ()
    same: tuple[str, ...] = ()
    alternatives: tuple[Expectation, ...] = field(default=())

    # -- evaluation
    def met(self, ev: Evaluation) -> bool:
        if not self.applies(ev.context.get("privilege_mode")):
            return True
        if self.form == "any":
            return any(a.met(ev) for a in self.alternatives)
        if self.form == "sequence":
            # the stream's order is causal (simmta.core.events): no re-sorting
            return _sequence_met(self.sequence, self.same, ev.select(self.since, self.sequence), ev.context)
        n = self.count(ev)
        return n >= self.min and (self.max is None or n <= self.max)

    def count(self, ev: Evaluation) -> int:
        """How many events (or state records, or distinct values) match (event/state forms)."""
        if self.form == "event":
            assert self.pattern is not None
            found = [e for e in ev.select(self.since, (self.pattern,)) if self.pattern.matches(e, ev.context)]
        else:
            assert self.collection is not None, "count() is for event and state expectations"
            found = [
                r for r in ev.state.records(self.collection) if all(t.test(r, ev.context) for t in self.tests)
            ]
        return self._count(found)

    def _count(self, found: list[Mapping[str, Any]]) -> int:
        if self.distinct is None:
            return len(found)
        values = {repr(v) for r in found if (v := lookup(r, self.distinct)) is not _MISSING}
        return len(values)

    def applies(self, privilege_mode: str | None) -> bool:
        return self.mode is None or self.mode == goal_mode(privilege_mode)


def goal_mode(privilege_mode: str | None) -> str | None:
    """A lesson's ``mode`` is "real" where the kernel enforces uids and chroot (real and
    rootless mode), "simulated" where the uid boundary is only reported (partial, simulated)."""
    if privilege_mode is None:
        return None
    return "real" if privilege.uids_enforced(privilege_mode) else "simulated"


def _sequence_met(
    patterns: Sequence[EventPattern],
    same: Sequence[str],
    events: Sequence[Mapping[str, Any]],
    context: Mapping[str, Any],
) -> bool:
    """Events matching the patterns in order; with ``same``, sharing those fields.

    Bounded: for each candidate first event one greedy pass, O(events x candidates).
    """
    if not patterns:
        return True
    first, rest = patterns[0], patterns[1:]
    for start, event in enumerate(events):
        if not first.matches(event, context):
            continue
        bound = {p: lookup(event, p) for p in same}
        if any(v is _MISSING or v is None for v in bound.values()):
            continue
        i = 0
        for later in events[start + 1 :]:
            if i == len(rest):
                break
            if rest[i].matches(later, context) and all(lookup(later, p) == v for p, v in bound.items()):
                i += 1
        if i == len(rest):
            return True
        if not same:
            return False  # greedy from the earliest start is optimal without bindings
    return False


def _count_key(spec: Mapping[str, Any], key: str) -> int | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise GoalError(f"{key}: expected a whole number >= 0", key)
    return value


def compile_expectation(spec: Any) -> Expectation:
    """One expectation from its TOML table; GoalError names the key at fault."""
    if not isinstance(spec, Mapping):
        raise GoalError("expected a table (event = ..., state = ..., sequence = ... or any = ...)")
    forms = [f for f in _KEYS if f in spec]
    if len(forms) != 1:
        raise GoalError(
            "an expectation needs exactly one of: event, state, sequence, any"
            + (f" (found {', '.join(forms)})" if forms else "")
        )
    form = forms[0]
    unknown = sorted(set(spec) - _KEYS[form])
    if unknown:
        raise GoalError(
            f"unknown key {unknown[0]!r} in a {form} expectation (known: "
            + ", ".join(sorted(_KEYS[form]))
            + ")",
            unknown[0],
        )
    mode = spec.get("mode")
    if mode is not None and mode not in MODES:
        raise GoalError('mode: expected "real" or "simulated"', "mode")
    since = spec.get("since", "step")
    if since not in ("step", "lesson"):
        raise GoalError('since: expected "step" or "lesson"', "since")
    label = spec.get("label", "")
    if not isinstance(label, str):
        raise GoalError("label: expected a string", "label")
    if form == "any":
        alts = spec["any"]
        if not isinstance(alts, list) or not alts:
            raise GoalError("any: expected a list of expectations", "any")
        compiled = tuple(compile_expectation(a) for a in alts)
        return Expectation(
            "any", label or " or ".join(a.label for a in compiled), mode=mode, alternatives=compiled
        )
    if form == "sequence":
        seq = spec["sequence"]
        if not isinstance(seq, list) or not seq:
            raise GoalError("sequence: expected a list of {event = ..., where = ...}", "sequence")
        for item in seq:
            if not isinstance(item, Mapping) or set(item) - {"event", "where"}:
                raise GoalError('sequence: each item is {event = "kind/type", where = {...}}', "sequence")
        pats = tuple(_event_pattern(item) for item in seq)
        same = spec.get("same", [])
        if isinstance(same, str):
            same = [same]
        if not isinstance(same, list) or not all(isinstance(s, str) for s in same):
            raise GoalError("same: expected a list of field names", "same")
        for s in same:
            if s.split(".")[0] not in EVENT_FIELDS:
                raise GoalError(f"same: unknown event field {s!r}", "same")
        default = " then ".join(f"{p.kind}/{p.type or '*'}" for p in pats)
        return Expectation(
            "sequence", label or default, mode=mode, since=since, sequence=pats, same=tuple(same)
        )
    minimum = _count_key(spec, "min")
    maximum = _count_key(spec, "max")
    distinct = spec.get("distinct")
    if distinct is not None and not isinstance(distinct, str):
        raise GoalError("distinct: expected a field name", "distinct")
    # "at least one" by default; with only a max ("max = 0": none) there is no minimum
    default_min = 1 if maximum is None else 0
    least = default_min if minimum is None else minimum
    if maximum is not None and least > maximum:
        raise GoalError("min is larger than max", "max")
    if form == "event":
        pat = _event_pattern(spec)
        if distinct and (p := _event_field_checker(pat.kind, pat.type)(distinct)):
            raise GoalError(f"distinct: {p}", "distinct")
        return Expectation(
            "event",
            label or spec["event"],
            mode=mode,
            since=since,
            min=least,
            max=maximum,
            distinct=distinct,
            pattern=pat,
        )
    collection = spec["state"]
    if collection not in STATE_FIELDS:
        raise GoalError(f"state: unknown {collection!r} (known: " + ", ".join(STATE_FIELDS) + ")", "state")
    checker = _state_field_checker(collection)
    if distinct and (p := checker(distinct)):
        raise GoalError(f"distinct: {p}", "distinct")
    tests = compile_where(spec.get("where", {}), checker)
    return Expectation(
        "state",
        label or f"state of {collection}",
        mode=mode,
        min=least,
        max=maximum,
        distinct=distinct,
        collection=collection,
        tests=tests,
    )


@dataclass(frozen=True)
class Goal:
    expectations: tuple[Expectation, ...]

    def progress(self, ev: Evaluation) -> list[tuple[Expectation, bool]]:
        """Each expectation that applies in this privilege mode, and whether it holds."""
        mode = ev.context.get("privilege_mode")
        return [(x, x.met(ev)) for x in self.expectations if x.applies(mode)]

    def met(self, ev: Evaluation) -> bool:
        return all(ok for _, ok in self.progress(ev))
