"""Adversarial SMTP sessions against the real MTA (REFERENCE.md section 4).

What aiosmtpd leaves open must be closed by simmta: hostile address syntax,
NUL and control characters, bare LF (normalized, or rejected with
``smtpd_forbid_bare_newline = "reject"``), SMTP smuggling, commands ended by
bare LF, talking before the greeting, an idle client (421 before close), a
client that vanishes in mid-DATA or right after the final dot, replies without
enhanced status codes. After each, the server keeps serving, never answers
with a Python class name or a traceback, and still delivers a normal message.
A real third-party client (swaks) is used too.
"""

import re
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator

import pytest
from mtakit import FAST_CONFIG, EventLog, Mta, maildir_files, wait_for
from test_limits import (
    ENHANCED,
    Raw,
    healthy,
    queue_empty,
    running,
    wait_subject,
    with_subject,
)

LEAK = re.compile(r"\((\w*(Error|Exception)|\w+Warning)\)|Traceback|File \"")


@pytest.fixture(scope="module")
def mta() -> Iterator[Mta]:
    with running("adversarial", FAST_CONFIG) as m:
        yield m


@pytest.fixture(scope="module")
def strict() -> Iterator[Mta]:
    """Bare LF rejected, and a 2 s idle timeout."""
    config = FAST_CONFIG + 'smtpd_forbid_bare_newline_exclusions = []\nsmtpd_timeout = "2s"\n'
    with running("strict", config) as m:
        yield m


@pytest.fixture(scope="module")
def swaks() -> str:
    path = shutil.which("swaks")
    if path is None:  # CI's .ci/run installs it; a bare machine gets it here
        subprocess.run(["apt-get", "install", "-y", "-q", "swaks"], capture_output=True, timeout=300)
        path = shutil.which("swaks")
    assert path, "swaks is needed (apt-get install swaks)"
    return path


def no_leak(code: int, text: str) -> None:
    assert not LEAK.search(text), f"internal detail leaked: {code} {text}"
    assert not re.search(r"[\x00-\x1f\x7f]", text), f"control character echoed: {text!r}"


def vanish(s: Raw) -> None:
    """Drop the connection abruptly (RST, as a crashed client or a cut cable)."""
    s.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def session_closed(log: EventLog, s: Raw) -> str:
    """Wait until smtpd has seen this client go; returns the session id."""
    host, port = s.sock.getsockname()[:2]
    client = f"{host}:{port}"
    opened = wait_for(
        lambda: log.find(kind="smtp", type="open", data_client=client),
        what=f"smtpd to log the session of {client}",
    )
    sid = opened[0]["sid"]
    return sid


def wait_closed(log: EventLog, sid: str) -> None:
    wait_for(lambda: log.find(kind="smtp", type="close", sid=sid), what=f"session {sid} to close")


# Hostile syntax -------------------------------------------------------------

HOSTILE = [
    "<@",
    "<a@",
    '<"',
    "<a@[",
    "<",
    "<<>>",
    "<a@b>>",
    '<"a@b>',
    "<a@[1.2.3.4",
    "<@@@>",
    "<a\x00b@simmta.test>",
    "<alice@simmta.test\x00>",
    "\x00",
    "<" + "x" * 65 + "@simmta.test>",
    "<" + "y" * 60 + "@" + ".".join(["d" * 60] * 4) + ".test>",  # path > 256
    "<a\x01b@simmta.test>",
    "<a\x7fb@simmta.test>",
    "<a\rb@simmta.test>",
    "<a@simmta.test\x1b[31m>",
    "<a b@simmta.test>",
    "<a@-bad-.test>",
    "<a@b..test>",
    "<a@" + "z" * 64 + ".test>",
]


@pytest.mark.parametrize("verb", ["MAIL FROM:", "RCPT TO:"])
def test_hostile_address_syntax_is_5xx_never_a_leak(mta: Mta, verb: str) -> None:
    for arg in HOSTILE:
        with Raw(mta) as s:
            s.cmd("EHLO client.example")
            if verb == "RCPT TO:":
                assert s.cmd("MAIL FROM:<alice@simmta.test>")[0] == 250
            code, text = s.cmd(f"{verb}{arg}".encode("latin-1") + b"\r\n")
            assert 500 <= code <= 599, (arg, code, text)
            assert ENHANCED.match(text), (arg, code, text)
            no_leak(code, text)
            assert s.cmd("NOOP")[0] == 250, f"the session died after {arg!r}"
    healthy(mta, f"after hostile {verb}")


def test_hostile_helo_cannot_inject_headers(mta: Mta) -> None:
    with Raw(mta) as s:
        code, _ = s.cmd(b"EHLO evil\rX-Injected: yes\x00\x1b[2J\r\n")
        assert code == 250
        assert s.cmd("MAIL FROM:<alice@simmta.test>")[0] == 250
        assert s.cmd("RCPT TO:<bob@simmta.test>")[0] == 250
        assert s.cmd("DATA")[0] == 354
        assert s.cmd(b"Subject: evil helo\r\n\r\nx\r\n.\r\n")[0] == 250
    msg = wait_subject(mta.maildir("bob"), "evil helo")
    assert msg["X-Injected"] is None
    raw = [p.read_bytes() for p in maildir_files(mta.maildir("bob"))]
    head = next(r for r in raw if b"evil helo" in r).split(b"\n\n", 1)[0]
    assert b"\r" not in head and b"\x00" not in head and b"\x1b" not in head


def test_garbage_commands_never_leak_and_the_server_goes_on(mta: Mta) -> None:
    garbage = [
        b"\x00\x00\x00\r\n",
        b"\xff\xfe EHLO\r\n",
        b"MAIL FROM:<\xc3\xa4@simmta.test>\r\n",
        b"\r\n",
        b"   \r\n",
        b"EHLO\r\n",
        b"HELO\r\n",
        b"MAIL\r\n",
        b"RCPT\r\n",
        b"MAIL FROM:<alice@simmta.test> SIZE=abc\r\n",
        b"MAIL FROM:<alice@simmta.test> SIZE=\r\n",
        b"MAIL FROM:<alice@simmta.test> BODY=EVIL\r\n",
        b"AUTH PLAIN AAAA\r\n",
        b"STARTTLS\r\n",
        b"BDAT 10 LAST\r\n",
        b"VRFY <\x1b[2J\x00\r>\r\n",
        b"\x1b]0;pwned\x07\r\n",
        b"HELP \x1b[31m\r\n",
    ]
    with Raw(mta) as s:
        s.cmd("EHLO client.example")
        for line in garbage:
            code, text = s.cmd(line)
            assert code != 250 or line.startswith((b"EHLO", b"HELO")), (line, code, text)
            no_leak(code, text)
            if line.startswith(b"MAIL FROM") and code == 250:
                s.cmd("RSET")
        assert s.cmd("NOOP")[0] == 250
    healthy(mta, "after garbage")


def test_every_reply_after_ehlo_has_an_enhanced_status_code(mta: Mta) -> None:
    script = [
        "NOOP",
        "HELP",
        "HELP MAIL",
        "HELP BOGUS",
        "VRFY bob",
        "VRFY",
        "VRFY <@",
        "EXPN staff",
        "RSET",
        "RSET now",
        "FOO",
        "MAIL",
        "MAIL TO:<a@b.test>",
        "RCPT TO:<bob@simmta.test>",
        "DATA",
        "MAIL FROM:<alice@simmta.test> SMTPUTF8",
        "MAIL FROM:<alice@simmta.test> FOO=bar",
        "MAIL FROM:<alice@simmta.test> BODY=8BITMIME",
        "MAIL FROM:<bob@simmta.test>",
        "RCPT TO:<bob@simmta.test> NOTIFY=NEVER",
        "RCPT TO:<nobody@example.net>",
        "RCPT TO:<bob@simmta.test>",
        "DATA now",
        "NOOP " + "n" * 600,
    ]
    with Raw(mta) as s:
        s.send(b"EHLO client.example\r\n")
        code, lines = s.reply()
        assert code == 250 and "ENHANCEDSTATUSCODES" in lines  # RFC 2034: advertised
        for cmd in script:
            code, text = s.cmd(cmd)
            assert ENHANCED.match(text), f"{cmd!r} -> {code} {text!r} has no enhanced code"
            assert text[0] == str(code)[0], (cmd, code, text)
        assert s.cmd("DATA")[0] == 354
        code, text = s.cmd(b"Subject: enhanced\r\n\r\nx\r\n.\r\n")
        assert code == 250 and text.startswith("2.0.0 ")
        code, text = s.cmd("QUIT")
        assert code == 221 and ENHANCED.match(text)
    wait_subject(mta.maildir("bob"), "enhanced")


# Line ends, smuggling --------------------------------------------------------


def test_commands_ended_by_bare_lf_still_work(mta: Mta) -> None:
    with Raw(mta) as s:
        s.send(b"EHLO lf.example\n")
        assert s.reply()[0] == 250
        for line, want in (
            (b"MAIL FROM:<alice@simmta.test>\n", 250),
            (b"RCPT TO:<carol@simmta.test>\n", 250),
            (b"DATA\n", 354),
        ):
            code, text = s.cmd(line)
            assert code == want, (line, code, text)
        assert s.cmd(b"Subject: lf commands\r\n\r\nx\r\n.\r\n")[0] == 250
    wait_subject(mta.maildir("carol"), "lf commands")


def test_a_client_that_half_closes_is_still_served(mta: Mta) -> None:
    """``nc -N`` style: the whole session sent, write side shut, replies still read."""
    with Raw(mta) as s:
        s.send(
            b"EHLO batch.example\r\nMAIL FROM:<alice@simmta.test>\r\n"
            b"RCPT TO:<carol@simmta.test>\r\nDATA\r\nSubject: half close\r\n\r\nx\r\n.\r\n"
            b"QUIT\r\n"
        )
        s.sock.shutdown(socket.SHUT_WR)
        codes = [s.reply()[0] for _ in range(6)]
        assert codes == [250, 250, 250, 354, 250, 221]
        assert s.eof()
    with Raw(mta) as s:  # half-closed in mid-DATA: nothing queued, session ends
        s.send(
            b"EHLO batch.example\r\nMAIL FROM:<alice@simmta.test>\r\n"
            b"RCPT TO:<carol@simmta.test>\r\nDATA\r\nSubject: half close cut\r\n\r\nx\r\n"
        )
        s.sock.shutdown(socket.SHUT_WR)
        assert [s.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
        assert s.eof() and s.buf == b""
    wait_subject(mta.maildir("carol"), "half close")
    healthy(mta, "after half close")
    assert not with_subject(mta.maildir("carol"), "half close cut")


def test_bare_lf_in_data_is_normalized(mta: Mta) -> None:
    with Raw(mta) as s:
        s.cmd("EHLO client.example")
        s.cmd("MAIL FROM:<alice@simmta.test>")
        s.cmd("RCPT TO:<alice@simmta.test>")
        assert s.cmd("DATA")[0] == 354
        code, _ = s.cmd(b"Subject: bare lf\nX-After-Lf: b\r\n\r\none\ntwo\r\n.\r\n")
        assert code == 250
    msg = wait_subject(mta.maildir("alice"), "bare lf")
    assert msg["X-After-Lf"] == "b", "a bare LF is a line end, as in Postfix's normalize"
    assert msg.get_payload() == "one\ntwo\n"


def test_bare_lf_in_data_rejected_550_5_5_2_when_configured(strict: Mta) -> None:
    with Raw(strict) as s:
        s.cmd("EHLO client.example")
        s.cmd("MAIL FROM:<alice@simmta.test>")
        s.cmd("RCPT TO:<alice@simmta.test>")
        assert s.cmd("DATA")[0] == 354
        code, text = s.cmd(b"Subject: bare lf rejected\nX-Evil: b\r\n\r\nx\r\n.\r\n")
        assert code == 550 and text.startswith("5.5.2 "), (code, text)
        s.cmd("MAIL FROM:<alice@simmta.test>")
        s.cmd("RCPT TO:<alice@simmta.test>")
        assert s.cmd("DATA")[0] == 354
        assert s.cmd(b"Subject: clean after reject\r\n\r\nx\r\n.\r\n")[0] == 250
    wait_subject(strict.maildir("alice"), "clean after reject")
    assert not with_subject(strict.maildir("alice"), "bare lf rejected")


def test_commands_ended_by_bare_lf_rejected_when_configured(strict: Mta) -> None:
    with Raw(strict) as s:
        code, text = s.cmd(b"EHLO lf.example\n")
        assert code == 550 and text.startswith("5.5.2 "), (code, text)
        assert s.cmd("EHLO crlf.example")[0] == 250, "a proper command still works"
        code, text = s.cmd(b"MAIL FROM:<alice@simmta.test>\n")
        assert code == 550 and text.startswith("5.5.2 "), (code, text)
        assert s.cmd("MAIL FROM:<alice@simmta.test>")[0] == 250


SMUGGLE_TAIL = (
    b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<carol@simmta.test>\r\nDATA\r\n"
    b"Subject: smuggled\r\n\r\nI am a second message\r\n.\r\n"
)


@pytest.mark.parametrize(
    "dot", [b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\n.\n"], ids=["LF.CRLF", "CRLF.LF", "CR.CRLF", "LF.LF"]
)
def test_smuggling_never_yields_two_messages(mta: Mta, dot: bytes) -> None:
    subject = f"smuggle {dot!r}"
    with Raw(mta) as s:
        s.cmd("EHLO client.example")
        s.cmd("MAIL FROM:<alice@simmta.test>")
        s.cmd("RCPT TO:<bob@simmta.test>")
        s.cmd("RCPT TO:<friend@example.net>")
        assert s.cmd("DATA")[0] == 354
        s.send(f"Subject: {subject}\r\n\r\nhello".encode() + dot + SMUGGLE_TAIL)
        code, text = s.reply()
        assert code == 250, (code, text)
        assert s.cmd("NOOP")[0] == 250, "exactly one reply for the whole DATA"
    local = wait_subject(mta.maildir("bob"), subject)
    remote = wait_subject(mta.peer_maildir, subject)
    for msg in (local, remote):
        body = msg.get_payload()
        assert "MAIL FROM:<evil@example.org>" in body and "I am a second message" in body
        if dot.startswith(b"\n"):  # a lone "." line: it crossed the wire to the peer stuffed
            assert "hello\n.\nMAIL FROM" in body, body
    wait_for(lambda: queue_empty(mta), what="the queue to empty")
    assert not with_subject(mta.maildir("carol"), "smuggled")
    assert not with_subject(mta.peer_maildir, "smuggled")
    assert len(with_subject(mta.peer_maildir, subject)) == 1


def test_a_lone_dot_line_in_the_body_is_dot_stuffed_on_relay(mta: Mta) -> None:
    body = "line one\r\n.\r\n.hidden\r\n..\r\nlast\r\n"  # smtplib dot-stuffs it for us
    mta.send(to="friend@example.net", subject="dots", body=body)
    msg = wait_subject(mta.peer_maildir, "dots")
    assert msg.get_payload() == body.replace("\r\n", "\n")


# Timing and vanishing clients ------------------------------------------------


def test_talking_before_the_greeting_is_refused(mta: Mta) -> None:
    """Pre-greeting traffic (a spambot's hallmark): 554 5.5.0 and close."""
    outcomes = []
    for _ in range(5):  # bounded; the client's bytes usually arrive before smtpd looks
        with Raw(mta, greet=False) as s:
            s.send(b"EHLO eager.example\r\nMAIL FROM:<alice@simmta.test>\r\n")
            code, lines = s.reply()
            if code == 554:
                assert lines[-1].startswith("5.5.0 "), lines
                assert s.eof(), "closed after 554"
                outcomes.append("refused")
                break
            assert code == 220, (code, lines)  # too late to tell: must stay in sync
            assert s.reply()[0] == 250
            assert s.reply()[0] == 250
            outcomes.append("served")
    assert "refused" in outcomes, outcomes
    healthy(mta, "after pregreet")


def test_idle_client_gets_421_4_4_2_before_close(strict: Mta) -> None:
    with Raw(strict, timeout=15) as s:
        s.cmd("EHLO slow.example")
        code, lines = s.reply()  # no command sent: the server speaks first, after 2 s
        text = lines[-1]
        assert code == 421 and text.startswith("4.4.2 "), (code, text)
        assert s.eof()


def test_idle_in_mid_data_gets_421_and_nothing_is_queued(strict: Mta) -> None:
    log = strict.subscribe()
    try:
        with Raw(strict, timeout=15) as s:
            sid = session_closed(log, s)
            s.cmd("EHLO slow.example")
            s.cmd("MAIL FROM:<alice@simmta.test>")
            s.cmd("RCPT TO:<bob@simmta.test>")
            assert s.cmd("DATA")[0] == 354
            s.send(b"Subject: stalled\r\n\r\nhalf a messa")
            code, lines = s.reply()
            assert code == 421 and lines[-1].startswith("4.4.2 "), (code, lines)
            assert s.eof()
        wait_closed(log, sid)
        assert not log.find(kind="queue", type="created", sid=sid)
    finally:
        log.close()


def test_no_timeout_while_the_message_is_being_committed(strict: Mta) -> None:
    """smtpd_timeout is for the client's silence, not cleanup's: no 421 for a queued message.

    A 421 sent while cleanup commits would make the client retry a message
    that was queued after all: a duplicate.
    """
    log = strict.subscribe()
    try:
        strict.simmta("ctl", "pace", "step")  # hold the hand-off past smtpd_timeout (2 s)
        try:
            with Raw(strict, timeout=15) as s:
                sid = session_closed(log, s)
                s.cmd("EHLO client.example")
                s.cmd("MAIL FROM:<alice@simmta.test>")
                s.cmd("RCPT TO:<bob@simmta.test>")
                assert s.cmd("DATA")[0] == 354
                s.send(b"Subject: slow commit\r\n\r\nbody\r\n.\r\n")
                wait_for(
                    lambda: log.find(kind="pace", type="wait", sid=sid),
                    what="smtpd's hand-off to cleanup to wait",
                )
                s.sock.settimeout(3.5)  # a bounded read: the server must stay silent
                with pytest.raises(TimeoutError):
                    data = s.sock.recv(4096)
                    raise AssertionError(f"server spoke while committing: {data!r}")
                strict.simmta("ctl", "pace", "live")
                code, lines = s.reply()
                assert code == 250 and lines[-1].startswith("2.0.0 Ok: queued as"), lines
                assert s.cmd("NOOP")[0] == 250, "the idle timer runs again afterwards"
        finally:
            strict.simmta("ctl", "pace", "live")
        wait_subject(strict.maildir("bob"), "slow commit")
    finally:
        log.close()


def test_client_vanishing_mid_data_queues_nothing(mta: Mta) -> None:
    log = mta.subscribe()
    try:
        with Raw(mta) as s:
            sid = session_closed(log, s)
            s.cmd("EHLO client.example")
            s.cmd("MAIL FROM:<alice@simmta.test>")
            s.cmd("RCPT TO:<bob@simmta.test>")
            assert s.cmd("DATA")[0] == 354
            s.send(b"Subject: vanished mid data\r\n\r\n" + b"partial line\r\n" * 100 + b"no end")
            vanish(s)
        wait_closed(log, sid)
        assert not log.find(kind="queue", type="created", sid=sid)
        healthy(mta, "after mid-data vanish")
        wait_for(lambda: queue_empty(mta), what="the queue to empty")
        assert list((mta.instance / "queue" / "incoming").iterdir()) == []
        assert not with_subject(mta.maildir("bob"), "vanished mid data")
    finally:
        log.close()


def test_client_vanishing_right_after_the_dot_is_delivered_exactly_once(mta: Mta) -> None:
    """The commit to cleanup is shielded: the 250 goes nowhere, the message is still queued once."""
    log = mta.subscribe()
    try:
        mta.simmta("ctl", "pace", "step")  # hold smtpd's hand-off to cleanup
        try:
            with Raw(mta) as s:
                sid = session_closed(log, s)
                s.cmd("EHLO client.example")
                s.cmd("MAIL FROM:<alice@simmta.test>")
                s.cmd("RCPT TO:<bob@simmta.test>")
                assert s.cmd("DATA")[0] == 354
                s.send(b"Subject: vanished after dot\r\n\r\nbody\r\n.\r\n")
                wait_for(
                    lambda: log.find(kind="pace", type="wait", sid=sid),
                    what="smtpd's hand-off to cleanup to wait",
                )
                vanish(s)
            wait_closed(log, sid)
            incoming = mta.instance / "queue" / "incoming"
            assert [p for p in incoming.iterdir() if p.stat().st_mode & 0o777 != 0o700] == [], (
                "no incomplete queue file while the hand-off waits"
            )
        finally:
            mta.simmta("ctl", "pace", "live")  # releases every waiting hop
        created = wait_for(
            lambda: log.find(kind="queue", type="created", sid=sid),
            what="the shielded commit to queue the message",
        )
        assert len(created) == 1
        wait_subject(mta.maildir("bob"), "vanished after dot")
        healthy(mta, "after post-dot vanish")
        wait_for(lambda: queue_empty(mta), what="the queue to empty")
        assert len(with_subject(mta.maildir("bob"), "vanished after dot")) == 1
    finally:
        log.close()


def test_vanishing_at_every_stage_leaves_no_partial_queue_file(mta: Mta) -> None:
    stages = [
        b"",
        b"EHLO x\r\n",
        b"EHLO x\r\nMAIL FROM:<alice@simmta.test>\r\n",
        b"EHLO x\r\nMAIL FROM:<alice@simmta.test>\r\nRCPT TO:<bob@simmta.test>\r\nDATA\r\n",
        b"EHLO x\r\nMAIL FROM:<alice@simmta.test>\r\nRCPT TO:<bob@simmta.test>\r\nDATA\r\n"
        b"Subject: stage\r\n\r\nx\r\n.",
        b"EHLO x\r\nMAIL FROM:<alice@simmta.test>\r\nRCPT TO:<bob@simmta.test>\r\nDATA\r\n"
        b"Subject: stage\r\n\r\nx\r\n.\r",
    ]
    for data in stages:
        with Raw(mta) as s:
            s.send(data)
            vanish(s)
    healthy(mta, "after vanishing stages")
    wait_for(lambda: queue_empty(mta), what="the queue to empty")
    assert list((mta.instance / "queue" / "incoming").iterdir()) == []
    assert not with_subject(mta.maildir("bob"), "stage")


# Real tools -------------------------------------------------------------------


def test_swaks_delivers(mta: Mta, swaks: str) -> None:
    r = subprocess.run(
        [
            swaks,
            "--server",
            mta.host,
            "--port",
            str(mta.port),
            "--from",
            "alice@simmta.test",
            "--to",
            "bob@simmta.test",
            "--helo",
            "swaks.example",
            "--header",
            "Subject: via swaks",
            "--body",
            "sent by swaks",
            "--timeout",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"<-\s+250 2\.0\.0 Ok: queued as [0-9A-F]+", r.stdout), r.stdout
    msg = wait_subject(mta.maildir("bob"), "via swaks")
    assert "sent by swaks" in msg.get_payload()


def test_swaks_relay_refused_from_outside(mta: Mta, swaks: str) -> None:
    r = subprocess.run(
        [
            swaks,
            "--server",
            mta.host,
            "--port",
            str(mta.port),
            "--local-interface",
            "127.0.0.2",
            "--from",
            "x@example.org",
            "--to",
            "victim@example.net",
            "--timeout",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0
    assert "554 5.7.1" in r.stdout and "Relay access denied" in r.stdout, r.stdout


def test_server_healthy_at_the_end(mta: Mta, strict: Mta) -> None:
    for m in (mta, strict):
        healthy(m, "adversarial: last one")
        wait_for(lambda m=m: queue_empty(m), what="the queue to empty")
