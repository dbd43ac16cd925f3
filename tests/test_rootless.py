"""Rootless and partial privilege, for real, as an ordinary user the suite creates.

As root the suite adds a user with a unique name (useradd gives it a
subordinate range from /etc/login.defs; if not, usermod adds one), runs
simmta as that user, and removes the user again: /etc/passwd, /etc/group,
/etc/subuid and /etc/subgid change by our lines alone, compared just before
and after each change with other runs of the suite locked out (they add and
remove students of their own meanwhile).
Every test's teardown stops the MTA, runs ``simmta clean`` as the student and
proves with ``find -uid`` that no file of the range is left.
"""

import contextlib
import fcntl
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mtakit import (
    AS_NOBODY,
    LAB_EXPECTED,
    NOBODY,
    REPO,
    Mta,
    maildir_files,
    needs_root,
    nobody_can_run_python,
    proc_status,
    require_tool,
    sentinel,
    start_every_service,
    tree_state,
    wait_for,
)
from reachable import STATE_DIR

from simmta.core import compromise, userns
from simmta.tools import lab

MAIL_OWNER, PEER = 61000, 61100
USERS = {"alice": 61001, "bob": 61002, "carol": 61003}
UNPRIV = {"smtpd", "pickup", "cleanup", "qmgr", "bounce", "smtp", "peer"}
CHROOT = {"smtpd", "pickup", "cleanup", "bounce", "smtp"}
ACCOUNT_FILES = [Path(p) for p in ("/etc/passwd", "/etc/group", "/etc/subuid", "/etc/subgid")]
PREFIX = "simmtarl"


@dataclass
class Student:
    name: str
    uid: int
    gid: int
    uids: userns.IdRange

    def host(self, table_uid: int) -> int:
        return self.uids.start + table_uid - 1


def _lines(p: Path) -> list[str]:
    return p.read_text().splitlines() if p.exists() else []


@contextlib.contextmanager
def changing_accounts(name: str, adding: bool) -> Iterator[None]:
    """Change the account files for ``name`` alone, and prove it.

    Other runs of this suite add and remove students of their own meanwhile, so
    the files are compared just before and just after our change, with those
    runs locked out (and the free subordinate range chosen under the same lock):
    only ``name``'s lines may differ, gained when adding, lost when removing.
    """
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    with open(STATE_DIR / "accounts.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = {p: set(_lines(p)) for p in ACCOUNT_FILES}
        yield
        for p in ACCOUNT_FILES:
            after = set(_lines(p))
            gained, lost = after - before[p], before[p] - after
            assert all(x.startswith(f"{name}:") for x in gained | lost), (p, "another account's line changed")
            assert not (lost if adding else gained), (p, "lost lines" if adding else "gained lines")
            ours = [x for x in after if x.startswith(f"{name}:") or f":{name}" in x]
            assert adding or not ours, (p, "left behind")


@pytest.fixture(scope="module")
def student() -> Iterator[Student]:
    needs_root()
    for tool in ("useradd", "userdel", "usermod", "newuidmap", "newgidmap"):
        assert shutil.which(tool), f"{tool} is needed (apt-get install passwd uidmap)"
    assert nobody_can_run_python()
    name = f"{PREFIX}{secrets.token_hex(4)}"
    with changing_accounts(name, adding=True):
        subprocess.run(
            [
                "useradd",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
                name,
            ],
            check=True,
            capture_output=True,
        )
        pw = pwd.getpwnam(name)
        uids = userns.subordinate(userns.SUBUID, name, pw.pw_uid)
        if uids is None or userns.subordinate(userns.SUBGID, name, pw.pw_uid) is None:
            start = userns._free_range()
            rng = f"{start}-{start + userns.DEFAULT_COUNT - 1}"
            subprocess.run(
                ["usermod", "--add-subuids", rng, "--add-subgids", rng, name], check=True, capture_output=True
            )
            uids = userns.subordinate(userns.SUBUID, name, pw.pw_uid)
    try:
        assert uids is not None and uids.count > PEER
        yield Student(name, pw.pw_uid, pw.pw_gid, uids)
    finally:
        with changing_accounts(name, adding=False):
            subprocess.run(["userdel", name], check=True, capture_output=True)


def leftovers(top: Path, s: Student) -> list[str]:
    """Files below ``top`` owned by a uid of the student's range (find -uid)."""
    lo, hi = s.uids.start, s.uids.start + s.uids.count - 1
    r = subprocess.run(
        ["find", str(top), "(", "-uid", f"+{lo - 1}", "-uid", f"-{hi + 1}", ")", "-print"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return r.stdout.split()


@pytest.fixture
def home(student: Student) -> Iterator[Path]:
    """The student's directory for this test (reachable by the daemons' uids)."""
    path = Path(tempfile.mkdtemp(prefix="simmta-rootless-"))
    os.chmod(path, 0o711)
    os.chown(path, student.uid, student.gid)
    try:
        yield path
    finally:
        try:
            assert leftovers(path, student) == [], "files of the subordinate range left behind"
        finally:
            shutil.rmtree(path, ignore_errors=True)  # as root, whatever the test left


def as_student(
    s: Student, *args: str, timeout: float = 60, tmp: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """simmta ``args`` as the student (temporary files in ``tmp`` if given)."""
    return subprocess.run(
        [*student_prefix(s), *([f"TMPDIR={tmp}"] if tmp else []), sys.executable, "-m", "simmta", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def student_prefix(s: Student) -> list[str]:
    """A command prefix: run as the student, with a home that does not exist."""
    return ["setpriv", f"--reuid={s.uid}", f"--regid={s.gid}", "--init-groups", "env", "HOME=/nonexistent"]


def clean(s: Student, instance: Path) -> None:
    r = as_student(s, "clean", "--instance", str(instance))
    assert r.returncode == 0, r.stderr
    assert not instance.exists()


@contextlib.contextmanager
def student_mta(student: Student, home: Path, **options: Any) -> Iterator[Mta]:
    """The student's MTA; stopped and removed with 'simmta clean' afterwards."""
    m = Mta(home / "inst", user=student.uid, **options)
    try:
        yield m
    finally:
        m.stop()
        clean(student, m.instance)


@pytest.fixture
def rootless_mta(student: Student, home: Path) -> Iterator[Mta]:
    with student_mta(student, home, lab=True) as m:
        yield m


def test_each_daemon_runs_as_its_table_uid_mapped_onto_the_range(rootless_mta: Mta, student: Student) -> None:
    status = rootless_mta.live_status()
    assert status["privilege_mode"] == "rootless"
    assert status["privilege"]["uids"] == {"start": student.uids.start, "count": student.uids.count}
    start_every_service(rootless_mta)
    ps = json.loads(rootless_mta.simmta("ps", "--json").stdout)
    seen = set()
    for row in ps["processes"]:
        service, pid = row["service"], row["pid"]
        try:
            host = proc_status(pid)["Uid"]  # what the host's kernel says, read here, as root
            root = os.readlink(f"/proc/{pid}/root")
        except FileNotFoundError:
            continue  # exited (max_idle) since ps ran
        seen.add(service)
        assert row["mismatch"] == [], row
        if service in UNPRIV:
            table = PEER if service == "peer" else MAIL_OWNER
            assert host == [student.host(table)] * 4, service
            assert row["uid"] == [table] * 4 and row["host_uid"] == host, service
            assert 0 not in host and student.uid not in host, service
        else:  # master and local: root inside the namespace, the student outside
            assert host == [student.uid] * 4 and row["uid"][1] == 0, service
        assert root == (str(rootless_mta.instance / "queue") if service in CHROOT else "/"), service
    assert {"master", "smtpd", "cleanup", "qmgr", "local", "smtp", "bounce", "pickup", "peer"} <= seen
    # local wrote each mailbox as its user: the file's host owner is the mapped uid.
    for user in ("bob", "carol"):
        for f in maildir_files(rootless_mta.maildir(user)):
            assert f.stat().st_uid == student.host(USERS[user]), f
    assert all(f.stat().st_uid == student.host(PEER) for f in maildir_files(rootless_mta.peer_maildir))


def test_pickup_names_the_submitter_inside_the_namespace_and_on_the_host(
    rootless_mta: Mta, student: Student
) -> None:
    """The student is uid 0 inside the namespace: pickup's event says so and gives the
    host uid too, as 'simmta ps' shows both."""
    # Watched as the student (the bus admits root and the owner; root outside the
    # namespace is neither inside it): unwatched daemons send only essential events.
    seen: list[dict[str, Any]] = []

    def saw(kind: str, type_: str, service: str = "master") -> list[dict[str, Any]]:
        return [e for e in list(seen) if (e["kind"], e["type"], e["service"]) == (kind, type_, service)]

    command = rootless_mta.command("events", "--json")
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as watch:
        assert watch.stdout is not None
        reader = threading.Thread(target=lambda: seen.extend(map(json.loads, watch.stdout)), daemon=True)
        reader.start()
        try:
            wait_for(lambda: saw("bus", "subscriber"), what="the bus to admit the student")
            rootless_mta.simmta("sendmail", "bob@simmta.test", input=b"Subject: local\n\nx\n")
            [picked] = wait_for(lambda: saw("queue", "removed", "pickup"), what="pickup's event")
        finally:
            watch.terminate()
            reader.join(10)
    reason = picked["data"]["reason"]
    assert reason.endswith(f"(submitted by uid 0 (host uid {student.uid}))"), reason


def test_lab_attempts_get_the_kernels_answers(rootless_mta: Mta) -> None:
    def attempt(action: str, service: str) -> str:
        reply = rootless_mta.simmta("ctl", "lab", action, "--service", service, "--json")
        return json.loads(reply.stdout)["outcome"]

    assert attempt("read-secret", "smtpd") == "refused (ENOENT)"  # chrooted: not there
    assert attempt("write-maildir", "smtpd") == "refused (ENOENT)"
    assert attempt("read-secret", "qmgr") == "refused (EACCES)"  # another uid's 0600 file
    assert attempt("write-maildir", "qmgr") == "refused (EACCES)"
    assert attempt("regain-root", "qmgr") == "refused (EPERM)"
    assert maildir_files(rootless_mta.maildir("alice")) == []


def test_lab_compare_as_the_student_gives_the_kernels_answers_labelled_rootless(
    student: Student, home: Path
) -> None:
    """The three profiles' SMTP servers compromised in a user namespace: the same script as
    root, and the same answers but one. The namespace's root has no capability over the host's
    network namespace, so even sendmail's root child may not bind below the host's
    ip_unprivileged_port_start. A sentinel tree beside the instances, the student's own (so the
    namespace's root could write it if the lab ever aimed there), is left as it was."""
    top = sentinel(home, owner=student.uid)
    before = tree_state(top)
    r = as_student(student, "lab", "compare", "--json", timeout=240, tmp=home)
    assert r.returncode == 0, r.stderr
    reports = {x["profile"]: x for x in json.loads(r.stdout)["reports"]}
    assert set(reports) == set(LAB_EXPECTED)
    for profile, report in reports.items():
        got = {x["attempt"]: x["outcome"] for x in report["results"]}
        assert list(got) == list(compromise.ATTEMPTS), profile
        assert report["mode"] == "rootless" and "predicted" not in report, profile
        refused = report["ip_unprivileged_port_start"] > compromise.LOW_PORT
        expected = {**LAB_EXPECTED[profile], "bind-low-port": "EACCES" if refused else "ok"}
        for attempt, outcome in expected.items():
            assert got[attempt] == outcome, (profile, attempt, report["results"])
        # the process the script ran in: a table uid inside, a uid of the range (or, for
        # the namespace's root, the student) on the host
        seen = report["privilege"]
        host = student.uid if seen["uid"] == [0] * 4 else student.host(seen["uid"][0])
        assert seen["host_uid"] == [host] * 4, (profile, seen)
    text = "\n".join(lab.render_matrix(list(reports.values())))
    assert text.count("rootless: the kernel's answers in a user namespace") == len(reports)
    assert f"as root (host uid {student.uid})" in text
    assert tree_state(top) == before, "nothing beside the instances changed"
    assert not list(home.glob("simmta-lab-*")), "compare removes its instances"


# A deferred message stays deferred during the test (no retry moves it to active).
PATIENT = 'minimal_backoff_time = "300s"\nmaximal_backoff_time = "300s"\nqueue_run_delay = "300s"\n'


@pytest.fixture
def patient_mta(student: Student, home: Path) -> Iterator[Mta]:
    with student_mta(student, home, config=PATIENT) as m:
        yield m


def test_every_cli_tool_works_on_a_rootless_instance(patient_mta: Mta, student: Student) -> None:
    patient_mta.simmta("peer", "fault", "tempfail")
    qid = patient_mta.send(to="someone@example.net", subject="rootless queue")
    wait_for(lambda: qid in patient_mta.queue_files("deferred"), what="a deferred message")
    # The queue belongs to a mapped uid: the student cannot read it from the host ...
    r = subprocess.run(
        [
            "setpriv",
            f"--reuid={student.uid}",
            f"--regid={student.gid}",
            "--clear-groups",
            "ls",
            str(patient_mta.instance / "queue" / "deferred"),
        ],
        capture_output=True,
    )
    assert r.returncode != 0
    # ... but the tools enter the namespace first.
    listing = [json.loads(x) for x in patient_mta.simmta("queue", "--json").stdout.splitlines()]
    assert [m["queue_id"] for m in listing] == [qid]
    assert "Subject: rootless queue" in patient_mta.simmta("cat", qid).stdout
    patient_mta.simmta("hold", qid)
    assert qid in patient_mta.queue_files("hold")
    patient_mta.simmta("release", qid)
    events = patient_mta.simmta("events", "--json", "--count", "1").stdout
    assert json.loads(events.splitlines()[0])["kind"] == "snapshot"
    assert "least" in patient_mta.simmta("lesson", "list").stdout.lower()
    text = patient_mta.simmta("ps").stdout
    assert "ROOTLESS" in text and "HOST UID" in text and "MISMATCH" not in text
    assert str(student.host(MAIL_OWNER)) in text
    assert all(len(line) <= 80 for line in text.splitlines()), text


def test_clean_works_after_master_died(student: Student, home: Path) -> None:
    m = Mta(home / "inst", user=student.uid)
    try:
        m.send(to="bob@simmta.test")
        wait_for(lambda: maildir_files(m.maildir("bob")), what="delivery")
        for pid in [m.pid, *m.descendants()]:  # master dies first, uncleanly, then its daemons
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: m.proc.poll() is not None, what="master to die")
    finally:
        m.stop()
    assert leftovers(m.instance, student), "the MTA left files of the range (else this proves nothing)"
    r = subprocess.run(
        [
            "setpriv",
            f"--reuid={student.uid}",
            f"--regid={student.gid}",
            "--clear-groups",
            "rm",
            "-rf",
            str(m.instance),
        ],
        capture_output=True,
    )
    assert r.returncode != 0, "a plain rm cannot remove them: that is why 'simmta clean' exists"
    clean(student, m.instance)


def test_clean_refuses_a_running_instance(rootless_mta: Mta, student: Student) -> None:
    r = as_student(student, "clean", "--instance", str(rootless_mta.instance))
    assert r.returncode == 2 and "simmta stop" in r.stderr
    assert (rootless_mta.instance / "queue").is_dir()


@pytest.fixture
def nobody_home() -> Iterator[Path]:
    needs_root()
    path = Path(tempfile.mkdtemp(prefix="simmta-partial-"))
    os.chmod(path, 0o711)
    os.chown(path, NOBODY, NOBODY)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_partial_mode_without_a_range_chroots_for_real_and_says_uids_are_simulated(nobody_home: Path) -> None:
    """uid 65534 has no subordinate range: one mapped uid, chroot real."""
    assert userns.subordinate(userns.SUBUID, "nobody", NOBODY) is None
    m = Mta(nobody_home / "inst", user=NOBODY, lab=True, groups=str(NOBODY))
    try:
        status = m.live_status()
        assert status["privilege_mode"] == "partial"
        assert "usermod --add-subuids" in status["privilege"]["fix"]
        start_every_service(m)
        ps = json.loads(m.simmta("ps", "--json").stdout)
        for row in ps["processes"]:
            try:
                host, root = proc_status(row["pid"])["Uid"], os.readlink(f"/proc/{row['pid']}/root")
            except FileNotFoundError:
                continue
            assert host == [NOBODY] * 4 and row["mismatch"] == [], row
            assert root == (str(m.instance / "queue") if row["service"] in CHROOT else "/")
            if row["service"] in UNPRIV:
                assert "simulated: would switch to uid" in row["simulated_steps"]
        lab = json.loads(m.simmta("ctl", "lab", "read-secret", "--service", "smtpd", "--json").stdout)
        assert lab["outcome"] == "refused (ENOENT)"  # the jail is real
        lab = json.loads(m.simmta("ctl", "lab", "read-secret", "--service", "qmgr", "--json").stdout)
        assert lab["outcome"] == "succeeded" and "partial mode" in lab["detail"]
    finally:
        m.stop()


def test_simulated_mode_names_what_is_missing_and_raises_no_false_alarm(nobody_home: Path) -> None:
    """Without uidmap on PATH, nobody gets partial with the one command that fixes it;
    asked for simulated, the user's own groups are expected, not a MISMATCH."""
    r = subprocess.run(
        [
            *AS_NOBODY,
            "env",
            "PATH=/nonexistent",
            sys.executable,
            "-c",
            "from simmta.core import userns; import json; print(json.dumps(userns.probe(61100).as_dict()))",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    probe = json.loads(r.stdout)
    assert probe["mode"] == "partial" and probe["fix"] == "sudo apt-get install uidmap", probe
    m = Mta(nobody_home / "inst", user=NOBODY, privilege="simulated", groups="100")
    try:
        ps = m.simmta("ps").stdout
        assert "SIMULATED" in ps and "MISMATCH" not in ps and "simulated: would" in ps, ps
        rows = json.loads(m.simmta("ps", "--json").stdout)["processes"]
        assert any(row["groups"] == [100] for row in rows), "the test needs a supplementary group"
        assert all(row["mismatch"] == [] for row in rows)
    finally:
        m.stop()


class Terminal:
    """``simmta`` (the interactive command, or ``simmta ARGS``) typed into a tmux session as
    ``uid``, on a tmux server of its own (-S, a socket in a directory of its own): ending it
    never races another test's server, and nothing is left in /tmp/tmux-0 (with -L the socket
    files stayed there after kill-server)."""

    def __init__(self, name: str, uid: int, gid: int, home: Path, args: str = "") -> None:
        self.session = f"simmta-users-{os.getpid()}-{name}"
        self.socket_dir = Path(tempfile.mkdtemp(prefix="simmta-tmux-"))
        self.server = str(self.socket_dir / "socket")
        command = (
            f"unset COLUMNS LINES; setpriv --reuid={uid} --regid={gid} --clear-groups env "
            f"HOME={home} TMPDIR={home} PYTHONPATH={REPO} {sys.executable} -m simmta {args}; "
            "echo SIMMTA-EXIT=$?; sleep 300"
        )
        self.tmux("new-session", "-d", "-s", self.session, "-x", "120", "-y", "40", command)

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            [require_tool("tmux"), "-S", self.server, *args], capture_output=True, text=True, check=True
        ).stdout

    def shows(self, pattern: str, timeout: float = 40.0) -> re.Match[str]:
        def seen() -> re.Match[str] | None:
            return re.search(pattern, self.tmux("capture-pane", "-p", "-t", self.session))

        return wait_for(seen, timeout, pattern)

    def close(self) -> None:
        subprocess.run(
            [require_tool("tmux"), "-S", self.server, "kill-server"], check=False, capture_output=True
        )
        shutil.rmtree(self.socket_dir, ignore_errors=True)


@pytest.mark.slow
def test_two_users_run_simmta_at_once(student: Student, home: Path, nobody_home: Path) -> None:
    """Each interactive simmta picks free ports: no 'Address already in use'."""
    terms = [
        Terminal("student", student.uid, student.gid, home),
        Terminal("nobody", NOBODY, NOBODY, nobody_home),
    ]
    try:
        found = [t.shows(r"smtp 127\.0\.0\.1:(\d+)\s+peer :\d+\s+privilege (\w+)") for t in terms]
        ports = [int(m.group(1)) for m in found]
        assert ports[0] != ports[1] and 2525 not in ports
        assert [m.group(2) for m in found] == ["ROOTLESS", "PARTIAL"]
        for port, base in zip(ports, (home, nobody_home), strict=True):
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
                s.sendmail("alice@simmta.test", ["bob@simmta.test"], b"Subject: two users\r\n\r\nhi\r\n")
            [inst] = base.glob("simmta-tui-*/instance")
            wait_for(lambda inst=inst: maildir_files(inst / "mail" / "bob" / "Maildir"), what="delivery")
        for t in terms:
            t.tmux("send-keys", "-t", t.session, "q")
        finals = [t.shows(r"its files stay in (\S+)[\s\S]*SIMMTA-EXIT=0") for t in terms]
        clean(student, Path(finals[0].group(1)) / "instance")
    finally:
        for t in terms:
            t.close()


@pytest.mark.slow
def test_trilogy_as_the_student_delivers_in_all_three_and_labels_the_matrix_rootless(
    student: Student, home: Path
) -> None:
    base = home / "trilogy"
    term = Terminal("trilogy", student.uid, student.gid, home, f"trilogy --dir {base}")
    try:
        screen = term.shows(
            r"\nproc-fd [\s\S]*\(rootless: the kernel's answers in a user namespace", 90
        ).string
        row = next(line for line in screen.splitlines() if line.startswith("read-secret"))
        assert row.split()[1:] == ["ok", "EACCES", "ENOENT"], row  # sendmail, qmail, postfix
        term.tmux("send-keys", "-t", term.session, "s")
        for p in ("sendmail", "qmail", "postfix"):
            wait_for(
                lambda p=p: maildir_files(base / p / "instance" / "mail" / "bob" / "Maildir"),
                30,
                f"the message delivered by {p}",
            )
        term.tmux("send-keys", "-t", term.session, "q")
        term.shows("SIMMTA-EXIT=0", 60)
    finally:
        term.close()  # on a failure, a hang-up: the trilogy stops its three MTAs
        # ... and they must be gone before the student is: userdel refuses a user with processes.
        wait_for(lambda: not students_processes(student), 60, "the student's processes to end")
        for p in ("sendmail", "qmail", "postfix"):
            if (base / p / "instance").exists():
                clean(student, base / p / "instance")


def students_processes(s: Student) -> list[int]:
    """Pids of the student's processes (the masters; the namespace's root is the student)."""
    out = []
    for p in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if p.name.isdigit() and p.stat().st_uid == s.uid:
                out.append(int(p.name))
    return out


@pytest.mark.slow
def test_every_lesson_autoplays_rootless(student: Student, home: Path) -> None:
    """The whole course as the student, in rootless mode: every step must wait for its action
    (autoplay fails a step whose goal already holds) and every goal be met."""
    done = subprocess.run(
        [
            "setpriv",
            f"--reuid={student.uid}",
            f"--regid={student.gid}",
            "--init-groups",
            "env",
            f"HOME={home}",
            f"TMPDIR={home}",
            "SIMMTA_PRIVILEGE=rootless",
            sys.executable,
            "-m",
            "simmta",
            "lesson",
            "check",
            "all",
            "--autoplay",
        ],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    lessons = len(list((Path(__file__).parents[1] / "lessons").glob("[0-9]*.md")))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert done.stdout.count("[rootless]") == lessons, done.stdout[-2000:]


def test_the_student_reads_the_mailboxes_through_master(rootless_mta: Mta, student: Student) -> None:
    """bob's Maildir belongs to a uid of the range: the student's Mailboxes view asks master."""
    rootless_mta.send(to="bob@simmta.test", subject="for the student")
    wait_for(lambda: maildir_files(rootless_mta.maildir("bob")), what="bob's letter")
    code = (
        "import sys; from pathlib import Path; from simmta.core import mailboxes; "
        "from simmta.core.instance import Instance; i = Instance(Path(sys.argv[1])); "
        "found = dict(mailboxes.letters(i, {})); (l,) = found['bob']; "
        "print(l.header('Subject')); print(mailboxes.read(i, l.path)[0].decode())"
    )
    r = subprocess.run(
        [*student_prefix(student), sys.executable, "-P", "-c", code, str(rootless_mta.instance)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("for the student\n") and "\nSubject: for the student" in r.stdout
