"""simmta.core.smtpserver's own shortcuts give exactly aiosmtpd's answers.

The plain-path fast parser must return what aiosmtpd's (stdlib-based) parser
returns for every input it takes, and leave every other input to it.
"""

import asyncio
import collections
from types import SimpleNamespace

import pytest
from aiosmtpd.smtp import SMTP

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
