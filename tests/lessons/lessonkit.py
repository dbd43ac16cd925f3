"""Helpers for the lesson tests: hand-made event streams and lesson texts."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from simmta.core.events import make

QUEUE_DIR = "/srv/inst/queue"


def ev(service: str, kind: str, type_: str, qid: str | None = None, pid: int = 100,
       **data: Any) -> dict[str, Any]:
    event = make(service, kind, type_, qid, None, **data)
    event["pid"] = pid
    return event


def snapshot(privilege_mode: str = "real", processes: list[dict[str, Any]] | None = None,
             queues: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    return ev("master", "snapshot", "state", pid=1, services=[{"name": "smtpd", "chroot": True}],
              processes=processes or [], queues=queues or {}, config={},
              privilege_mode=privilege_mode)


def delivered(qid: str, rcpt: str) -> list[dict[str, Any]]:
    """The events of one message delivered locally (the core's chain, abridged)."""
    return [
        ev("cleanup", "queue", "created", qid, queue="incoming", size=300),
        ev("qmgr", "queue", "moved", qid, **{"from": "incoming", "to": "active"}),
        ev("local", "delivery", "delivered", qid, rcpt=rcpt, via="local", where="Maildir/new/x"),
        ev("qmgr", "queue", "removed", qid, queue="active", reason="done"),
    ]


HEADER = '''+++
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
'''

STEP = '''
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
'''

LESSON = HEADER + STEP


def sync(test: Callable[..., Any]) -> Callable[..., Any]:
    """Run an async Pilot test with asyncio.run (no async pytest plugin needed)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(test(*args, **kwargs))

    return run
