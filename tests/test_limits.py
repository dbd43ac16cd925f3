"""Limits (REFERENCE.md sections 1 and 3) enforced by the real MTA over real SMTP.

One MTA with small limits serves the whole module: line too long, message too
big (SIZE= and actual data), too many recipients, relay denied for a client
outside mynetworks, mail loop, header_size_limit, the hard error limit and the
junk command limit. After every rejection the session, or at least the server,
must keep working, and a normal message must still be delivered.

``Raw`` is a raw-socket SMTP client with bounded reads; test_adversarial uses
it too.
"""

import contextlib
import email
import os
import re
import shutil
import smtplib
import socket
import tempfile
import time
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest
from mtakit import FAST_CONFIG, Mta, maildir_files, wait_for

ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}( |$)")
MAX_REPLY = 64 * 1024  # no reply of ours is longer; a bound for every read


class Raw:
    """A raw SMTP client: bytes on a socket, every read bounded by a deadline."""

    def __init__(self, mta: Mta, source: str = "127.0.0.1", timeout: float = 30.0, greet: bool = True):
        self.sock = socket.create_connection(
            (mta.host, mta.port), timeout=timeout, source_address=(source, 0)
        )
        self.timeout = timeout
        self.buf = b""
        self.replies: list[str] = []  # every reply line received, for the transcript
        self.greeting = self.reply() if greet else (0, [])

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        """Read more into the buffer; False at EOF."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no complete reply within {self.timeout}s; have {self.buf!r}")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(4096)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return False
        self.buf += chunk
        assert len(self.buf) < MAX_REPLY, "reply too long"
        return True

    def line(self) -> str:
        deadline = time.monotonic() + self.timeout
        while b"\r\n" not in self.buf:
            if not self._fill(deadline):
                raise EOFError(f"connection closed; partial line {self.buf!r}")
        raw, self.buf = self.buf.split(b"\r\n", 1)
        text = raw.decode("utf-8", "replace")
        self.replies.append(text)
        return text

    def reply(self) -> tuple[int, list[str]]:
        """One (possibly multi-line) reply: (code, texts after the code)."""
        lines = []
        for _ in range(100):  # no reply of ours has 100 lines
            text = self.line()
            assert re.match(r"^\d{3}[ -]", text), f"not an SMTP reply line: {text!r}"
            lines.append(text[4:])
            if text[3] == " ":
                return int(text[:3]), lines
        raise AssertionError("reply with more than 100 lines")

    def cmd(self, command: str | bytes) -> tuple[int, str]:
        """Send one command (CRLF added to str), return (code, last line's text)."""
        data = command if isinstance(command, bytes) else command.encode() + b"\r\n"
        self.send(data)
        code, lines = self.reply()
        return code, lines[-1]

    def eof(self) -> bool:
        """True once the server has closed the connection (bounded wait)."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                if not self._fill(deadline):
                    return True
            except TimeoutError:
                return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Raw":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def running(name: str, config: str) -> Iterator[Mta]:
    """A running MTA with ``config`` in a fresh instance, for module-scoped fixtures.

    The instance lives outside pytest's basetemp: a concurrent pytest run resets
    that to mode 0700, and mail_owner must be able to walk to the queue.
    Set SIMMTA_KEEP=1 to keep the instance of a failed run.
    """
    base = Path(tempfile.mkdtemp(prefix=f"simmta-{name}-"))
    os.chmod(base, 0o711)
    m = Mta(base / "inst", config=config)
    try:
        yield m
        no_tracebacks(m)
    finally:
        m.stop()
        if not os.environ.get("SIMMTA_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


def read_all(maildir: Path) -> list[Message]:
    return [email.message_from_bytes(p.read_bytes()) for p in maildir_files(maildir)]


def with_subject(maildir: Path, subject: str) -> list[Message]:
    msgs = [email.message_from_bytes(p.read_bytes()) for p in maildir_files(maildir)]
    return [m for m in msgs if m["Subject"] == subject]


def wait_subject(maildir: Path, subject: str, timeout: float = 30) -> Message:
    found = wait_for(
        lambda: with_subject(maildir, subject), timeout, f"a message with Subject {subject!r} in {maildir}"
    )
    return found[0]


def queue_empty(mta: Mta) -> bool:
    return not any(mta.queue_files(q) for q in ("incoming", "active", "deferred"))


def no_tracebacks(mta: Mta) -> None:
    log = mta.instance / "log" / "master.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    assert "Traceback" not in text, text[-4000:]


def healthy(mta: Mta, subject: str) -> None:
    """The server still takes and delivers a normal message."""
    mta.send(to="carol@simmta.test", subject=subject)
    wait_subject(mta.maildir("carol"), subject)


LIMITS_CONFIG = (
    FAST_CONFIG
    + """
message_size_limit = 20000
header_size_limit = 1024
smtpd_recipient_limit = 3
smtpd_soft_error_limit = 3
smtpd_hard_error_limit = 6
smtpd_junk_command_limit = 5
"""
)


@pytest.fixture(scope="module")
def mta() -> Iterator[Mta]:
    with running("limits", LIMITS_CONFIG) as m:
        yield m


def envelope(s: Raw, rcpt: str = "bob@simmta.test") -> None:
    assert s.cmd("MAIL FROM:<alice@simmta.test>")[0] == 250
    assert s.cmd(f"RCPT TO:<{rcpt}>")[0] == 250


def test_the_limits_here_are_enforced_inside_the_jail(mta: Mta) -> None:
    """As root every test in this module talks to a chrooted, unprivileged smtpd and cleanup."""
    if os.geteuid() != 0:
        pytest.skip("real privilege mode needs root")
    queue = (mta.instance / "queue").resolve()
    with Raw(mta) as s:  # a session in progress: an smtpd process is busy with it
        s.cmd("EHLO client.example")
        status = mta.live_status()
        assert status["privilege_mode"] == "real"
        pids = [
            p for svc in status["services"] if svc["name"] in ("smtpd", "cleanup") for p in svc["pids"]
        ]  # cleanup only if one runs now
        assert pids, "an smtpd serves this session"
        for pid in pids:
            assert Path(os.readlink(f"/proc/{pid}/root")) == queue, pid
            assert os.stat(f"/proc/{pid}").st_uid == mta.mail_owner, pid


def test_command_line_too_long_then_the_session_keeps_working(mta: Mta) -> None:
    with Raw(mta) as s:
        s.cmd("EHLO client.example")
        code, text = s.cmd("NOOP " + "x" * 3000)
        assert code == 500 and text.startswith("5.5.0"), (code, text)
        assert s.cmd("NOOP")[0] == 250


def test_data_line_too_long_then_the_session_keeps_working(mta: Mta) -> None:
    with Raw(mta) as s:
        s.cmd("EHLO client.example")
        envelope(s)
        assert s.cmd("DATA")[0] == 354
        code, text = s.cmd(b"Subject: long line\r\n\r\n" + b"y" * 3000 + b"\r\nend\r\n.\r\n")
        assert (code, text) == (554, "5.6.0 Error: message line too long")
        envelope(s)
        assert s.cmd("DATA")[0] == 354
        code, text = s.cmd(b"Subject: after long line\r\n\r\nfine\r\n.\r\n")
        assert code == 250 and text.startswith("2.0.0 Ok: queued as "), text
    wait_subject(mta.maildir("bob"), "after long line")
    assert not with_subject(mta.maildir("bob"), "long line")


def test_size_at_mail_over_the_limit_is_552_5_3_4(mta: Mta) -> None:
    with Raw(mta) as s:
        s.send(b"EHLO client.example\r\n")
        _, lines = s.reply()
        assert "SIZE 20000" in lines
        code, text = s.cmd("MAIL FROM:<alice@simmta.test> SIZE=20001")
        assert code == 552 and text.startswith("5.3.4 "), (code, text)
        code, text = s.cmd("MAIL FROM:<alice@simmta.test> SIZE=19000")
        assert code == 250, text


def test_actual_data_over_the_limit_is_552_5_3_4_and_nothing_queued(mta: Mta) -> None:
    with Raw(mta) as s:
        s.cmd("EHLO client.example")
        envelope(s, "alice@simmta.test")
        assert s.cmd("DATA")[0] == 354
        body = (b"z" * 70 + b"\r\n") * 400  # 28800 bytes > 20000
        code, text = s.cmd(b"Subject: too big\r\n\r\n" + body + b".\r\n")
        assert code == 552 and text.startswith("5.3.4 "), (code, text)
        assert s.cmd("NOOP")[0] == 250, "the session goes on"
    with smtplib.SMTP(mta.host, mta.port, timeout=30) as c:
        c.ehlo("client.example")
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            c.sendmail(
                "alice@simmta.test", ["alice@simmta.test"], b"Subject: too big via smtplib\r\n\r\n" + body
            )
        assert refused.value.smtp_code == 552  # smtplib sends SIZE= from the EHLO
    healthy(mta, "after too big")
    assert not with_subject(mta.maildir("alice"), "too big")


def test_too_many_recipients_452_4_5_3_and_earlier_ones_kept(mta: Mta) -> None:
    rcpts = [
        "alice@simmta.test",
        "bob@simmta.test",
        "carol@simmta.test",
        "postmaster@simmta.test",
        "root@simmta.test",
    ]
    with Raw(mta) as s:
        s.cmd("EHLO client.example")
        assert s.cmd("MAIL FROM:<bob@simmta.test>")[0] == 250
        answers = [s.cmd(f"RCPT TO:<{r}>") for r in rcpts]
        assert [c for c, _ in answers] == [250, 250, 250, 452, 452]
        assert all(t.startswith("4.5.3 ") for _, t in answers[3:]), answers
        assert s.cmd("DATA")[0] == 354
        assert s.cmd(b"Subject: three of five\r\n\r\nx\r\n.\r\n")[0] == 250
    for user in ("alice", "bob", "carol"):
        msg = wait_subject(mta.maildir(user), "three of five")
        assert msg["Delivered-To"] == f"{user}@simmta.test"
    wait_for(lambda: queue_empty(mta), what="the queue to empty")
    assert len(with_subject(mta.maildir("alice"), "three of five")) == 1, (
        "postmaster/root (over the limit) were not delivered to alice"
    )


def test_duplicate_recipients_get_one_copy(mta: Mta) -> None:
    with Raw(mta) as s:
        s.cmd("EHLO client.example")
        assert s.cmd("MAIL FROM:<alice@simmta.test>")[0] == 250
        for r in ("bob@simmta.test", "bob@simmta.test", "bob@SIMMTA.TEST"):
            assert s.cmd(f"RCPT TO:<{r}>")[0] == 250
        assert s.cmd("DATA")[0] == 354
        assert s.cmd(b"Subject: dup rcpt\r\n\r\nx\r\n.\r\n")[0] == 250
    wait_subject(mta.maildir("bob"), "dup rcpt")
    wait_for(lambda: queue_empty(mta), what="the queue to empty")
    assert len(with_subject(mta.maildir("bob"), "dup rcpt")) == 1


def test_relay_denied_outside_mynetworks_but_local_mail_accepted(mta: Mta) -> None:
    with Raw(mta, source="127.0.0.2") as s:
        s.cmd("EHLO outsider.example")
        assert s.cmd("MAIL FROM:<someone@example.org>")[0] == 250
        code, text = s.cmd("RCPT TO:<victim@example.net>")
        assert code == 554 and text.startswith("5.7.1 ") and "Relay access denied" in text
        assert s.cmd("RCPT TO:<Bob@SIMMTA.TEST>")[0] == 250
        assert s.cmd("DATA")[0] == 354
        assert s.cmd(b"Subject: from outside\r\n\r\nhi\r\n.\r\n")[0] == 250
    msg = wait_subject(mta.maildir("bob"), "from outside")
    assert "127.0.0.2" in msg["Received"]
    with mta.smtp(source="127.0.0.1") as c:  # the same relay from mynetworks is fine
        c.ehlo("insider.example")
        c.mail("alice@simmta.test")
        assert c.rcpt("friend@example.net")[0] == 250
        assert c.data(b"Subject: relayed\r\n\r\nx\r\n")[0] == 250
    wait_subject(mta.peer_maildir, "relayed")
    assert not [m for m in with_subject(mta.peer_maildir, "from outside")]


RELAY_TRICKS = [
    "<victim@example.net>",
    "<@simmta.test:victim@example.net>",
    "<victim%example.net@simmta.test>",
    "<victim@example.net@simmta.test>",
    '<"victim@example.net"@simmta.test>',
    "<victim@example.net.>",
    "<victim@[127.0.0.1]>",
    "<victim@EXAMPLE.NET>",
    "<victim@simmta.test.example.net>",
]


def test_no_relay_trick_gets_mail_out_from_outside(mta: Mta) -> None:
    """From 127.0.0.2 nothing reaches the peer: refused at RCPT or, if local, kept local."""
    accepted = []
    for rcpt in RELAY_TRICKS:  # one session each: the hard error limit here is 6
        with Raw(mta, source="127.0.0.2") as s:
            s.cmd("EHLO outsider.example")
            assert s.cmd("MAIL FROM:<alice@simmta.test>")[0] == 250
            code, text = s.cmd(f"RCPT TO:{rcpt}")
            if code == 250:
                accepted.append(rcpt)
                assert s.cmd("DATA")[0] == 354
                assert s.cmd(f"Subject: trick {rcpt}\r\n\r\nx\r\n.\r\n".encode())[0] == 250
            else:
                assert 500 <= code <= 599 and ENHANCED.match(text), (rcpt, code, text)
    assert "<victim@example.net>" not in accepted
    wait_for(lambda: queue_empty(mta), what="the queue to empty")
    tricks = [m for m in read_all(mta.peer_maildir) if str(m["Subject"]).startswith("trick")]
    assert tricks == [], [m["Subject"] for m in tricks]


def test_mail_loop_554_5_4_0_and_nothing_queued(mta: Mta) -> None:
    hops = "".join(
        f"Received: from hop{i}.example by hop{i + 1}.example; Mon, 1 Jan 2024 00:00:{i % 60:02d} +0000\r\n"
        for i in range(51)
    )
    incoming_before = mta.queue_files("incoming")
    with Raw(mta) as s:
        s.cmd("EHLO looper.example")
        envelope(s, "carol@simmta.test")
        assert s.cmd("DATA")[0] == 354
        code, text = s.cmd(f"{hops}Subject: loop\r\n\r\nround and round\r\n.\r\n".encode())
        assert code == 554 and text.startswith("5.4.0 "), (code, text)
        assert s.cmd("NOOP")[0] == 250
    assert not set(mta.queue_files("incoming")) - set(incoming_before), "nothing new queued"
    healthy(mta, "after loop")
    assert not with_subject(mta.maildir("carol"), "loop"), "a looping message is never delivered"


def test_header_size_limit_excess_discarded_body_kept(mta: Mta) -> None:
    pads = "".join(f"X-Pad-{i:02d}: {'p' * 60}\r\n" for i in range(40))  # ~2.8 KB > 1024
    mta.send(to="alice@simmta.test", subject="big headers", extra_headers=pads, body="the body survives\r\n")
    msg = wait_subject(mta.maildir("alice"), "big headers")
    assert msg["X-Pad-00"] and not msg["X-Pad-39"], "late header text is discarded"
    kept = sum(len(k) + len(v) + 4 for k, v in msg.items() if k.startswith("X-Pad"))
    assert kept <= 1024
    assert msg.get_payload() == "the body survives\n"


def test_hard_error_limit_421_and_disconnect(mta: Mta) -> None:
    with Raw(mta) as s:
        s.cmd("EHLO client.example")
        codes = []
        for _ in range(10):  # bounded: the limit is 6
            code, text = s.cmd("RCPT TO:<bob@simmta.test>")  # 503: no MAIL yet
            codes.append(code)
            if code == 421:
                assert text.startswith("4.7.0 ") and "too many errors" in text
                break
        assert codes == [503] * 5 + [421], codes
        assert s.eof(), "the server hangs up after 421"


def test_junk_command_limit_421_and_disconnect(mta: Mta) -> None:
    with Raw(mta) as s:
        s.cmd("EHLO client.example")
        codes = [s.cmd("NOOP")[0] for _ in range(5)]
        assert codes == [250] * 5
        code, text = s.cmd("RSET")
        assert code == 421 and text.startswith("4.7.0 ") and "junk" in text
        assert s.eof()


def test_help_is_answered_as_postfix_does_and_is_neither_junk_nor_an_error(mta: Mta) -> None:
    """Postfix 3.9 and later (smtpd.c ``help_cmd``): ``214 2.0.0 Commands:`` and the commands
    it implements, sorted, for any argument, before EHLO too. HELP carries no junk-command
    flag and succeeds: ten here reach neither limit (5 junk commands, 6 errors)."""
    help_reply = (214, "2.0.0 Commands: DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET VRFY")
    with Raw(mta) as s:
        assert s.cmd("HELP") == help_reply
        s.cmd("EHLO client.example")
        for line in ("HELP", "HELP MAIL", "help bogus") * 3:
            assert s.cmd(line) == help_reply, line
        assert [s.cmd("NOOP")[0] for _ in range(5)] == [250] * 5
        assert s.cmd("NOOP")[0] == 421, "the junk limit still holds"


def test_421_is_the_last_thing_said_even_when_commands_were_pipelined(mta: Mta) -> None:
    """Commands queued behind the one that hit the limit are never executed."""
    with Raw(mta) as s:
        s.cmd("EHLO client.example")
        s.send(
            b"NOOP\r\n" * 6 + b"MAIL FROM:<alice@simmta.test>\r\nRCPT TO:<bob@simmta.test>\r\n"
            b"DATA\r\nSubject: pipelined past 421\r\n\r\nx\r\n.\r\nQUIT\r\n"
        )
        codes = [s.reply()[0] for _ in range(6)]
        assert codes == [250] * 5 + [421]
        assert s.eof()
        assert s.buf == b"", f"nothing after the 421: {s.buf!r}"
    healthy(mta, "after pipelined junk")
    assert not with_subject(mta.maildir("bob"), "pipelined past 421")


def test_still_healthy_after_all_that(mta: Mta) -> None:
    healthy(mta, "limits: last one")
    wait_for(lambda: queue_empty(mta), what="the queue to empty")
