"""The goal engine and the runner against hand-made event streams (no MTA)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lessonkit import LESSON, QUEUE_DIR, delivered, ev, snapshot

from simmta.core.instance import Instance
from simmta.lessons import catalog
from simmta.lessons.format import parse_text
from simmta.lessons.goals import Evaluation, GoalError, compile_expectation
from simmta.lessons.progress import ProgressStore
from simmta.lessons.runner import LessonRunner
from simmta.lessons.state import LiveState

CONTEXT = {"privilege_mode": "real", "queue_dir": QUEUE_DIR, "config": {"mail_owner_uid": 61000}}


def met(
    spec: dict[str, Any], events: list[dict[str, Any]], start: int = 0, context: dict[str, Any] | None = None
) -> bool:
    state = LiveState()
    for e in events:
        state.apply(e)
    ev_ = Evaluation(events, start, state, context or CONTEXT)
    return compile_expectation(spec).met(ev_)


def at(ts: float, event: dict[str, Any]) -> dict[str, Any]:
    """The event, as if it happened at ``ts`` (sequences follow the events' times)."""
    event["ts"] = ts
    return event


BOB = {"event": "delivery/delivered", "where": {"data": {"rcpt": "bob@simmta.test"}}}


def test_event_match_and_wrong_user() -> None:
    assert met(BOB, delivered("A1", "bob@simmta.test"))
    assert not met(BOB, delivered("A1", "carol@simmta.test"))


def test_counts_and_distinct() -> None:
    events = delivered("A1", "bob@simmta.test") + delivered("A2", "bob@simmta.test")
    assert met({**BOB, "min": 2}, events)
    assert not met({**BOB, "min": 3}, events)
    assert not met({**BOB, "max": 1}, events)
    assert met({"event": "delivery/delivered", "distinct": "qid", "min": 2}, events)
    assert not met({"event": "delivery/delivered", "distinct": "data.rcpt", "min": 2}, events)


def test_since_step_ignores_earlier_events() -> None:
    events = delivered("A1", "bob@simmta.test")
    assert not met(BOB, events, start=len(events))
    assert met({**BOB, "since": "lesson"}, events, start=len(events))


def test_operators() -> None:
    events = [ev("smtpd", "smtp", "reply", line="552 5.3.4 Message size exceeds fixed limit")]
    for where, ok in [
        ({"data": {"line": {"startswith": "552 "}}}, True),
        ({"data": {"line": {"matches": r"^5\d\d 5\.3\.4"}}}, True),
        ({"data": {"line": {"contains": "size"}}}, True),
        ({"data": {"line": {"startswith": "250"}}}, False),
        ({"service": {"in": ["smtpd", "cleanup"]}}, True),
        ({"service": {"not_in": ["smtpd"]}}, False),
        ({"pid": {"gt": 10, "lt": 1000}}, True),
        ({"qid": {"exists": True}}, True),
        ({"pid": {"ne": 100}}, False),
    ]:
        assert met({"event": "smtp/reply", "where": where}, events) is ok, where


def test_sequence_order_and_same_qid() -> None:
    deferred = ev(
        "qmgr", "delivery", "deferred", "A1", rcpt="x@example.net", via="smtp", reason="451 try later"
    )
    later = ev("smtp", "delivery", "delivered", "A1", rcpt="x@example.net", via="smtp", where="peer")
    other = ev("smtp", "delivery", "delivered", "B2", rcpt="y@example.net", via="smtp", where="peer")
    spec = {"sequence": [{"event": "delivery/deferred"}, {"event": "delivery/delivered"}], "same": ["qid"]}
    assert met(spec, [at(1, deferred), at(2, later)])
    assert not met(spec, [later, deferred])  # the stream's (causal) order matters
    assert not met(spec, [deferred, other])  # another message does not count
    assert met({"sequence": spec["sequence"]}, [deferred, other])


def test_killed_and_replaced() -> None:
    spec = {
        "sequence": [
            {
                "event": "process/exited",
                "where": {"data": {"child_service": "cleanup", "status": "killed by SIGKILL"}},
            },
            {"event": "process/spawned", "where": {"data": {"child_service": "cleanup"}}},
        ]
    }
    exited = ev(
        "master",
        "process",
        "exited",
        pid=1,
        child_pid=7,
        child_service="cleanup",
        status="killed by SIGKILL",
        served=3,
    )
    spawned = ev("master", "process", "spawned", pid=1, child_pid=8, child_service="cleanup")
    assert met(spec, [at(1, exited), at(2, spawned)])
    assert not met(spec, [at(1, spawned), at(2, exited)])


def _proc(pid: int, service: str, uid: int, root: str) -> dict[str, Any]:
    return {
        "pid": pid,
        "ppid": 1,
        "service": service,
        "state": "idle",
        "privilege": {
            "uid": [uid, uid, uid, uid],
            "gid": [uid] * 4,
            "groups": [],
            "caps": {},
            "root": root,
            "mode": "real",
            "mismatch": False,
        },
    }


CHROOTED_SMTPD = {
    "state": "processes",
    "where": {"service": "smtpd", "privilege": {"euid": {"ne": 0}, "root": "${queue_dir}"}},
}


def test_state_processes_and_placeholders() -> None:
    jailed = snapshot(processes=[_proc(5, "smtpd", 61000, QUEUE_DIR)])
    free = snapshot(processes=[_proc(5, "smtpd", 61000, "/")])
    root = snapshot(processes=[_proc(5, "smtpd", 0, QUEUE_DIR)])
    assert met(CHROOTED_SMTPD, [jailed])
    assert not met(CHROOTED_SMTPD, [free])
    assert not met(CHROOTED_SMTPD, [root])
    owner = {"state": "processes", "where": {"privilege": {"euid": "${config.mail_owner_uid}"}}}
    assert met(owner, [jailed])


def test_state_follows_the_stream() -> None:
    events = [
        snapshot(),
        ev("master", "process", "spawned", pid=1, child_pid=9, child_service="smtpd"),
        ev(
            "master",
            "privilege",
            "observed",
            pid=1,
            observed_pid=9,
            observed_service="smtpd",
            uid=[61000] * 4,
            gid=[61000] * 4,
            groups=[],
            caps="none",
            root=QUEUE_DIR,
            host_uid=[61000] * 4,
            host_gid=[61000] * 4,
            no_new_privs=False,
            mode="real",
            mismatch=[],
            expected={},
            simulated="",
        ),
    ]
    assert met(CHROOTED_SMTPD, events)
    gone = ev(
        "master", "process", "exited", pid=1, child_pid=9, child_service="smtpd", status="exit 0", served=1
    )
    assert not met(CHROOTED_SMTPD, [*events, gone])
    in_queue = {"state": "queue", "where": {"queue": "deferred"}}
    flow = [
        snapshot(),
        ev("cleanup", "queue", "created", "A1", queue="incoming", size=9),
        ev("qmgr", "queue", "moved", "A1", **{"from": "incoming", "to": "deferred"}),
    ]
    assert met(in_queue, flow)
    assert met(
        {"state": "queue", "max": 0},
        [*flow, ev("qmgr", "queue", "removed", "A1", queue="deferred", reason="done")],
    )


def test_mode_branches() -> None:
    real_only = {**CHROOTED_SMTPD, "mode": "real"}
    free = [snapshot("simulated", processes=[_proc(5, "smtpd", 0, "/")])]
    assert met(real_only, free, context={**CONTEXT, "privilege_mode": "simulated"})
    assert not met(real_only, free, context=CONTEXT)


def test_any() -> None:
    spec = {"any": [BOB, {"event": "delivery/bounced"}]}
    assert met(spec, delivered("A1", "bob@simmta.test"))
    assert not met(spec, delivered("A1", "carol@simmta.test"))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"event": "delivery/delivered", "state": "queue"}, "exactly one of"),
        ({"state": "mailboxes"}, "unknown 'mailboxes'"),
        ({"state": "processes", "where": {"uid": 0}}, "unknown processes field 'uid'"),
        ({"event": "process/exited", "same": ["qid"]}, "unknown key 'same'"),
        ({"sequence": [{"event": "queue/moved", "when": 1}]}, "each item"),
        ({"event": "smtp/reply", "mode": "root"}, "mode:"),
        ({"event": "smtp/reply", "where": {"data": {"line": {"matches": "("}}}}, "regular expr"),
        ({"event": "smtp/reply", "where": {"data": {"line": {"in": "552"}}}}, "expected a list"),
        ({"event": "smtp/reply", "min": 3, "max": 1}, "min is larger"),
    ],
)
def test_compile_errors(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(GoalError, match=message.replace("(", r"\(")):
        compile_expectation(spec)


TWO_STEPS = (
    LESSON
    + """
## Carol too

Now carol.

```step
solution = ["send --from alice@simmta.test --to carol@simmta.test"]

[[expect]]
event = "delivery/delivered"
where = { data.rcpt = "carol@simmta.test" }
```

### Explanation
Fine.
"""
)


def test_runner_keeps_step_open_until_goal(tmp_path: Path) -> None:
    lesson = parse_text(TWO_STEPS, "two.md")
    store = ProgressStore(tmp_path / "progress.json")
    runner = LessonRunner(lesson, Instance(tmp_path / "inst"), store)
    runner.feed(snapshot())
    for e in delivered("A1", "carol@simmta.test"):  # the wrong user: step 1 stays open
        runner.feed(e)
    assert not runner.check()
    view = runner.view()
    assert (view.index, view.percent, view.checklist) == (0, 0, (("a message reached bob's Maildir", False),))
    for e in delivered("A2", "bob@simmta.test"):
        runner.feed(e)
    assert runner.check()
    assert runner.view().percent == 50 and runner.view().step_done
    runner.advance()
    # carol's earlier delivery happened before step 2 began: it does not count
    assert not runner.check()
    for e in delivered("A3", "carol@simmta.test"):
        runner.feed(e)
    assert runner.check()
    runner.advance()
    assert runner.view().finished and runner.view().percent == 100
    saved = store.get(lesson.key)
    assert saved == {"completed": [1, 2], "current": 2, "finished": True, "answers": {}}
    resumed = LessonRunner(lesson, Instance(tmp_path / "inst"), store)
    assert resumed.view().finished
    resumed.reset()
    assert store.get(lesson.key)["completed"] == []


def test_runner_hints_and_last_qid(tmp_path: Path) -> None:
    runner = LessonRunner(parse_text(LESSON), Instance(tmp_path / "inst"))
    assert runner.next_hint() == "Use simmta send."
    assert runner.next_hint() == "Use simmta send."  # stays on the last hint
    assert runner.last_qid() is None
    for e in delivered("C3", "bob@simmta.test"):
        runner.feed(e)
    assert runner.last_qid() == "C3"


def test_mail_to_the_wrong_user_does_not_complete_lesson_two(tmp_path: Path) -> None:
    """The shipped lesson 2, step 1 (alice -> bob), against hand-made event chains."""
    lesson = catalog.find("2", Path(__file__).resolve().parents[2] / "lessons")
    runner = LessonRunner(lesson, Instance(tmp_path / "inst"))
    runner.feed(snapshot())
    queued = ev("smtpd", "smtp", "reply", line="250 2.0.0 Ok: queued as A1")
    for event in [*delivered("A1", "carol@simmta.test"), queued]:
        runner.feed(event)
    assert not runner.check()
    assert dict(runner.view().checklist) == {
        "one queue ID: created in incoming, moved to active, delivered to bob, removed": False,
        "smtpd answered 250 2.0.0 Ok: queued as <queue ID>": True,
    }
    for event in delivered("B2", "bob@simmta.test"):
        runner.feed(event)
    assert runner.check()


def test_queue_state_survives_events_arriving_out_of_order() -> None:
    """A late "created" (stamped before qmgr's "moved" or "removed") does not move the message back."""
    created, moved, delivered_, removed = delivered("Q1", "bob@simmta.test")
    for i, event in enumerate((created, moved, delivered_, removed)):
        event["clock"] = i + 1
    state = LiveState()
    for event in (snapshot(), moved, removed, created):  # created arrives last
        state.apply(event)
    assert state.records("queue") == []
    state = LiveState()
    for event in (snapshot(), moved, created):  # created after moved: still in active/
        state.apply(event)
    assert [(r["qid"], r["queue"], r["size"]) for r in state.records("queue")] == [("Q1", "active", 300)]


def test_queue_follows_the_stream_when_clocks_do_not_cross_the_queue_directory() -> None:
    """qmgr finds a message in incoming/ (no clock travels with the file): its "moved" and
    "removed" may bear lower Lamport clocks than cleanup's "created"; they still count."""
    created, moved, delivered_, removed = delivered("Q1", "bob@simmta.test")
    for event, clock in ((created, 96), (moved, 44), (delivered_, 56), (removed, 59)):
        event["clock"] = clock
    state = LiveState()
    for event in (snapshot(), created, moved, delivered_, removed):
        state.apply(event)
    assert state.records("queue") == []


def test_sequences_follow_the_streams_causal_order() -> None:
    created, moved, *_ = delivered("Q1", "bob@simmta.test")
    spec = {"sequence": [{"event": "queue/created"}, {"event": "queue/moved"}], "same": ["qid"]}
    assert met(spec, [created, moved])
    assert not met(spec, [moved, created])  # the stream is causal: this never happened in order


PREDICTING = LESSON.replace(
    "\n[[expect]]",
    """
[predict]
question = "Who delivers?"

[[predict.choice]]
text = "smtpd"
event = "delivery/delivered"
where = { service = "smtpd" }

[[predict.choice]]
text = "local"
event = "delivery/delivered"
where = { service = "local" }

[[expect]]""",
    1,
)


def test_a_prediction_is_asked_first_and_checked_against_what_happened(tmp_path: Path) -> None:
    lesson = parse_text(PREDICTING, "p.md")
    store = ProgressStore(tmp_path / "progress.json")
    runner = LessonRunner(lesson, Instance(tmp_path / "inst"), store)
    runner.feed(snapshot())
    for e in delivered("A1", "bob@simmta.test"):
        runner.feed(e)
    assert not runner.check()  # the goal holds, but the student has not answered yet
    assert runner.view().checklist[0] == ("you made your prediction (E)", False)
    assert "from 1 to 2" in runner.answer("7") and "a number" in runner.answer("smtpd")
    assert runner.view().answer is None
    assert "Prediction recorded: 1. smtpd" in runner.answer("1")
    assert runner.check()
    assert runner.view().outcome == ("2. local", False)  # what the MTA did, not what was guessed
    assert store.get(lesson.key)["answers"] == {"1": "1"}
    assert "can no longer change" in runner.answer("2")


def test_a_count_prediction_reports_the_observed_number(tmp_path: Path) -> None:
    text = LESSON.replace(
        "\n[[expect]]",
        '\n[predict]\nquestion = "How many?"\n'
        'count = { event = "queue/created" }\ntolerance = 1\n\n[[expect]]',
        1,
    )
    runner = LessonRunner(parse_text(text, "c.md"), Instance(tmp_path / "inst"), None)
    runner.feed(snapshot())
    runner.answer("3")
    for qid in ("A1", "A2"):
        for e in delivered(qid, "bob@simmta.test"):
            runner.feed(e)
    assert runner.check()
    assert runner.view().outcome == ("2", True)  # 2 observed, 3 predicted, within the tolerance
