"""The declared event vocabulary against what the MTA really emits, and its reference doc."""

import json
from pathlib import Path

import pytest
from mtakit import FAST_CONFIG, EventLog, Mta, maildir_files, needs_root, wait_for

from simmta.core import events, records
from simmta.core.errors import SimmtaError

DOC = Path(__file__).parent.parent / "docs" / "events.md"

# Record types the scenario below does not provoke (each is emitted elsewhere:
# the test proves they stay unprovoked here, so this list cannot go stale).
NOT_PROVOKED = {
    "process/throttled",
    "process/limit",
    "queue/corrupt",
    "smtp/limit",
    "lab/report",
    "lab/scan",  # simmta lab compromise, simmta ctl scan (their own tests)
    "pace/wait",
    "pace/go",
    "bus/dropped",
    "master/started",
    "master/stopping",  # (before and after
}  # a subscriber can be there)
# Optional fields the scenario cannot fill (why, per field).
NOT_FILLED = {
    ("process/state", "error"),  # only when a daemon fails
    ("lab/attempt", "compromise"),  # simmta lab compromise
}


def test_the_schema_reference_is_up_to_date() -> None:
    assert DOC.read_text() == records.reference(events.SCHEMA_VERSION), (
        "docs/events.md is stale: python -m simmta.core.records > docs/events.md"
    )


def test_a_recording_of_another_schema_version_is_refused_naming_it(tmp_path: Path) -> None:
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps({"v": 1, "seq": 0, "kind": "process", "type": "ready", "data": {}}) + "\n")
    with pytest.raises(SimmtaError, match=r"line 1: event schema version 1: this simmta reads version 2"):
        list(events.read_recording(old))


def test_an_undeclared_field_or_a_missing_one_is_refused() -> None:
    event = events.make("qmgr", records.QueueRemoved(queue="active", reason="delivered"), "Q1")
    assert events.validate(event) == []
    assert "unknown field `subjekt`" in events.validate({**event, "data": {**event["data"], "subjekt": 1}})[0]
    del event["data"]["reason"]
    assert "missing required field `reason`" in events.validate(event)[0]


def _scenario(mta: Mta, log: EventLog) -> None:
    """Local delivery, relay, defer and retry, bounce, hold/release/requeue/delete,
    sendmail, lab attempts, a crash point, a kill."""
    mta.send("bob@simmta.test")
    mta.simmta("peer", "fault", "tempfail")
    deferred = mta.send("someone@example.net")
    wait_for(lambda: log.find(kind="queue", type="deferred", qid=deferred), what="a deferral")
    mta.simmta("hold", deferred)
    mta.simmta("release", deferred)  # retried at once, and deferred again
    wait_for(lambda: len(log.find(kind="queue", type="deferred", qid=deferred)) >= 2, what="a retry")
    mta.simmta("requeue", deferred)
    wait_for(lambda: len(log.find(kind="queue", type="deferred", qid=deferred)) >= 3, what="a requeue")
    mta.simmta("peer", "fault", "none")  # retries what waited for the peer
    wait_for(lambda: maildir_files(mta.peer_maildir), what="the relayed message on retry")
    mta.simmta("peer", "fault", "permfail")
    mta.send("other@example.net")  # bounced by the peer
    wait_for(lambda: log.find(kind="delivery", type="bounce"), what="a bounce")
    mta.simmta("peer", "fault", "none")
    with mta.smtp() as client:  # an unknown local user: refused at RCPT
        client.ehlo("client.example")
        client.mail("alice@simmta.test")
        assert client.rcpt("nobody-here@simmta.test")[0] == 550
    mta.simmta("peer", "fault", "down")
    doomed = mta.send("later@example.net")
    wait_for(lambda: log.find(kind="queue", type="deferred", qid=doomed), what="a second deferral")
    mta.simmta("delete", doomed)  # (deferred: retried only in a minute)
    mta.simmta("peer", "fault", "none")
    mta.simmta("sendmail", "bob@simmta.test", input=b"Subject: s\n\nx\n")
    wait_for(lambda: log.find(kind="queue", type="removed", service="pickup"), what="pickup")
    for action in ("read-secret", "write-maildir", "regain-root"):
        mta.simmta("ctl", "lab", action, "--service", "qmgr")
    mta.simmta("ctl", "crash", "qmgr", "after-move")
    crashed = mta.send("carol@simmta.test")
    wait_for(lambda: log.find(kind="delivery", type="delivered", qid=crashed), what="delivery after a crash")
    [qmgr] = mta.pids("qmgr")
    mta.simmta("ctl", "kill", "qmgr", "--signal", "KILL")
    wait_for(lambda: log.find(kind="process", type="replaced", data_old_pid=qmgr), what="qmgr replaced")
    mta.send("alice@simmta.test")
    mta.simmta("flush")
    mta.simmta("ctl", "pace", "slow")
    mta.simmta("ctl", "pace", "live")
    wait_for(lambda: len(maildir_files(mta.maildir("alice"))) >= 1, what="the last delivery")


@pytest.mark.slow
def test_every_declared_record_and_field_is_what_the_mta_emits(instance_dir: Path) -> None:
    needs_root()  # real mode: privilege steps and the lab's kernel answers
    # Deferred mail waits for the administrator here (no retry while we hold, release, requeue).
    slow_retry = FAST_CONFIG.replace('"1s"', '"60s"').replace('"2s"', '"120s"')
    mta = Mta(instance_dir, lab=True, config=slow_retry + "disk_events = true\n")  # disk/* too
    try:
        log = mta.subscribe()
        _scenario(mta, log)
        seen = list(log.events)
    finally:
        mta.stop()
    emitted: dict[str, set[str]] = {}
    for e in seen:
        assert events.validate(e) == [], e
        emitted.setdefault(f"{e['kind']}/{e['type']}", set()).update(e["data"])
    declared = {f"{c.KIND}/{c.TYPE}": set(records.field_names(c)) for c in records.ALL}
    assert set(emitted) <= set(declared)  # (validate refused anything else)
    assert set(declared) - set(emitted) == NOT_PROVOKED
    never_filled = {(name, f) for name, fields in emitted.items() for f in declared[name] - fields}
    assert never_filled == NOT_FILLED
