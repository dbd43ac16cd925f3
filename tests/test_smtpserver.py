"""simmta.core.smtpserver's own shortcuts give exactly aiosmtpd's answers.

The plain-path fast parser must return what aiosmtpd's (stdlib-based) parser
returns for every input it takes, and leave every other input to it.
"""

import asyncio
import collections
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from aiosmtpd.smtp import SMTP, auth_mechanism

from simmta.core import smtpserver
from simmta.core.smtpserver import Handler, InstrumentedSMTP

PATHS = [
    "<bob@simmta.test>",
    "<bob@simmta.test> SIZE=2048",
    "<bob@simmta.test>  BODY=8BITMIME SIZE=1",
    "<a.b+c_d=e@x-y.z>",
    "<A!#$%&'*+/=?^_`{|}~-@EXAMPLE.NET>",
    "<bob@simmta.test>x",
    "<bob@simmta.test>\tSIZE=1",
    "<bob@simmta.test>(comment) SIZE=1",
    "<bob@simmta.test>  ",
    "< bob@simmta.test>",
    "<a..b@x>",
    "<.a@x>",
    "<a.@x>",
    "<a@x.>",
    "<a@.x>",
    '<"a b"@x>',
    "<a@[127.0.0.1]>",
    "<@relay.test:a@b>",
    "<a@b@c>",
    "<a b@c>",
    "<>",
    "<a@b",
    "a@b>",
    "bob@simmta.test",
    "<bob@simmta.test>\x00",
    "<bob@simmta.test> \x00",
    "<ünï@x>",
    "<a@ü.x>",
]


def aiosmtpd_parse(arg: str) -> tuple[str | None, str | None]:
    try:
        return SMTP._getaddr(SimpleNamespace(local_part_limit=0), arg)  # type: ignore[arg-type]
    except Exception:
        return None, None


@pytest.mark.parametrize("arg", PATHS)
def test_plain_path_fast_parse_agrees_with_aiosmtpd(arg: str) -> None:
    fast = smtpserver._PLAIN_PATH.match(arg)
    if fast:
        assert (fast.group(1), fast.group(2) or "") == aiosmtpd_parse(arg)


def test_the_fast_path_takes_the_common_case() -> None:
    assert smtpserver._PLAIN_PATH.match("<bob@simmta.test> SIZE=2048")
    assert not smtpserver._PLAIN_PATH.match('<"a b"@x>')


def test_dir_lists_every_hook_aiosmtpd_looks_for() -> None:
    class Probe(Handler):
        async def handle_DATA(self) -> None: ...
        def helper(self) -> None: ...

    assert dir(Probe()) == ["handle_DATA"]
    hooks = {n for n in dir(InstrumentedSMTP) if n.startswith(("smtp_", "auth_"))}
    assert set(smtpserver._HOOKS) == hooks and "smtp_EHLO" in hooks and "auth_PLAIN" in hooks


DATA_STREAMS = [
    b"Subject: a\r\n\r\nline one\r\n..dot-stuffed\r\n\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n",
    b".\r\nQUIT\r\n",  # an empty message
    b"a bare\nLF inside\r\nnext\r\n.\r\n",
    b"a bare\rCR inside\r\nnext\r\n.\r\n",
    b"short\r\n" + b"x" * 40 + b"\r\nafter\r\n.\r\n",  # a line over the limit, after a good one
    b"y" * 32 + b"\r\n" + b"z" * 33 + b"\r\n.\r\n",  # at the limit, and one past it
    b"no end yet\r\nstill\r\n",  # the client is still sending (EOF here)
]


async def _data_lines(stream: bytes, chunk: int, split_ahead: bool) -> list[object]:
    """What DATA's readuntil(CRLF) calls return, with or without the split ahead, fed in chunks."""
    limit = 32
    reader = asyncio.StreamReader(limit=limit)

    async def feed() -> None:
        for i in range(0, len(stream), chunk):
            reader.feed_data(stream[i : i + chunk])
            await asyncio.sleep(0)
        reader.feed_eof()

    feeder = asyncio.ensure_future(feed())
    ready: collections.deque[bytes] = collections.deque()
    got: list[object] = []
    while True:
        if ready:
            line = ready.popleft()
        else:
            try:
                line = await reader.readuntil(b"\r\n")
            except (asyncio.LimitOverrunError, asyncio.IncompleteReadError) as e:
                got.append(type(e).__name__)
                break
            if split_ahead and line != b".\r\n":
                smtpserver._split_ahead(reader, ready, limit)
        got.append(line)
        if line == b".\r\n":
            break
    await feeder
    return [*got, bytes(reader._buffer)]  # and what is left for the commands after DATA


@pytest.mark.parametrize("stream", DATA_STREAMS)
@pytest.mark.parametrize("chunk", [1, 5, 4096])
def test_data_lines_split_ahead_are_the_lines_readuntil_gives(stream: bytes, chunk: int) -> None:
    plain = asyncio.run(_data_lines(stream, chunk, split_ahead=False))
    assert asyncio.run(_data_lines(stream, chunk, split_ahead=True)) == plain


class Events:
    """A Context stand-in: InstrumentedSMTP only emits."""

    def __init__(self) -> None:
        self.records: list[object] = []

    def emit(self, record: object, qid: object = None, sid: object = None) -> None:
        self.records.append(record)


class AuthHandler(Handler):
    """A handler with hooks and AUTH mechanisms of its own, one renamed, one overriding a builtin."""

    async def handle_NOOP(self, server: object, session: object, envelope: object, arg: str) -> str:
        return f"250 OK noop {arg}"

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK got it"

    async def auth_CRAM__MD5(self, server: object, args: list[str]) -> None: ...

    @auth_mechanism("X-TOKEN")
    async def auth_token(self, server: object, args: list[str]) -> None: ...

    async def auth_LOGIN(self, server: object, args: list[str]) -> None: ...


def _make(handler: Handler, **kwargs: object) -> InstrumentedSMTP:
    return InstrumentedSMTP(
        handler,
        Events(),  # type: ignore[arg-type]
        line_length_limit=2048,
        soft_errors=3,
        hard_errors=20,
        error_sleep=0,
        junk_limit=100,
        **kwargs,  # type: ignore[arg-type]
    )


SCRIPT = [
    b"HELO before.ehlo",
    b"AUTH PLAIN AGJvYgBzZWNyZXQ=",
    b"EHLO client.example",
    b"HELP",
    b"HELP AUTH",
    b"HELP MAIL",
    b"AUTH PLAIN AGJvYgBzZWNyZXQ=",
    b"AUTH X-TOKEN abc",
    b"NOOP hello",
    b"MAIL FROM:<alice@example.org> SIZE=100",
    b"RCPT TO:<bob@simmta.test>",
    b"DATA",
    b"Subject: hi\r\n\r\nbody\r\n.",
    b"BOGUS",
    b"QUIT",
]


async def _transcript() -> list[bytes]:
    """Each reply to SCRIPT from a real InstrumentedSMTP server on loopback."""
    handler = AuthHandler()
    return await _replies(lambda: _make(handler, hostname="mx.simmta.test", ident="simmta"), SCRIPT)


async def _replies(make_protocol: Callable[[], SMTP], script: list[bytes]) -> list[bytes]:
    """The greeting and each reply to ``script`` from a real server on a loopback ephemeral port."""
    server = await asyncio.get_running_loop().create_server(make_protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies: list[bytes] = []

    async def reply() -> None:
        lines = [await reader.readline()]
        while lines[-1][3:4] == b"-":
            lines.append(await reader.readline())
        replies.append(b"".join(lines))

    await reply()  # the greeting
    for line in script:
        writer.write(line + b"\r\n")
        await reply()
    writer.close()
    server.close()
    await server.wait_closed()
    return replies


def test_a_real_server_answers_the_script() -> None:
    by_line = dict(zip([b"greeting", *SCRIPT], asyncio.run(_transcript()), strict=True))
    assert by_line[b"greeting"].startswith(b"220 mx.simmta.test simmta")
    assert by_line[b"EHLO client.example"] == (
        b"250-mx.simmta.test\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 HELP\r\n"
    )
    assert by_line[b"AUTH PLAIN AGJvYgBzZWNyZXQ="].startswith(b"538 5.7.11 ")  # no AUTH without TLS
    assert by_line[b"NOOP hello"] == b"250 2.0.0 OK noop hello\r\n"
    assert by_line[b"Subject: hi\r\n\r\nbody\r\n."] == b"250 2.0.0 OK got it\r\n"


SYNTAX = ("__smtp_syntax__", "__smtp_syntax_extended__", "__smtp_syntax_when__")


def test_the_wrapped_commands_keep_aiosmtpds_syntax_attributes() -> None:
    """aiosmtpd's HELP reads ``@syntax`` off each smtp_ method: simmta's wrappers carry it over."""
    for name in (n for n in dir(SMTP) if n.startswith("smtp_")):
        ours, theirs = getattr(InstrumentedSMTP, name), getattr(SMTP, name)
        assert ours is not theirs, f"{name} is wrapped (transcript, junk limit)"
        for attr in SYNTAX:
            assert getattr(ours, attr, None) == getattr(theirs, attr, None), (name, attr)
    assert InstrumentedSMTP.smtp_MAIL.__smtp_syntax__ == "MAIL FROM: <address>"  # type: ignore[attr-defined]
    assert InstrumentedSMTP.smtp_STARTTLS.__smtp_syntax_when__ == "tls_context"  # type: ignore[attr-defined]


HELP_AND_SYNTAX = [
    b"HELP",  # before HELO: aiosmtpd allows it
    b"HELO client.example",
    b"HELP MAIL",  # plain SMTP: no mail-parameters
    b"MAIL FROM:<alice@example.org> SIZE=100",  # parameters need EHLO
    b"EHLO client.example",
    b"HELP",
    b"HELP MAIL",
    b"help rcpt",
    b"HELP STARTTLS",  # not available without TLS
    b"HELP EXPN",  # not implemented
    b"HELP BOGUS",
    b"MAIL",
    b"MAIL TO:<alice@example.org>",
    b"MAIL FROM:",
    b"MAIL FROM:<alice@example.org> SIZE=abc",
    b"MAIL FROM:<alice@example.org> =1",
    b"MAIL FROM:<alice@example.org>",
    b"RCPT",
    b"RCPT FROM:<bob@simmta.test>",
    b"RCPT TO:",
    b"RCPT TO:<bob@simmta.test> =1",
    b"QUIT",
]
SUPPORTED = b"AUTH DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET VRFY"


def test_help_and_syntax_errors_are_aiosmtpds_with_enhanced_codes() -> None:
    """The peer keeps aiosmtpd's HELP (a real list) and its 501 Syntax replies, codes added."""

    async def both() -> tuple[list[bytes], list[bytes]]:
        handler = AuthHandler()
        ours = await _replies(lambda: _make(handler, ident="simmta"), HELP_AND_SYNTAX)
        theirs = await _replies(lambda: SMTP(handler, ident="simmta"), HELP_AND_SYNTAX)
        return ours, theirs

    ours, theirs = asyncio.run(both())
    replies = list(zip(HELP_AND_SYNTAX, ours[1:], theirs[1:], strict=True))  # (a line twice: both)
    for line, reply, aiosmtpds in replies:
        if not line.startswith((b"EHLO", b"HELO")):  # RFC 2034: no codes there (EHLO tested above)
            assert reply == smtpserver.enhance(aiosmtpds.decode().rstrip("\r\n")).encode() + b"\r\n", line
    said = [(line, reply) for line, reply, _ in replies]
    listed = b"250 2.0.0 Supported commands: " + SUPPORTED + b"\r\n"
    assert said[0] == (b"HELP", listed), "before HELO"
    assert said[2] == (b"HELP MAIL", b"250 2.0.0 Syntax: MAIL FROM: <address>\r\n"), "plain SMTP"
    assert said[3][1] == b"501 5.5.4 Syntax: MAIL FROM: <address>\r\n", "parameters need EHLO"
    esmtp = dict(said[5:])
    assert esmtp[b"HELP"] == listed
    assert esmtp[b"HELP MAIL"] == b"250 2.0.0 Syntax: MAIL FROM: <address> [SP <mail-parameters>]\r\n"
    assert esmtp[b"help rcpt"] == b"250 2.0.0 Syntax: RCPT TO: <address> [SP <mail-parameters>]\r\n"
    for line in (b"HELP STARTTLS", b"HELP EXPN", b"HELP BOGUS"):
        assert esmtp[line] == b"501 5.5.4 Supported commands: " + SUPPORTED + b"\r\n", line
    for line, reply in said[HELP_AND_SYNTAX.index(b"MAIL") : -1]:
        if line == b"MAIL FROM:<alice@example.org>":
            assert reply.startswith(b"250 "), line
        else:
            verb = b"MAIL FROM:" if line.startswith(b"MAIL") else b"RCPT TO:"
            assert reply == b"501 5.5.4 Syntax: " + verb + b" <address> [SP <mail-parameters>]\r\n", line


POSTFIX_HELP = b"214 2.0.0 Commands: DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET VRFY\r\n"


def test_postfix_help_lists_the_commands_whatever_the_argument_and_counts_nothing() -> None:
    """Postfix 3.9+'s HELP (smtpd.c help_cmd): ``214 2.0.0 Commands:`` and every command it
    implements, sorted, for any argument, at any time; not junk, not an error. AUTH is not
    listed: no mechanism can succeed without TLS (Postfix without SASL leaves it out too)."""
    protos: list[InstrumentedSMTP] = []
    script = [b"HELP", b"EHLO client.example", b"HELP", b"HELP MAIL", b"help bogus", b"HELP  ", b"NOOP"]

    def make() -> InstrumentedSMTP:
        protos.append(_make(AuthHandler(), postfix_help=True))
        return protos[-1]

    replies = asyncio.run(_replies(make, script))
    for line, reply in zip(script, replies[1:], strict=True):
        if line.upper().startswith(b"HELP"):
            assert reply == POSTFIX_HELP, line
    assert replies[-1].startswith(b"250 "), "NOOP"
    [proto] = protos
    assert (proto.errors, proto.junk) == (0, 1), "HELP counts neither as an error nor as junk"
