"""Helpers for the lesson tests: hand-made event streams and lesson texts."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import msgspec

from simmta.core import records
from simmta.core.events import make

QUEUE_DIR = "/srv/inst/queue"


# Required fields these hand-made streams do not care about, filled in as the MTA would.
FILLER: dict[str, dict[str, Any]] = {
    "queue/created": {"sender": "alice@simmta.test", "recipients": [], "origin": "smtpd", "subject": ""},
    "delivery/delivered": {"dsn": "2.0.0"},
    "delivery/deferred": {"dsn": "4.0.0"},
    "process/spawned": {"total": 1},
    "snapshot/state": {
        "queue_counts": {},
        "privilege": {},
        "smtp": None,
        "peer": None,
        "pace": {},
        "faults": {},
        "lab": False,
        "profile": {},
        "ids": {},
        "instance": "/srv/inst",
        "queue_dir": QUEUE_DIR,
    },
}


def ev(
    service: str, kind: str, type_: str, qid: str | None = None, pid: int = 100, **data: Any
) -> dict[str, Any]:
    """An event as the MTA would emit it (its data checked against the declared record)."""
    event = make(
        service,
        msgspec.convert({**FILLER.get(f"{kind}/{type_}", {}), **data}, records.RECORDS[kind][type_]),
        qid,
    )
    event["pid"] = pid
    return event


def snapshot(
    privilege_mode: str = "real",
    processes: list[dict[str, Any]] | None = None,
    queues: dict[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    return ev(
        "master",
        "snapshot",
        "state",
        pid=1,
        services=[{"name": "smtpd", "chroot": True}],
        processes=processes or [],
        queues=queues or {},
        config={},
        privilege_mode=privilege_mode,
    )


def delivered(qid: str, rcpt: str) -> list[dict[str, Any]]:
    """The events of one message delivered locally (the core's chain, abridged)."""
    return [
        ev("cleanup", "queue", "created", qid, queue="incoming", size=300),
        ev("qmgr", "queue", "moved", qid, **{"from": "incoming", "to": "active"}),
        ev("local", "delivery", "delivered", qid, rcpt=rcpt, via="local", where="Maildir/new/x"),
        ev("qmgr", "queue", "removed", qid, queue="active", reason="done"),
    ]


HEADER = """+++
id = 2
slug = "life-of-a-message"
title = "The life of a message"
summary = "Follow one message"
teacher = "Show the map."
sources = ["docs/sources.md#postfix-overview-receiving"]

[setup]
config = { queue_run_delay = "2s" }
+++

Intro.
"""

STEP = """
## Send to bob

Send mail from alice to bob.

```step
solution = ["send --from alice@simmta.test --to bob@simmta.test"]

[[expect]]
event = "delivery/delivered"
where = { data.rcpt = "bob@simmta.test" }
label = "a message reached bob's Maildir"
```

### Hint
Use simmta send.

### Explanation
It went through cleanup.
"""

LESSON = HEADER + STEP


def sync(test: Callable[..., Any]) -> Callable[..., Any]:
    """Run an async Pilot test with asyncio.run (no async pytest plugin needed)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(test(*args, **kwargs))

    return run
