"""Property-based fuzzing (hypothesis) of what simmta reads from strangers.

- The SMTP dialogue, against the real server from 127.0.0.2: sessions built
  from SMTP commands, hostile addresses, bare LF/CR, NUL, long lines and raw
  bytes. Properties: every line the server says is an SMTP reply with no
  traceback or class name in it, the server keeps serving, every queue ID
  is given once, every message that got 250 is delivered exactly once, and
  the tree's memory stays within a fixed bound.
- The queue-file reader and the maildrop files pickup reads: a valid file,
  then mutated (bytes flipped, cut, spliced). Properties: the reader returns a
  QueueFile or raises CorruptQueueFile, nothing else; pickup, fed such files
  in a real MTA, never crashes and leaves maildrop/ empty.

Bounded in time in the suite (a few dozen examples each); set
``SIMMTA_FUZZ=long`` for a longer run (thousands of examples).
"""

import os
import re
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mtakit import FAST_CONFIG, Mta, maildir_files, wait_for
from test_limits import healthy, queue_empty, running

from simmta.core import queue as qf
from simmta.tools.bench_stats import ProcTree

LONG = os.environ.get("SIMMTA_FUZZ") == "long"
SETTINGS = settings(
    max_examples=3000 if LONG else 40,
    deadline=None,
    derandomize=not LONG,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
REPLY = re.compile(rb"^\d{3}[ -]")
LEAK = re.compile(rb"Traceback|File \"|\((\w*(Error|Exception)|\w+Warning)\)")
QUEUED = re.compile(rb"^250 2\.0\.0 Ok: queued as ([0-9A-F]+)$")
RECEIVED_ID = re.compile(rb"\n\tby [^\n]* \(simmta\) with E?SMTP id ([0-9A-F]+)")  # cleanup's line
MIB = 1 << 20
MEMORY_BOUND = 64 * MIB  # over the tree's size before the fuzzing

ADDRESSES = st.sampled_from(
    [
        "<bob@simmta.test>",
        "<carol@simmta.test>",
        "<>",
        "<Postmaster>",
        "<nobody@simmta.test>",
        "<victim@example.net>",
        "<a%b@simmta.test>",
        '<"a@b"@simmta.test>',
        "<../x@simmta.test>",
        "bob@simmta.test",
        "<@",
        "<a@[",
        '<"',
        "<a\x00b@simmta.test>",
        "<" + "x" * 300 + "@simmta.test>",
    ]
)
VERBS = st.sampled_from(
    [
        "EHLO",
        "HELO",
        "MAIL FROM:",
        "RCPT TO:",
        "DATA",
        "RSET",
        "NOOP",
        "VRFY",
        "HELP",
        "EXPN",
        "STARTTLS",
        "AUTH PLAIN",
        "BDAT",
        "XCLIENT",
        "QUIT",
    ]
)
ENDS = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b"\r\r\n", b"\x00\r\n"])


@st.composite
def command(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=80)) + draw(ENDS)
    if kind == 1:  # a message: headers, body, hostile bits, the final dot
        body = draw(
            st.lists(
                st.one_of(
                    st.binary(max_size=60),
                    st.sampled_from([b".", b"..", b"\x00", b"Subject: fuzz", b"a\nb", b"a\rb", b"x" * 3000]),
                ),
                max_size=8,
            )
        )
        return b"DATA\r\n" + b"\r\n".join(body) + b"\r\n.\r\n"
    verb = draw(VERBS)
    arg = (
        draw(ADDRESSES)
        if verb in ("MAIL FROM:", "RCPT TO:")
        else draw(st.text(alphabet=st.characters(max_codepoint=0x3000), max_size=30))
    )
    line = f"{verb}{arg}" if verb.endswith(":") else f"{verb} {arg}".rstrip()
    return line.encode("utf-8", "surrogatepass") + draw(ENDS)


SESSION = st.lists(command(), min_size=1, max_size=12).map(
    lambda cmds: [
        b"EHLO fuzz.example\r\n",
        b"MAIL FROM:<fuzz@example.org>\r\n",
        b"RCPT TO:<bob@simmta.test>\r\n",
        *cmds,
    ]
)


@pytest.fixture(scope="module")
def mta() -> Iterator[Mta]:
    config = (
        FAST_CONFIG + "smtpd_timeout = 10\nsmtpd_hard_error_limit = 1000\nsmtpd_soft_error_limit = 1000\n"
    )
    with running("fuzz", config) as m:
        yield m


def talk(m: Mta, commands: list[bytes]) -> list[bytes]:
    """One session from 127.0.0.2: the greeting, the commands, half-close, every reply line."""
    with socket.create_connection((m.host, m.port), timeout=20, source_address=("127.0.0.2", 0)) as s:
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            assert chunk, "closed before the greeting"
            data += chunk
        s.sendall(b"".join(commands))
        s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(data) < 1 << 20:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
    return [line for line in data.split(b"\r\n") if line]


@pytest.mark.slow
def test_fuzzed_smtp_sessions(mta: Mta) -> None:
    tree = ProcTree(mta.pid)
    before = tree.memory_bytes()
    queued: list[bytes] = []

    @SETTINGS
    @given(SESSION)
    def session(commands: list[bytes]) -> None:
        for line in talk(mta, commands):
            assert REPLY.match(line), f"not an SMTP reply: {line[:200]!r}"
            assert not LEAK.search(line), f"internal detail leaked: {line[:200]!r}"
            if q := QUEUED.match(line):
                queued.append(q.group(1))

    session()
    assert queued, "some fuzzed sessions got a message through (else the checks below are empty)"
    assert len(queued) == len(set(queued)), "a queue ID given twice"
    assert tree.memory_bytes() - before < MEMORY_BOUND
    wait_for(lambda: queue_empty(mta), 60, "the queue to empty")
    copies: Counter[tuple[str, bytes]] = Counter()  # (mailbox, queue ID): one file per recipient
    for user in ("alice", "bob", "carol"):
        for f in maildir_files(mta.maildir(user)):
            if m := RECEIVED_ID.search(f.read_bytes()):
                copies[user, m.group(1)] += 1
    assert {qid for _, qid in copies} == set(queued), "every 250 delivered (and nothing without one)"
    assert max(copies.values(), default=1) == 1, "no mailbox got a message twice"
    healthy(mta, "after the fuzzing")


def valid_file() -> bytes:
    return b"".join(
        [
            *qf.envelope_records(
                1.7e9, {"origin": "sendmail"}, "alice@simmta.test", ["bob@simmta.test", "carol@simmta.test"]
            ),
            qf.record(b"M", b"Subject: x\n\nbody\n"),
            qf.record(b"E", b""),
        ]
    )


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(valid_file())
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 3))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == 0 and data:
            data[at] = draw(st.integers(0, 255))
        elif op == 1:
            del data[at:]
        elif op == 2:
            data[at:at] = draw(st.binary(max_size=16))
        else:
            data[at : at + 4] = draw(
                st.sampled_from(
                    [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"R\x00\x00\x00"]
                )
            )
    return bytes(data)


@SETTINGS
@given(st.one_of(mutated(), st.binary(max_size=200)))
def test_queue_file_reader_raises_only_corrupt(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "F00D1"
        path.write_bytes(data)
        os.chmod(path, qf.MODE_COMPLETE)
        for complete in (True, False):
            try:
                msg = qf.read(path, require_complete=complete)
            except qf.CorruptQueueFile:
                continue
            msg.content()
            msg.summary()
            assert all(isinstance(r.address, str) for r in msg.recipients)


@pytest.mark.slow
def test_pickup_survives_fuzzed_maildrop_files(mta: Mta) -> None:
    drop = mta.instance / "queue" / "maildrop"
    files: list[bytes] = []

    @SETTINGS
    @given(mutated())
    def collect(data: bytes) -> None:
        files.append(data)

    collect()
    for i, data in enumerate(files):
        path = drop / f"FUZZ{i:05d}"
        path.write_bytes(data)
        os.chmod(path, 0o644)
    mta.simmta("sendmail", "carol@simmta.test", input=b"Subject: after fuzzed drops\n\nx\n")  # wakes pickup
    wait_for(lambda: not any(drop.iterdir()), 60, "pickup to empty maildrop/")
    wait_for(lambda: queue_empty(mta), 60, "the queue to empty")
    assert mta.children_of("pickup"), "pickup is still running"
