"""The tools the lessons demonstrate with, on a real MTA: the bus's history
(``simmta events --since``), hand-made SMTP (``simmta send --raw``), the set-id
scan, the spawner in ``ps``, local's per-recipient seteuid, ``ctl step --wait``."""

from __future__ import annotations

import json
import os
import threading

import pytest
from mtakit import Mta, wait_for

from simmta.core.errors import SimmtaError
from simmta.master.history import History
from simmta.tools.send import raw_line


def test_history_is_bounded_and_answers_by_age() -> None:
    h = History(max_events=3, max_bytes=1000)
    h.record([b'{"seq":1}\n', b'{"seq":2}\n'])
    assert h.since(None) == {"lines": ['{"seq":1}\n', '{"seq":2}\n'], "forgotten": 0, "complete": True}
    h.record([b'{"seq":3}\n', b'{"seq":4}\n'])
    got = h.since(None)
    assert [json.loads(x)["seq"] for x in got["lines"]] == [2, 3, 4]
    assert got["forgotten"] == 1 and not got["complete"]
    h.lines[0] = (h.lines[0][0] - 3600, h.lines[0][1])  # the oldest kept line is an hour old
    assert [json.loads(x)["seq"] for x in h.since(60)["lines"]] == [3, 4]


def test_raw_lines_expand_escapes_and_repetitions() -> None:
    assert raw_line(r"a\nb\r\0\\") == b"a\nb\r\x00\\"
    assert raw_line("NOOP {x*5}") == b"NOOP xxxxx"
    with pytest.raises(SimmtaError, match="unknown escape"):
        raw_line(r"\q")
    with pytest.raises(SimmtaError, match="at most"):
        raw_line("{x*9999999}{y*9999999}")


def test_events_since_shows_what_already_happened(mta: Mta) -> None:
    log = mta.subscribe()  # daemons emit only while someone watches
    qid = mta.send(subject="remembered")
    wait_for(lambda: log.find(kind="delivery", type="delivered", qid=qid), 20, "the delivery")
    log.close()
    done = mta.simmta("events", "--since", "5m", "--json", "--kind", "delivery")
    seen = [json.loads(x) for x in done.stdout.splitlines()]
    assert any(e["type"] == "delivered" and e["qid"] == qid for e in seen), done.stdout
    assert all(e["kind"] == "delivery" for e in seen)
    everything = mta.simmta("events", "--from-start", "--json")
    kinds = {json.loads(x)["kind"] for x in everything.stdout.splitlines()}
    assert {"queue", "delivery", "smtp"} <= kinds


def test_send_raw_reports_the_dialogue_and_a_bare_lf_is_refused_from_outside(mta: Mta) -> None:
    done = mta.simmta(
        "send",
        "--source",
        "127.0.0.2",
        "--raw",
        "EHLO x",
        "MAIL FROM:<alice@simmta.test>",
        "RCPT TO:<bob@simmta.test>",
        "DATA",
        "Subject: s",
        "",
        r"a\n.\nb",
        ".",
        "QUIT",
        check=False,
    )
    assert "S: 550 5.5.2" in done.stdout, done.stdout
    assert r"C: a\n.\nb" in done.stdout  # the bare LFs are shown, not sent as line ends
    long = mta.simmta("send", "--raw", "EHLO x", "NOOP {x*5000}", "NOOP", "QUIT", check=False)
    replies = [x for x in long.stdout.splitlines() if x.startswith("S: ")]
    assert replies[2].startswith("S: 5") and replies[3].startswith("S: 250"), long.stdout


def test_scan_finds_no_setid_file_and_reports_maildrop(mta: Mta) -> None:
    log = mta.subscribe()
    done = mta.simmta("ctl", "scan", timeout=120)
    assert "set-uid or set-gid files: none" in done.stdout, done.stdout
    assert "maildrop/: drwx-wx-wt 1733" in done.stdout
    (event,) = wait_for(lambda: log.find(kind="lab", type="scan"), 20, "the scan event")
    assert event["data"]["setid"] == [] and event["data"]["checked"] > 100


def test_scan_names_a_setid_file_it_finds(mta: Mta) -> None:
    planted = mta.instance / "suspicious"
    planted.write_text("#!/bin/sh\n")
    planted.chmod(0o2755)
    done = mta.simmta("ctl", "scan", timeout=120)
    assert f"-rwxr-sr-x {planted}" in done.stdout, done.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="the spawner keeps root only in real mode")
def test_ps_shows_the_spawner_as_root_and_local_steps_to_each_recipient(mta: Mta) -> None:
    rows = json.loads(mta.simmta("ps", "--json").stdout)["processes"]
    (spawner,) = [r for r in rows if r["service"] == "spawner"]
    assert spawner["uid"][1] == 0
    log = mta.subscribe()
    mta.send(to="carol@simmta.test")
    step = wait_for(lambda: log.find(kind="privilege", type="step", service="local"), 20, "seteuid")
    carol = wait_for(lambda: [p for p in mta.maildir("carol").glob("new/*")], 20, "carol's mail")[0]
    assert step[0]["data"]["step"] == "seteuid" and step[0]["data"]["target"] == carol.stat().st_uid


def test_ctl_step_wait_waits_for_a_hop(mta: Mta) -> None:
    mta.simmta("ctl", "pace", "step")
    assert json.loads(mta.simmta("ctl", "step", "--wait", "0.2", "--json").stdout)["released"] == 0
    sent = threading.Thread(target=mta.send, daemon=True)
    sent.start()
    released = json.loads(mta.simmta("ctl", "step", "--wait", "10", "--json").stdout)["released"]
    assert released == 1
    mta.simmta("ctl", "pace", "live")
    sent.join(20)
