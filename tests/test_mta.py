"""The real MTA end to end: delivery, relay, retry, bounce, local submission."""

import email
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mtakit import FAST_CONFIG, Mta, maildir_files, wait_for

from simmta.core.services import PROFILES

# The mail path (delivery, relay, defer, bounce) must hold in every architecture.
every_profile = pytest.mark.parametrize("mta", list(PROFILES), indirect=True)


def read_one(maildir: Path, n: int = 1, timeout: float = 20) -> list[email.message.Message]:
    files = wait_for(
        lambda: len(maildir_files(maildir)) >= n and maildir_files(maildir),
        timeout,
        f"{n} message(s) in {maildir}",
    )
    return [email.message_from_bytes(p.read_bytes()) for p in files]


def queue_empty(mta: Mta) -> bool:
    return not any(mta.queue_files(q) for q in ("incoming", "active", "deferred"))


@every_profile
def test_smtp_delivery_to_alice_with_headers_cleanup_adds(mta: Mta) -> None:
    qid = mta.send(to="alice@simmta.test", subject="first")
    [msg] = read_one(mta.maildir("alice"))
    assert msg["Subject"] == "first"
    assert qid in msg["Received"] and "by mx.simmta.test" in msg["Received"]
    assert msg["Message-ID"] and msg["Date"], "cleanup adds missing Message-ID and Date"
    assert msg["Delivered-To"] == "alice@simmta.test"
    assert msg["Return-Path"] == "<alice@simmta.test>"
    wait_for(lambda: queue_empty(mta), what="the queue to empty")


@every_profile
def test_postmaster_alias_goes_to_alice(mta: Mta) -> None:
    mta.send(to="postmaster@simmta.test")
    [msg] = read_one(mta.maildir("alice"))
    assert msg["Delivered-To"] == "postmaster@simmta.test"


def test_sendmail_goes_through_maildrop_and_pickup(mta: Mta) -> None:
    mta.simmta(
        "sendmail",
        "-f",
        "carol@simmta.test",
        "bob@simmta.test",
        input=b"Subject: local submission\n\nvia maildrop\n",
    )
    [msg] = read_one(mta.maildir("bob"))
    assert msg["Subject"] == "local submission"
    assert "with local id" in msg["Received"]
    assert mta.queue_files("maildrop") == []


def test_maildrop_works_while_the_mta_is_down(tmp_path: Path, instance_dir: Path) -> None:
    first = Mta(instance_dir)
    first.stop()
    r = subprocess.run(
        [sys.executable, "-m", "simmta", "sendmail", "--instance", str(instance_dir), "bob@simmta.test"],
        input=b"Subject: while down\n\nqueued offline\n",
        capture_output=True,
    )
    assert r.returncode == 0, r.stderr
    assert len(list((instance_dir / "queue" / "maildrop").iterdir())) == 1
    second = Mta(instance_dir)
    try:
        [msg] = read_one(second.maildir("bob"))
        assert msg["Subject"] == "while down"
    finally:
        second.stop()


@every_profile
def test_relay_to_the_peer(mta: Mta) -> None:
    qid = mta.send(to="someone@example.net", subject="remote")
    [msg] = read_one(mta.peer_maildir)
    assert msg["Subject"] == "remote" and qid in msg["Received"]
    wait_for(lambda: queue_empty(mta), what="the queue to empty")


@every_profile
def test_tempfail_defers_then_delivers_when_the_fault_clears(mta: Mta) -> None:
    mta.simmta("peer", "fault", "tempfail")
    qid = mta.send(to="someone@example.net")
    wait_for(lambda: qid in mta.queue_files("deferred"), what="the message in deferred/")
    listing = mta.simmta("queue").stdout
    assert qid in listing and "451 4.3.0" in listing
    assert maildir_files(mta.peer_maildir) == []
    mta.simmta("peer", "fault", "none")
    read_one(mta.peer_maildir)
    wait_for(lambda: queue_empty(mta), what="the queue to empty")


def _dsn(msg: email.message.Message) -> tuple[str, str]:
    assert msg.get_content_type() == "multipart/report"
    parts = {p.get_content_type(): p for p in msg.walk()}
    status = parts["message/delivery-status"]
    text = "".join(str(p) for p in status.get_payload())
    return msg["Subject"], text


@every_profile
def test_peer_permfail_bounces_a_dsn_to_the_sender(mta: Mta) -> None:
    mta.simmta("peer", "fault", "permfail")
    mta.send(to="someone@example.net", sender="alice@simmta.test")
    [dsn] = read_one(mta.maildir("alice"))
    subject, status = _dsn(dsn)
    assert subject == "Undelivered Mail Returned to Sender"
    assert "Final-Recipient: rfc822; someone@example.net" in status
    assert "Status: 5.1.1" in status and "Action: failed" in status
    assert dsn["Return-Path"] == "<>", "a DSN comes from the null sender"
    wait_for(lambda: queue_empty(mta), what="the queue to empty")


@every_profile
def test_unknown_local_user_bounces(mta: Mta) -> None:
    """smtpd refuses unknown users at RCPT (test_hardening); local submission reaches local."""
    mta.simmta(
        "sendmail", "-f", "bob@simmta.test", "nosuchuser@simmta.test", input=b"Subject: to nobody\n\nx\n"
    )
    [dsn] = read_one(mta.maildir("bob"))
    _, status = _dsn(dsn)
    assert "nosuchuser@simmta.test" in status and "Status: 5.1.1" in status


@every_profile
def test_a_bounce_is_never_bounced(mta: Mta) -> None:
    log = mta.subscribe()
    mta.simmta("sendmail", "-f", "", "nosuchuser@simmta.test", input=b"Subject: I am a bounce\n\nx\n")
    wait_for(
        lambda: log.find(kind="delivery", type="bounced", service="qmgr"),
        what="the undeliverable bounce to be discarded",
    )
    wait_for(lambda: queue_empty(mta), what="the queue to empty")
    assert not log.find(kind="delivery", type="bounce")
    assert all(maildir_files(mta.maildir(u)) == [] for u in ("alice", "bob", "carol"))
    log.close()


def test_hostile_local_parts_never_become_paths(mta: Mta) -> None:
    for local in ("../bob", "bob/../../x", "a/b"):
        with mta.smtp() as s:
            s.ehlo("x")
            s.mail("alice@simmta.test")
            code, _ = s.rcpt(f"<{local}@simmta.test>")
            if code == 250:
                assert s.data(b"Subject: x\r\n\r\nx\r\n")[0] == 250
    wait_for(lambda: queue_empty(mta), what="the queue to empty")
    assert not list(mta.instance.rglob("x")), "no file named after a local part"
    assert maildir_files(mta.maildir("bob")) == []


def test_messages_accepted_survive_kill_9_of_the_whole_tree(instance_dir: Path) -> None:
    """250 means durable: kill -9 everything right after it, restart, delivered."""
    mta = Mta(instance_dir)
    try:
        mta.simmta("ctl", "pace", "step")
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            fut = pool.submit(mta.send, "bob@simmta.test")
            # one step: smtpd -> cleanup (master waits for that hop); cleanup's hop to qmgr then waits
            step = json.loads(mta.simmta("ctl", "step", "--wait", "30", "--json").stdout)
            assert step["released"] == 1, "smtpd's hand-off to cleanup to be released"
            qid = fut.result(timeout=30)
        assert qid in mta.queue_files("incoming")
        victims = [mta.pid, *_tree(mta.pid)]
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        mta.proc.wait()
        assert maildir_files(mta.maildir("bob")) == []
    finally:
        mta.stop()
    again = Mta(instance_dir)
    try:
        assert again.live_status()["master_pid"] == again.pid != mta.pid, "the new master, not the dead one"
        [msg] = read_one(again.maildir("bob"))
        assert qid in msg["Received"]
    finally:
        again.stop()


def _tree(pid: int) -> list[int]:
    from mtakit import _descendants

    return _descendants(pid)


def test_config_error_names_file_line_and_key(instance_dir: Path) -> None:
    instance_dir.mkdir(parents=True)
    (instance_dir / "main.toml").write_text(FAST_CONFIG + 'message_size_limit = "big"\n')
    r = subprocess.run(
        [sys.executable, "-m", "simmta", "run", "--instance", str(instance_dir)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    line = FAST_CONFIG.count("\n") + 1
    assert f"main.toml, line {line}, key 'message_size_limit': expected a whole number" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("profile", list(PROFILES))
def test_deferred_mail_bounces_after_maximal_queue_lifetime(instance_dir: Path, profile: str) -> None:
    mta = Mta(instance_dir, config=FAST_CONFIG + 'maximal_queue_lifetime = "3s"\n', profile=profile)
    try:
        mta.simmta("peer", "fault", "tempfail")
        mta.send(to="someone@example.net", sender="carol@simmta.test")
        [dsn] = read_one(mta.maildir("carol"), timeout=30)
        _, status = _dsn(dsn)
        assert "Status: 4.4.7" in status and "message expired" in status
        wait_for(lambda: queue_empty(mta), what="the queue to empty")
    finally:
        mta.stop()


@every_profile
def test_peer_down_defers_with_a_reason(mta: Mta) -> None:
    mta.simmta("peer", "fault", "down")
    qid = mta.send(to="someone@example.net")
    wait_for(lambda: qid in mta.queue_files("deferred"), what="deferral")
    [item] = [json.loads(line) for line in mta.simmta("queue", "--json").stdout.splitlines()]
    assert item["queue_id"] == qid and item["queue_name"] == "deferred"
    assert "lost connection" in item["recipients"][0]["delay_reason"]
    cat = mta.simmta("cat", qid).stdout
    assert "*** ENVELOPE RECORDS deferred/" in cat and "recipient: someone@example.net" in cat


def test_simmta_send_burst(mta: Mta) -> None:
    r = mta.simmta("send", "--to", "carol@simmta.test", "--count", "20", "--concurrency", "4")
    assert "20 accepted, 0 refused" in r.stdout
    wait_for(lambda: len(maildir_files(mta.maildir("carol"))) == 20, what="20 deliveries")


def test_cleanup_defends_itself_whoever_feeds_it(mta: Mta) -> None:
    """pickup does not go through smtpd: cleanup dedupes recipients and replaces stray CRs."""
    mta.simmta(
        "sendmail", "bob@simmta.test", "bob@simmta.test", input=b"Subject: a\rX-Evil: smuggled\n\nbody\n"
    )
    [msg] = read_one(mta.maildir("bob"))
    wait_for(lambda: queue_empty(mta), what="the queue to empty")
    assert len(maildir_files(mta.maildir("bob"))) == 1, "one copy per recipient"
    assert msg["X-Evil"] is None and msg["Subject"] == "a X-Evil: smuggled"


def test_fifty_received_headers_is_a_loop(mta: Mta) -> None:
    hops = "".join(f"Received: from hop{i}\r\n" for i in range(50))
    with mta.smtp() as s:
        s.ehlo("x")
        s.mail("alice@simmta.test")
        s.rcpt("bob@simmta.test")
        code, text = s.data(f"{hops}Subject: loop\r\n\r\nx\r\n".encode())
    assert (code, text) == (554, b"5.4.0 Error: too many hops")
