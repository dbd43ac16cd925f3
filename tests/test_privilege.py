"""Least privilege for real (as root) and labelled honestly (as an ordinary user)."""

import json
import os
import stat
from pathlib import Path

import pytest
from mtakit import (
    AS_NOBODY,
    FAST_CONFIG,
    NOBODY,
    Mta,
    maildir_files,
    needs_root,
    proc_status,
    start_every_service,
    wait_for,
)

from simmta.core import privilege

# What the shipped services table says (Debian's layout).
UNPRIV = {"smtpd", "pickup", "cleanup", "qmgr", "bounce", "smtp", "peer"}
CHROOT = {"smtpd", "pickup", "cleanup", "bounce", "smtp"}


@pytest.fixture
def root_mta(instance_dir: Path):
    needs_root()
    m = Mta(instance_dir, lab=True)
    try:
        yield m
    finally:
        m.stop()


def test_every_process_has_the_privilege_the_table_says(root_mta: Mta) -> None:
    start_every_service(root_mta)
    ps = json.loads(root_mta.simmta("ps", "--json").stdout)
    assert ps["privilege_mode"] == "real"
    seen = set()
    for row in ps["processes"]:
        service, pid = row["service"], row["pid"]
        try:
            st = proc_status(pid)  # checked independently of simmta's own observer
            root = os.readlink(f"/proc/{pid}/root")
        except FileNotFoundError:
            continue  # exited (max_idle) since ps ran
        seen.add(service)
        assert st["Uid"] == row["uid"] and st["Gid"] == row["gid"] and root == row["root"]
        assert row["mismatch"] == [] and row["boundary"] == "real"
        if service in UNPRIV:
            # "the Internet" shares its uid with nothing, not even mail_owner
            want = root_mta.uid_of("peer") if service == "peer" else root_mta.mail_owner
            assert st["Uid"] == [want] * 4 and st["Gid"] == [want] * 4, service
            assert st["Groups"] == [], f"{service} must have no supplementary groups"
            assert row["caps"] == "none"
        else:
            assert st["Uid"][1] == 0, f"{service} keeps root"
        expect_root = str(root_mta.instance / "queue") if service in CHROOT else "/"
        assert root == expect_root, service
    assert {"master", "smtpd", "cleanup", "qmgr", "local", "smtp", "bounce", "pickup", "peer"} <= seen


def test_no_unprivileged_process_can_regain_root(root_mta: Mta) -> None:
    log = root_mta.subscribe()
    root_mta.send()
    wait_for(lambda: maildir_files(root_mta.maildir("bob")), what="delivery")
    for service in ("smtpd", "qmgr"):
        lab = root_mta.simmta("ctl", "lab", "regain-root", "--service", service, "--json")
        reply = json.loads(lab.stdout)
        assert reply["outcome"] == "refused (EPERM)", reply
    steps = log.find(kind="privilege", type="step", data_step="regain-root")
    assert steps and all("refused by the kernel" in e["data"]["outcome"] for e in steps)
    log.close()


def test_lab_attempts_fail_for_the_right_reason(root_mta: Mta) -> None:
    def attempt(action: str, service: str) -> dict:
        return json.loads(root_mta.simmta("ctl", "lab", action, "--service", service, "--json").stdout)

    # smtpd is chrooted: the secret and the mailboxes are simply not there.
    assert attempt("read-secret", "smtpd")["outcome"] == "refused (ENOENT)"
    assert attempt("write-maildir", "smtpd")["outcome"] == "refused (ENOENT)"
    # qmgr is not chrooted but unprivileged: the kernel says EACCES.
    assert attempt("read-secret", "qmgr")["outcome"] == "refused (EACCES)"
    assert attempt("write-maildir", "qmgr")["outcome"] == "refused (EACCES)"
    assert maildir_files(root_mta.maildir("alice")) == []


def test_lab_is_off_without_the_switch(mta: Mta) -> None:
    r = mta.simmta("ctl", "lab", "read-secret", "--service", "smtpd", check=False)
    assert r.returncode == 2 and "simmta run --lab" in r.stderr


def test_mail_is_owned_by_the_recipient_and_the_tree_by_the_right_owners(root_mta: Mta) -> None:
    start_every_service(root_mta)
    for user in ("bob", "carol"):
        for f in maildir_files(root_mta.maildir(user)):
            st = f.stat()
            assert (st.st_uid, st.st_gid) == (root_mta.users[user], root_mta.users[user]), f
        md = root_mta.maildir(user).parent.stat()
        assert md.st_uid == root_mta.users[user] and stat.S_IMODE(md.st_mode) == 0o700
    q = root_mta.instance / "queue"
    for sub in ("incoming", "active", "deferred", "hold", "corrupt", "private"):
        st = (q / sub).stat()
        assert st.st_uid == root_mta.mail_owner and stat.S_IMODE(st.st_mode) == 0o700, sub
    assert stat.S_IMODE((q / "maildrop").stat().st_mode) == 0o1733
    assert stat.S_IMODE((q / "public").stat().st_mode) == 0o711
    assert stat.S_IMODE((root_mta.instance / "run").stat().st_mode) == 0o700


def test_queue_files_belong_to_mail_owner_and_are_private(root_mta: Mta) -> None:
    root_mta.simmta("peer", "fault", "tempfail")
    qid = root_mta.send(to="someone@example.net")
    wait_for(lambda: qid in root_mta.queue_files("deferred"), what="a deferred message")
    st = (root_mta.instance / "queue" / "deferred" / qid).stat()
    assert st.st_uid == root_mta.mail_owner and stat.S_IMODE(st.st_mode) == 0o700


def test_no_setuid_or_setgid_file_in_the_instance(root_mta: Mta) -> None:
    start_every_service(root_mta)
    root_mta.simmta("sendmail", "bob@simmta.test", input=b"Subject: s\n\nx\n")
    wait_for(lambda: len(maildir_files(root_mta.maildir("bob"))) >= 2, what="delivery")
    bad = [p for p in root_mta.instance.rglob("*") if p.lstat().st_mode & (stat.S_ISUID | stat.S_ISGID)]
    assert bad == []


def test_sendmail_as_an_ordinary_user_is_delivered_by_daemons_master_started(
    root_mta: Mta, tmp_path: Path
) -> None:
    """No set-uid help and no delivery as a child of the user's process."""
    import subprocess
    import sys

    r = subprocess.run(
        [
            *AS_NOBODY,
            sys.executable,
            "-m",
            "simmta",
            "sendmail",
            "--instance",
            str(root_mta.instance),
            "-f",
            "nobody@simmta.test",
            "alice@simmta.test",
        ],
        input=b"Subject: from uid 65534\n\nhello\n",
        capture_output=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    [f] = wait_for(lambda: maildir_files(root_mta.maildir("alice")), what="delivery to alice")
    assert f.stat().st_uid == root_mta.users["alice"]
    assert "uid 65534" in f.read_text(), "the submitter is the file's owner, as the kernel says"
    # An ordinary user cannot read or list the queue, nor the drop directory.
    r = subprocess.run(
        [
            *AS_NOBODY,
            "ls",
            str(root_mta.instance / "queue" / "maildrop"),
        ],
        capture_output=True,
    )
    assert r.returncode != 0


def test_simulated_mode_delivers_and_says_simulated_everywhere(nobody_mta: Mta) -> None:
    m = nobody_mta
    assert m.status["privilege_mode"] == "simulated"
    log = m.subscribe()
    m.send(to="alice@simmta.test")
    m.send(to="someone@example.net")
    m.simmta("sendmail", "bob@simmta.test", input=b"Subject: local\n\nx\n")
    wait_for(
        lambda: (
            maildir_files(m.maildir("alice"))
            and maildir_files(m.maildir("bob"))
            and maildir_files(m.peer_maildir)
        ),
        what="deliveries in simulated mode",
    )
    ps = json.loads(m.simmta("ps", "--json").stdout)
    assert ps["privilege_mode"] == "simulated"
    assert all(r["boundary"] == "simulated" for r in ps["processes"])
    smtpd = [r for r in ps["processes"] if r["service"] == "smtpd"]
    assert smtpd and "would chroot" in smtpd[0]["simulated_steps"]
    assert "SIMULATED" in m.simmta("ps").stdout
    assert "SIMULATED" in m.simmta("status").stdout
    steps = log.find(kind="privilege", type="step")
    assert steps and all(
        e["data"]["mode"] == "simulated" and e["data"]["outcome"].startswith("simulated: would")
        for e in steps
    )
    observed = log.find(kind="privilege", type="observed")
    assert observed and all(e["data"]["mode"] == "simulated" for e in observed)
    log.close()


def test_simulated_lab_attempt_says_nothing_stopped_it(simmta_tmp: Path) -> None:
    needs_root()
    base = simmta_tmp / "n"
    base.mkdir()
    os.chown(base, NOBODY, NOBODY)
    m = Mta(base / "inst", user=NOBODY, config=FAST_CONFIG, lab=True, privilege="simulated")
    try:
        reply = json.loads(m.simmta("ctl", "lab", "write-maildir", "--service", "smtpd", "--json").stdout)
        assert reply["outcome"] == "succeeded" and "no kernel boundary" in reply["detail"]
    finally:
        m.stop()


def test_observer_reads_proc() -> None:
    obs = privilege.observe(os.getpid())
    assert obs is not None and obs.uid[0] == os.getuid() and obs.root == "/"
