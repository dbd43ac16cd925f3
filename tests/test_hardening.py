"""smtpd harder to abuse than Postfix's defaults (issue 15), over raw sockets.

The client is 127.0.0.2, outside mynetworks, unless a test says otherwise:
unknown local recipients are refused at RCPT (no backscatter), hostile local
parts are never a path and never relayed, ``<Postmaster>`` is accepted in any
case, every RCPT counts against smtpd_recipient_limit, bare-LF command lines
and NUL in content are refused by default, and MAIL/RCPT need angle brackets.
"""

import json
import re
from collections.abc import Iterator

import pytest
from mtakit import FAST_CONFIG, Mta, wait_for
from test_limits import Raw, healthy, queue_empty, running, wait_subject, with_subject

OUTSIDE = "127.0.0.2"
UNKNOWN = "Recipient address rejected: User unknown in local recipient table"


@pytest.fixture(scope="module")
def mta() -> Iterator[Mta]:
    with running(
        "hardening", FAST_CONFIG + "smtpd_hard_error_limit = 100\nsmtpd_soft_error_limit = 100\n"
    ) as m:
        yield m


def session(mta: Mta, source: str = OUTSIDE) -> Raw:
    s = Raw(mta, source=source)
    assert s.cmd("EHLO outsider.example")[0] == 250
    assert s.cmd("MAIL FROM:<someone@example.org>")[0] == 250
    return s


def test_unknown_local_user_refused_at_rcpt_550_5_1_1(mta: Mta) -> None:
    with session(mta) as s:
        code, text = s.cmd("RCPT TO:<nobody@simmta.test>")
        assert (code, text) == (550, f"5.1.1 <nobody@simmta.test>: {UNKNOWN}")
        assert s.cmd("RCPT TO:<Bob+lists@SIMMTA.test>")[0] == 250, "a listed user, with extension"
        assert s.cmd("RCPT TO:<root@simmta.test>")[0] == 250, "an alias"
    wait_for(lambda: queue_empty(mta), what="an empty queue")
    assert not mta.queue_files("deferred")


@pytest.mark.parametrize(
    "rcpt",
    [
        "someone%elsewhere.example@simmta.test",
        '"someone@elsewhere.example"@simmta.test',
        "elsewhere.example!someone@simmta.test",
        "../x@simmta.test",
        "a/b@simmta.test",
        '"/x"@simmta.test',
        "alice/../bob@simmta.test",
        "postmaster/x@simmta.test",
    ],
)
@pytest.mark.parametrize("source", [OUTSIDE, "127.0.0.1"])
def test_hostile_local_parts_refused_at_rcpt(mta: Mta, rcpt: str, source: str) -> None:
    with session(mta, source) as s:
        code, text = s.cmd(f"RCPT TO:<{rcpt}>")
        assert code in (550, 554), (rcpt, code, text)
        assert text.startswith(("5.1.1 ", "5.7.1 ")) and ("Relay access denied" in text or UNKNOWN in text)
        if source == "127.0.0.1":
            assert code == 550, "a trusted client is not relaying: the local part names nobody"


@pytest.mark.parametrize("rcpt", ["<Postmaster>", "<POSTMASTER>", "<postmaster>"])
def test_postmaster_without_domain_any_case_is_delivered_to_the_alias(mta: Mta, rcpt: str) -> None:
    subject = f"to {rcpt}"
    with session(mta) as s:
        assert s.cmd(f"RCPT TO:{rcpt}") == (250, "2.1.5 Ok")
        assert s.cmd("DATA")[0] == 354
        assert s.cmd(f"Subject: {subject}\r\n\r\nhi\r\n.\r\n".encode())[0] == 250
    msg = wait_subject(mta.maildir("alice"), subject)
    assert msg["Delivered-To"].lower() == "postmaster@simmta.test"


def test_postmaster_and_mailer_daemon_exempt_even_when_not_listed(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    config = FAST_CONFIG + 'local_recipient_maps = ["local_users"]\n'
    with running("maps", config) as m, session(m) as s:
        assert s.cmd("RCPT TO:<root@simmta.test>")[0] == 550, "root is only in alias_maps"
        assert s.cmd("RCPT TO:<postmaster@simmta.test>")[0] == 250
        assert s.cmd("RCPT TO:<MAILER-DAEMON@simmta.test>")[0] == 250
        assert s.cmd("RCPT TO:<carol@simmta.test>")[0] == 250


def test_unlisted_accepted_when_the_check_is_off_but_hostile_forms_are_not() -> None:
    config = FAST_CONFIG + "smtpd_reject_unlisted_recipient = false\n"
    with running("unlisted", config) as m, session(m) as s:
        assert s.cmd("RCPT TO:<nobody@simmta.test>")[0] == 250  # accepted, bounced later
        assert s.cmd("RCPT TO:<../x@simmta.test>")[0] == 550
        assert s.cmd("RCPT TO:<victim%example.net@simmta.test>")[0] == 554


def test_every_rcpt_counts_against_the_recipient_limit() -> None:
    with running("rcptlimit", FAST_CONFIG + "smtpd_recipient_limit = 5\n") as m, session(m) as s:
        answers = [s.cmd("RCPT TO:<bob@simmta.test>") for _ in range(6)]
        assert [c for c, _ in answers] == [250] * 5 + [452]
        assert answers[-1][1] == "4.5.3 Error: too many recipients"
        assert s.cmd("DATA")[0] == 354
        assert s.cmd(b"Subject: five times bob\r\n\r\nx\r\n.\r\n")[0] == 250
        wait_subject(m.maildir("bob"), "five times bob")
        wait_for(lambda: queue_empty(m), what="an empty queue")
        assert len(with_subject(m.maildir("bob"), "five times bob")) == 1


def test_a_bare_lf_command_is_refused_from_outside(mta: Mta) -> None:
    with Raw(mta, source=OUTSIDE) as s:
        s.send(b"NOOP\n")
        assert s.reply() == (550, ["5.5.2 Error: bare <LF> received"])
        assert s.cmd("NOOP")[0] == 250


def test_bare_lf_in_data_is_refused_from_outside(mta: Mta) -> None:
    with session(mta) as s:
        assert s.cmd("RCPT TO:<bob@simmta.test>")[0] == 250
        assert s.cmd("DATA")[0] == 354
        code, text = s.cmd(b"Subject: smuggled\r\n\r\na\nX-Evil: b\r\n.\r\n")
        assert (code, text) == (550, "5.5.2 Error: bare <LF> received")


def test_mynetworks_is_excluded_from_the_bare_lf_refusal(mta: Mta) -> None:
    with Raw(mta, source="127.0.0.1") as s:
        s.send(b"NOOP\n")
        assert s.reply()[0] == 250


def test_normalize_accepts_bare_lf_commands_from_anyone() -> None:
    config = FAST_CONFIG + 'smtpd_forbid_bare_newline = "normalize"\n'
    with running("normalize", config) as m, Raw(m, source=OUTSIDE) as s:
        s.send(b"NOOP\n")
        assert s.reply()[0] == 250


def test_nul_in_content_is_refused_550_5_6_0(mta: Mta) -> None:
    with session(mta) as s:
        assert s.cmd("RCPT TO:<bob@simmta.test>")[0] == 250
        assert s.cmd("DATA")[0] == 354
        code, text = s.cmd(b"Subject: nul\r\n\r\na\x00b\r\n.\r\n")
        assert (code, text) == (550, "5.6.0 Error: message content contains illegal characters")
        assert s.cmd("NOOP")[0] == 250
    healthy(mta, "after nul")
    assert not with_subject(mta.maildir("bob"), "nul")


def test_nul_stripped_when_configured() -> None:
    config = FAST_CONFIG + 'message_reject_characters = ""\nmessage_strip_characters = "\\\\0"\n'
    with running("strip", config) as m, session(m) as s:
        assert s.cmd("RCPT TO:<bob@simmta.test>")[0] == 250
        assert s.cmd("DATA")[0] == 354
        assert s.cmd(b"Subject: stripped\r\n\r\na\x00b\r\n.\r\n")[0] == 250
        wait_subject(m.maildir("bob"), "stripped")
        [path] = [p for p in (m.maildir("bob") / "new").iterdir()]
        assert b"\x00" not in path.read_bytes() and b"\nab\n" in path.read_bytes()


def test_envelopes_without_angle_brackets_get_postfix_strict_replies(mta: Mta) -> None:
    with Raw(mta, source=OUTSIDE) as s:
        s.cmd("EHLO outsider.example")
        assert s.cmd("MAIL FROM:alice@simmta.test") == (501, "5.1.7 Bad sender address syntax")
        assert s.cmd("MAIL FROM: <alice@simmta.test>")[0] == 250
        assert s.cmd("RCPT TO:bob@simmta.test") == (501, "5.1.3 Bad recipient address syntax")
        assert s.cmd("RCPT TO:<bob@simmta.test>")[0] == 250


def test_malformed_mail_and_rcpt_get_501_syntax_never_an_internal_error(mta: Mta) -> None:
    """aiosmtpd's syntax replies (their text is its own, not its HELP's ``@syntax``); a bare
    MAIL or RCPT has no argument at all and was a 451 4.3.0 internal error. (Postfix says
    ``501 5.5.4 Syntax: MAIL FROM:<address>``; simmta keeps aiosmtpd's wording.)"""
    mail = (501, "5.5.4 Syntax: MAIL FROM: <address> [SP <mail-parameters>]")
    rcpt = (501, "5.5.4 Syntax: RCPT TO: <address> [SP <mail-parameters>]")
    with Raw(mta, source=OUTSIDE) as s:
        s.cmd("EHLO outsider.example")
        for line in (
            "MAIL",
            "MAIL TO:<a@b.test>",
            "MAIL FROM:<a@b.test> SIZE=abc",
            "MAIL FROM:<a@b.test> =1",
        ):
            assert s.cmd(line) == mail, line
        assert s.cmd("MAIL FROM:<alice@simmta.test>")[0] == 250
        for line in ("RCPT", "RCPT FROM:<bob@simmta.test>", "RCPT TO:<bob@simmta.test> =1"):
            assert s.cmd(line) == rcpt, line
        assert s.cmd("RCPT TO:<bob@simmta.test>")[0] == 250
    with Raw(mta, source=OUTSIDE) as s:
        s.cmd("HELO outsider.example")  # plain SMTP: no parameters, and the reply says so
        assert s.cmd("MAIL") == (501, "5.5.4 Syntax: MAIL FROM: <address>")
        assert s.cmd("MAIL FROM:<a@b.test> SIZE=1") == (501, "5.5.4 Syntax: MAIL FROM: <address>")


def test_a_killed_agent_defers_visibly_and_flush_delivers_it_now(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Postfix's backoff after an agent crash, said where people look; `simmta flush` ends the wait."""
    config = (
        FAST_CONFIG.replace('minimal_backoff_time = "1s"', 'minimal_backoff_time = "5m"')
        .replace('maximal_backoff_time = "2s"', 'maximal_backoff_time = "10m"')
        .replace('queue_run_delay = "1s"', 'queue_run_delay = "10m"')
    )
    with running("flush", config) as m:
        log = m.subscribe()
        m.simmta("ctl", "crash", "local", "before-link")
        qid = m.send(to="bob@simmta.test", subject="agent crash")
        wait_for(lambda: qid in m.queue_files("deferred"), what="the message deferred")
        [item] = [json.loads(line) for line in m.simmta("queue", "--json").stdout.splitlines()]
        reason = item["recipients"][0]["delay_reason"]
        assert re.fullmatch(r"local agent crashed: deferred, retry in [45]m\d\ds", reason), reason
        [deferred] = wait_for(lambda: log.find(kind="queue", type="deferred", qid=qid), what="the event")
        assert deferred["data"]["reason"] == reason
        assert "agent crashed: deferred, retry in" in " ".join(m.simmta("queue").stdout.split())
        out = m.simmta("flush").stdout
        assert "1 deferred message(s) due now" in out, out
        wait_subject(m.maildir("bob"), "agent crash", timeout=20)
        wait_for(lambda: log.find(kind="queue", type="flush"), what="the flush event")


def test_stray_cr_never_reaches_the_next_hop() -> None:
    """Even with cleanup_replace_stray_cr_lf off (the CR kept in the queue file), the smtp
    client replaces it before relaying; with it on (the default) local mail has none either."""
    payload = b"a\rMAIL FROM:<evil@example.org>\rRCPT TO:<victim@example.net>\r.\rb"
    with running("straycr", FAST_CONFIG + "cleanup_replace_stray_cr_lf = false\n") as m:
        m.simmta(
            "sendmail",
            "-f",
            "alice@simmta.test",
            "friend@example.net",
            input=b"Subject: stray cr\n\n" + payload + b"\n",
        )
        wait_subject(m.peer_maildir, "stray cr")
        [relayed] = [p.read_bytes() for p in (m.peer_maildir / "new").iterdir()]
        assert b"\r" not in relayed.replace(b"\r\n", b"")
        assert b"a MAIL FROM:<evil@example.org> RCPT TO:<victim@example.net> . b" in relayed
        assert len(list((m.peer_maildir / "new").iterdir())) == 1


def test_stray_cr_in_data_becomes_a_space_by_default(mta: Mta) -> None:
    with Raw(mta, source="127.0.0.1") as s:
        s.cmd("EHLO client.example")
        assert s.cmd("MAIL FROM:<alice@simmta.test>")[0] == 250
        assert s.cmd("RCPT TO:<carol@simmta.test>")[0] == 250
        assert s.cmd("DATA")[0] == 354
        assert s.cmd(b"Subject: cr in data\r\n\r\nx\ry\r\n.\r\n")[0] == 250
    wait_subject(mta.maildir("carol"), "cr in data")
    [body] = [b for p in (mta.maildir("carol") / "new").iterdir() if b"cr in data" in (b := p.read_bytes())]
    assert b"\nx y\n" in body and b"\r" not in body


def test_an_overlong_line_is_one_limit_event_however_long(mta: Mta) -> None:
    log = mta.subscribe()
    with session(mta) as s:
        assert s.cmd(b"NOOP " + b"x" * 300_000 + b"\r\n")[0] == 500
        assert s.cmd("RCPT TO:<bob@simmta.test>")[0] == 250
        assert s.cmd("DATA")[0] == 354
        assert s.cmd(b"Subject: long\r\n\r\n" + b"y" * 300_000 + b"\r\n.\r\n")[0] == 554
    closed = wait_for(lambda: log.find(kind="smtp", type="close"), what="the session's end")
    limits = log.find(kind="smtp", type="limit", sid=closed[0]["sid"])
    assert [e["data"]["code"] for e in limits] == ["500 5.5.0", "554 5.6.0"]


def test_one_client_cannot_take_every_smtpd() -> None:
    """smtpd_client_connection_count_limit, shared by all smtpd processes (Postfix's anvil)."""
    with running("anvil", FAST_CONFIG + "smtpd_client_connection_count_limit = 3\n") as m:
        held = [Raw(m, source=OUTSIDE) for _ in range(3)]
        try:
            assert all(s.greeting[0] == 220 for s in held)
            with Raw(m, source=OUTSIDE) as fourth:
                too_many = f"4.7.0 mx.simmta.test Error: too many connections from {OUTSIDE}"
                assert fourth.greeting == (421, [too_many])
                assert fourth.eof()
            with Raw(m, source="127.0.0.3") as other:
                assert other.greeting[0] == 220, "another client is not counted with it"
            with Raw(m, source="127.0.0.1") as trusted:
                assert trusted.greeting[0] == 220, "mynetworks is exempt"
            held.pop().close()

            def admitted() -> bool:
                with Raw(m, source=OUTSIDE) as again:
                    return again.greeting[0] == 220

            wait_for(admitted, what="the closed session's slot to be free again")
        finally:
            for s in held:
                s.close()
        assert len(list((m.instance / "queue" / "anvil").iterdir())) <= 3
