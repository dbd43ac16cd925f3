"""simmta.core.smtpserver's own shortcuts give exactly aiosmtpd's answers.

The plain-path fast parser must return what aiosmtpd's (stdlib-based) parser
returns for every input it takes, and leave every other input to it.
"""

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
