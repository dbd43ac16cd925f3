"""The SMTP load generator of ``simmta bench``: asyncio streams, no smtplib threads.

``generate_load`` sends N messages of S bytes over C concurrent sessions, M
messages per connection, one command at a time (no PIPELINING, like Postfix's
``smtp-source`` without ``-p``), and records for each message when its
transaction began and when the server said 250 after DATA. Every message
carries a unique ``X-Bench-Id`` header (also its Message-ID) so a delivered
file can be matched to the message it came from.

Bounded: N messages at most, C connections at most, every wait has a timeout
and the whole run a deadline; a session that fails is counted and the rest go on.

Trust: talks only to the loopback address it is given (the caller checks);
replies are only parsed for their status code.
"""

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

LINE_LIMIT = 8192  # longest reply line read; a server sending more is broken


@dataclass(frozen=True)
class LoadSpec:
    host: str
    port: int
    messages: int
    size: int
    concurrency: int
    per_connection: int
    sender: str
    recipient: str
    run_id: str  # prefix of every X-Bench-Id of this run
    step_timeout: float = 60.0  # one command's reply
    deadline: float = 600.0  # the whole load, seconds from its start
    helo_name: str = "bench.simmta.test"


# File timestamps come from the kernel's coarse clock (one tick, often 4 ms, behind
# the precise one): a delivery's ctime is compared with a start on that same clock.
CLOCK_REALTIME_COARSE = getattr(time, "CLOCK_REALTIME_COARSE", 5)


def coarse_now() -> float:
    return time.clock_gettime(CLOCK_REALTIME_COARSE)


@dataclass
class MessageRecord:
    bench_id: str
    started: float  # wall clock: connect (first message of a session) or MAIL FROM
    started_coarse: float  # the same instant on the clock file timestamps use
    accepted: float | None = None  # wall clock of the 250 after DATA


@dataclass
class LoadResult:
    started: float
    finished: float = 0.0
    records: list[MessageRecord] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def accepted(self) -> list[MessageRecord]:
        return [r for r in self.records if r.accepted is not None]

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


class SmtpReplyError(Exception):
    def __init__(self, stage: str, code: int):
        super().__init__(f"{stage}: {code}")
        self.stage, self.code = stage, code


def bench_id(run_id: str, n: int) -> str:
    return f"{run_id}.{n:07d}"


def message_bytes(spec: LoadSpec, ident: str) -> bytes:
    """A message of about spec.size bytes (headers included), CRLF lines, ending in CRLF.

    The filler lines never start with '.', so no dot-stuffing is needed.
    """
    head = (
        f"From: <{spec.sender}>\r\n"
        f"To: <{spec.recipient}>\r\n"
        f"Subject: simmta bench {ident}\r\n"
        f"Message-ID: <{ident}@bench.simmta.test>\r\n"
        f"X-Bench-Id: {ident}\r\n"
        "\r\n"
    ).encode()
    line = b"simmta bench filler: the quick brown fox jumps over the lazy dog 0123456789\r\n"
    missing = max(spec.size - len(head), 2)
    body = (line * (missing // len(line) + 1))[: missing - 2] + b"\r\n"
    return head + body


class _Conversation:
    """One SMTP connection: send a line, read the reply's code, each step under a timeout.

    One ``asyncio.timeout`` is re-armed before each step: a ``wait_for`` per
    step would cost a task each time, and the load generator's CPU is taken
    from the server under test on the same machine.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: asyncio.Timeout,
        step_timeout: float,
    ):
        self.reader, self.writer = reader, writer
        self.timeout, self.step_timeout = timeout, step_timeout
        self.loop = asyncio.get_running_loop()

    async def reply(self) -> int:
        """The status code of one (possibly multi-line) reply."""
        self.timeout.reschedule(self.loop.time() + self.step_timeout)
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionResetError("server closed the connection")
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3])

    async def command(self, line: bytes, stage: str, expect: int = 2) -> None:
        self.writer.write(line)
        code = await self.reply()
        if code // 100 != expect:
            raise SmtpReplyError(stage, code)


async def _session(
    spec: LoadSpec, numbers: list[int], result: LoadResult, on_accept: Callable[[], None]
) -> None:
    """One SMTP connection carrying the messages numbered ``numbers``."""
    started, started_coarse = time.time(), coarse_now()
    async with asyncio.timeout(spec.step_timeout) as timeout:
        reader, writer = await asyncio.open_connection(spec.host, spec.port, limit=LINE_LIMIT)
        smtp = _Conversation(reader, writer, timeout, spec.step_timeout)
        try:
            if (code := await smtp.reply()) != 220:
                raise SmtpReplyError("greeting", code)
            await smtp.command(f"EHLO {spec.helo_name}\r\n".encode(), "ehlo")
            for i, n in enumerate(numbers):
                ident = bench_id(spec.run_id, n)
                if i > 0:
                    started, started_coarse = time.time(), coarse_now()
                record = MessageRecord(ident, started, started_coarse)
                result.records.append(record)
                await smtp.command(f"MAIL FROM:<{spec.sender}>\r\n".encode(), "mail")
                await smtp.command(f"RCPT TO:<{spec.recipient}>\r\n".encode(), "rcpt")
                await smtp.command(b"DATA\r\n", "data", expect=3)
                await smtp.command(message_bytes(spec, ident) + b".\r\n", "dot")
                record.accepted = time.time()
                on_accept()
            writer.write(b"QUIT\r\n")
            await smtp.reply()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                timeout.reschedule(asyncio.get_running_loop().time() + spec.step_timeout)
                await writer.wait_closed()


async def generate_load(
    spec: LoadSpec,
    on_accept: Callable[[], None] = lambda: None,
    on_error: Callable[[], None] = lambda: None,
) -> LoadResult:
    """Send spec.messages messages; errors are counted by kind, never raised."""
    batches = [
        list(range(i, min(i + spec.per_connection, spec.messages)))
        for i in range(0, spec.messages, spec.per_connection)
    ]
    queue: asyncio.Queue[list[int]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)
    result = LoadResult(started=time.time())

    async def worker() -> None:
        while True:
            try:
                batch = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                await _session(spec, batch, result, on_accept)
            except SmtpReplyError as e:
                result.error(f"{e.stage} {e.code}")
                on_error()
            except TimeoutError:
                result.error("timeout")
                on_error()
            except OSError as e:
                result.error(type(e).__name__)
                on_error()

    workers = [asyncio.create_task(worker()) for _ in range(min(spec.concurrency, len(batches)))]
    _, pending = await asyncio.wait(workers, timeout=spec.deadline)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=spec.step_timeout)
        result.error("run deadline")
    result.finished = time.time()
    return result
