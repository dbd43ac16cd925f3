"""Architecture profiles: the processes and uids /proc shows are the ones the table says,
and the uid block of each instance is nobody else's."""

import os
import time
from pathlib import Path

import pytest
from mtakit import FAST_CONFIG, Mta, maildir_files, needs_root, wait_for

from simmta.core import services
from simmta.core.errors import ConfigError


def observed(mta: Mta, log, service: str) -> dict:
    """What master read from /proc/<pid>/status for a process of ``service``: in the
    snapshot for one already running when we subscribed, else in a later event."""

    def find() -> dict | None:
        for e in log.find(kind="snapshot"):
            for p in e["data"]["processes"]:
                if p["service"] == service and p["privilege"]:
                    return {**p["privilege"], "mismatch": p["mismatch"]}
        later = log.find(kind="privilege", type="observed", data_observed_service=service)
        return later[0]["data"] if later else None

    return wait_for(find, 20, f"{service} to be observed")


def brief(seen: dict[str, dict]) -> dict[str, tuple]:
    return {s: (o["uid"], o["root"], o["mismatch"]) for s, o in seen.items()}


def every_service_observed(mta: Mta) -> dict[str, dict]:
    log = mta.subscribe()
    with mta.smtp() as s:  # a session open: the SMTP process exists while we look
        s.ehlo("client.example")
        observed(mta, log, "smtpd")
    mta.send(to="bob@simmta.test")
    mta.send(to="someone@example.net")
    wait_for(
        lambda: maildir_files(mta.maildir("bob")) and maildir_files(mta.peer_maildir),
        30,
        "local delivery and relay",
    )
    table = services.load(None, mta.profile)
    embedded = {e for svc in table for e in svc.embeds}  # done inside another process
    seen = {
        s: observed(mta, log, s) for s in ("smtpd", "cleanup", "qmgr", "local", "smtp") if s not in embedded
    }
    # local keeps root but writes each Maildir with the recipient's effective uid: caught
    # mid-write it shows that uid, so only its real uid is checked.
    assert seen["local"]["uid"][0] == 0
    seen["local"] = {**seen["local"], "uid": [0] * 4, "mismatch": []}
    return seen


@pytest.fixture
def profile_mta(request: pytest.FixtureRequest, instance_dir: Path):
    needs_root()
    m = Mta(instance_dir, profile=request.param)
    try:
        yield m
    finally:
        m.stop()


@pytest.mark.parametrize("profile_mta", ["qmail"], indirect=True)
def test_qmail_runs_each_program_as_its_own_account(profile_mta: Mta) -> None:
    mta = profile_mta
    seen = every_service_observed(mta)
    uid = mta.uid_of
    assert seen["smtpd"]["uid"] == [uid("qmaild")] * 4
    # qmail-queue, set-uid qmailq, as the kernel runs a set-uid program qmail-smtpd started
    assert seen["cleanup"]["uid"] == [uid("qmaild"), uid("qmailq"), uid("qmailq"), uid("qmailq")]
    assert seen["qmgr"]["uid"] == [uid("qmails")] * 4
    assert seen["smtp"]["uid"] == [uid("qmailr")] * 4
    root = [s for s, o in seen.items() if 0 in o["uid"]]
    assert root == ["local"], "qmail-lspawn is the profile's only root process"
    assert all(o["root"] == "/" and o["mismatch"] == [] for o in seen.values()), brief(seen)
    assert len({u for o in seen.values() for u in o["uid"]}) == 5


@pytest.mark.parametrize("profile_mta", ["sendmail"], indirect=True)
def test_sendmail_parses_smtp_as_root(profile_mta: Mta) -> None:
    seen = every_service_observed(profile_mta)
    assert "cleanup" not in seen, "the SMTP child writes the queue file itself"
    assert all(o["uid"] == [0] * 4 and o["root"] == "/" and o["mismatch"] == [] for o in seen.values()), (
        brief(seen)
    )
    assert seen["smtpd"]["caps"] == "full"


@pytest.mark.parametrize("profile_mta", ["postfix"], indirect=True)
def test_postfix_jails_its_smtpd(profile_mta: Mta) -> None:
    seen = every_service_observed(profile_mta)
    assert seen["smtpd"]["uid"] == [profile_mta.mail_owner] * 4
    assert seen["smtpd"]["root"] == str((profile_mta.instance / "queue").resolve())
    assert [s for s, o in seen.items() if 0 in o["uid"]] == ["local"]


def test_two_instances_never_share_a_uid(simmta_tmp: Path) -> None:
    needs_root()
    first = Mta(simmta_tmp / "a", profile="qmail")
    try:
        second = Mta(simmta_tmp / "b", profile="qmail")
        try:
            a = {u for u, _ in first.status["ids"].values()} - {0} | set(first.users.values())
            b = {u for u, _ in second.status["ids"].values()} - {0} | set(second.users.values())
            assert not a & b
        finally:
            second.stop()
        # With a fixed block the clash is refused, and named.
        fixed = (
            FAST_CONFIG + f'uid_allocation = "fixed"\nmail_owner_uid = {first.mail_owner}\n'
            f"mail_owner_gid = {first.status['ids']['mail_owner'][1]}\n"
            + "local_users = {"
            + ", ".join(f"{u} = {i}" for u, i in first.users.items())
            + "}\n"
        )
        with pytest.raises(AssertionError, match="another running simmta instance uses"):
            Mta(simmta_tmp / "c", config=fixed)
    finally:
        first.stop()


def test_a_host_account_uid_is_refused(instance_dir: Path) -> None:
    needs_root()
    host_uid = os.getuid()  # root's own account is surely in /etc/passwd: take another
    import pwd

    taken = next(p for p in pwd.getpwall() if p.pw_uid not in (0, host_uid) and p.pw_uid > 1)
    config = FAST_CONFIG + f'uid_allocation = "fixed"\nmail_owner_uid = {taken.pw_uid}\n'
    with pytest.raises(AssertionError, match=f"host account '{taken.pw_name}'"):
        Mta(instance_dir, config=config)


def test_profiles_load_and_name_their_accounts() -> None:
    qmail = services.load(None, "qmail")
    assert qmail["cleanup"].program == "qmail-queue" and qmail["cleanup"].setuid == "qmailq"
    assert qmail.find("qmail-smtpd") is qmail["smtpd"]
    assert qmail.internet_facing().program == "qmail-smtpd"
    assert services.load(None, "sendmail").internet_facing().account == "root"
    with pytest.raises(ConfigError, match="unknown profile"):
        services.load(None, "exim")


def test_an_unknown_account_is_named(tmp_path: Path) -> None:
    p = tmp_path / "services.toml"
    text = (Path(services.__file__).parent.parent / "data" / "profiles" / "qmail.toml").read_text()
    p.write_text(text.replace('user = "qmailr"', 'user = "qmailx"'))
    with pytest.raises(ConfigError, match="unknown account 'qmailx'") as e:
        services.load(p)
    assert "services.toml" in str(e.value) and "service.user" in str(e.value)


def test_a_restarted_instance_keeps_its_uid_block(simmta_tmp: Path) -> None:
    """Its queue files and mailboxes belong to its uids: a restart must not move them
    (it did when the block it had moved off had become free meanwhile).

    The block lies where no other instance on the machine looks for uids (other test
    runs start at 61000): the first free block from its start is then known, so a
    restart that searched again instead of taking its own block would land on it."""
    needs_root()
    base = 3_100_000 + (os.getpid() % 4096) * 4 * services.UID_BLOCK
    config = FAST_CONFIG + (
        f"mail_owner_uid = {base}\nmail_owner_gid = {base}\n"
        f"peer_uid = {base + 100}\npeer_gid = {base + 100}\n"
        f"local_users = {{ alice = {base + 1}, bob = {base + 2}, carol = {base + 3} }}\n"
    )
    first = Mta(simmta_tmp / "a", config=config)
    try:
        assert first.mail_owner == base
        second = Mta(simmta_tmp / "b", config=config)  # moved off first's block
        block = second.mail_owner
        assert block == base + services.UID_BLOCK
        second.stop()
    finally:
        first.stop()
    again = Mta(simmta_tmp / "b", config=config)  # first's block is free now: it must still take its own
    try:
        assert again.mail_owner == block
    finally:
        again.stop()


@pytest.mark.parametrize("profile_mta", ["sendmail", "qmail", "postfix"], indirect=True)
def test_the_trilogy_counts_come_from_the_fold_and_agree_with_proc(profile_mta: Mta) -> None:
    """The trilogy view's counts are the fold's (fold.design over the event stream); they
    must say what master reads from /proc at the same moment (scaffolding left out)."""
    from simmta.core import control, fold
    from simmta.tui.feed import LiveFeed
    from simmta.tui.model import Model

    mta = profile_mta
    model, feed = Model(), LiveFeed(mta.instance / "run" / "bus.sock").start()
    internet = {s.name for s in services.load(None, mta.profile) if s.role == "internet"}

    def from_proc() -> fold.Design:
        procs = [
            p
            for p in control.request(mta.instance / "run" / "control.sock", "ps")["processes"]
            if p["service"] not in (*fold.SCAFFOLDING, *internet)
        ]
        seen = [p for p in procs if p.get("privilege")]
        return fold.Design(
            processes=len(procs),
            observed=len(seen),
            uids=len({u for p in seen for u in p["privilege"]["uid"]}),
            root=sum(1 for p in seen if p["privilege"]["uid"][0] == 0),
            chrooted=sum(1 for p in seen if p["privilege"]["root"] != "/"),
            setuid=tuple(s.program for s in services.load(None, mta.profile) if s.setuid),
        )

    def agree() -> tuple[fold.Design, fold.Design] | None:
        feed.pump(model, time.time())
        mine, theirs = fold.design(model.state), from_proc()
        return (mine, theirs) if mine == theirs and mine.observed == mine.processes else None

    try:
        with mta.smtp() as s:  # a session open: the SMTP process exists while we count
            s.ehlo("client.example")
            mine, _ = wait_for(agree, 20, "the fold's counts to agree with /proc")
        assert mine.processes >= 2 and mine.uids >= 1
        if mta.profile == "sendmail":
            assert mine.root == mine.processes and mine.chrooted == 0
        if mta.profile == "postfix":
            assert mine.chrooted >= 1 and mine.setuid == ()
        if mta.profile == "qmail":
            assert mine.root <= 1 and mine.setuid == ("qmail-queue",)  # qmail-lspawn, if running
    finally:
        feed.stop()
