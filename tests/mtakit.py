"""Test kit: a real ``simmta run`` in a temp instance on ephemeral ports.

No mocks of the MTA: every integration test starts master as a subprocess,
talks SMTP to it on loopback, and reads what lands on disk. Waiting is always
polling with a deadline (``wait_for``), never a bare sleep.
"""

import contextlib
import hashlib
import json
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simmta.core import compromise

REPO = Path(__file__).resolve().parent.parent
NOBODY = 65534
# Short timers so retries and throttling happen within a test.
FAST_CONFIG = """
queue_run_delay = "1s"
minimal_backoff_time = "1s"
maximal_backoff_time = "2s"
service_throttle_time = "3s"
smtpd_error_sleep_time = 0
"""


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def maildir_files(path: Path) -> list[Path]:
    out: list[Path] = []
    for sub in ("new", "cur"):
        with contextlib.suppress(FileNotFoundError):
            out += sorted((path / sub).iterdir())
    return out


class EventLog:
    """A bus subscriber collecting every event in a background thread."""

    def __init__(self, sock_path: Path):
        self.events: list[dict[str, Any]] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(sock_path))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        # Joined once master has sent the snapshot and announced us (and so has
        # told the daemons that someone is watching).
        wait_for(lambda: self.find(kind="bus", type="subscriber"), 10, "the bus to admit us")

    def _run(self) -> None:
        with contextlib.suppress(OSError, ValueError), self.sock.makefile("rb") as f:
            for line in f:
                self.events.append(json.loads(line))

    def find(self, **match: Any) -> list[dict[str, Any]]:
        def ok(e: dict[str, Any]) -> bool:
            for k, v in match.items():
                have = e["data"].get(k[5:]) if k.startswith("data_") else e.get(k)
                if have != v:
                    return False
            return True

        return [e for e in list(self.events) if ok(e)]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class Mta:
    """One running simmta instance (master as a subprocess we started)."""

    def __init__(
        self,
        instance: Path,
        user: int | None = None,
        config: str = FAST_CONFIG,
        lab: bool = False,
        privilege: str = "auto",
        groups: str = "",
        profile: str = "postfix",
    ):
        self.instance = instance
        self.profile = profile
        self.user = user
        self.groups = groups  # supplementary groups of the user (setpriv --groups), none if ""
        self.logs: list[EventLog] = []
        instance.mkdir(parents=True, exist_ok=True)
        (instance / "main.toml").write_text(config)
        if user is not None:
            for p in (instance, instance / "main.toml"):
                os.chown(p, user, user)
        args = ["run", "--smtp-port", "0", "--privilege", privilege, "--profile", profile] + (
            ["--lab"] if lab else []
        )
        self.proc = subprocess.Popen(
            self.command(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=instance
        )
        try:
            self.status = wait_for(self._status, 30, "master to write status.json")
        except BaseException:
            self.pid = self.proc.pid  # never leave a master behind a failed start
            self.stop()
            raise
        self.host, self.port = self.status["smtp"]["host"], int(self.status["smtp"]["port"])
        self.pid = int(self.status["master_pid"])

    @property
    def mail_owner(self) -> int:
        """The uid master gave mail_owner (as root it moves the block off uids in use)."""
        return int(self.status["ids"]["mail_owner"][0])

    @property
    def users(self) -> dict[str, int]:
        return dict(self.status["local_users"])

    def uid_of(self, account: str) -> int:
        """The uid of a profile's account (qmaild, qmails, peer ...) in this instance."""
        return int(self.status["ids"][account][0])

    def command(self, *args: str) -> list[str]:
        base = [sys.executable, "-m", "simmta", *args, "--instance", str(self.instance)]
        if self.user is None:
            return base
        groups = f"--groups={self.groups}" if self.groups else "--clear-groups"
        return ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", groups, "env", "HOME=/tmp", *base]

    def _status(self) -> dict[str, Any] | None:
        if self.proc.poll() is not None:
            out = self.proc.stdout.read().decode() if self.proc.stdout else ""
            raise AssertionError(f"simmta run exited with {self.proc.returncode}: {out}")
        try:
            status = json.loads((self.instance / "run" / "status.json").read_text())
        except (OSError, ValueError):
            return None
        # Ours, not one a master killed earlier left behind (kill -9 removes nothing).
        pid = status.get("master_pid")
        return status if pid == self.proc.pid or pid in _descendants(self.proc.pid) else None

    def simmta(
        self, *args: str, input: bytes | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(self.command(*args), input=input, capture_output=True, timeout=timeout)
        res = subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(), r.stderr.decode())
        if check and r.returncode != 0:
            raise AssertionError(f"simmta {' '.join(args)} failed ({r.returncode}): {res.stderr}")
        return res

    def smtp(self, source: str = "127.0.0.1") -> smtplib.SMTP:
        return smtplib.SMTP(self.host, self.port, source_address=(source, 0), timeout=30)

    def send(
        self,
        to: str | list[str] = "bob@simmta.test",
        sender: str = "alice@simmta.test",
        subject: str = "test",
        body: str = "hello\r\n",
        extra_headers: str = "",
    ) -> str:
        """Send one message; returns the queue ID from the 250 reply."""
        rcpts = [to] if isinstance(to, str) else to
        msg = f"From: <{sender}>\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n{extra_headers}\r\n{body}"
        with self.smtp() as s:
            s.ehlo("client.example")
            s.mail(sender)
            for r in rcpts:
                s.rcpt(r)
            code, text = s.data(msg.encode())
        assert code == 250, (code, text)
        return text.decode().rsplit(" ", 1)[-1]

    def maildir(self, user: str) -> Path:
        return self.instance / "mail" / user / "Maildir"

    @property
    def peer_maildir(self) -> Path:
        return self.instance / "peer" / "Maildir"

    def queue_files(self, queue: str) -> list[str]:
        with contextlib.suppress(FileNotFoundError):
            return sorted(
                p.name for p in (self.instance / "queue" / queue).iterdir() if not p.name.startswith("tmp.")
            )
        return []

    def live_status(self) -> dict[str, Any]:
        return json.loads(self.simmta("status", "--json").stdout)

    def pids(self, service: str) -> list[int]:
        for s in self.live_status()["services"]:
            if s["name"] == service:
                return list(s["pids"])
        raise KeyError(service)

    def children_of(self, service: str) -> list[int]:
        """master's children running a service's daemon, read straight from /proc."""
        out = []
        for pid in _descendants(self.pid):
            with contextlib.suppress(OSError):
                if f"simmta.daemons.{service} " in Path(f"/proc/{pid}/cmdline").read_text():
                    out.append(pid)
        return out

    def subscribe(self) -> EventLog:
        log = EventLog(self.instance / "run" / "bus.sock")
        self.logs.append(log)  # closed by stop(), even when a test fails first
        return log

    def descendants(self) -> list[int]:
        return _descendants(self.pid)

    def stop(self) -> None:
        for log in self.logs:
            log.close()
        children = _descendants(self.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in children:  # anything of ours left behind, by pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc.stdout:
            self.proc.stdout.close()


def proc_status(pid: int) -> dict[str, list[int]]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            out[key] = [int(x) for x in value.split()]
    return out


def start_every_service(mta: Mta) -> None:
    """Make master start every on-demand service: local, relayed and bounced mail."""
    mta.send(to="bob@simmta.test")
    mta.send(to="someone@example.net")
    mta.simmta(
        "sendmail",
        "-f",
        "carol@simmta.test",
        "nobody-here@simmta.test",  # smtpd would refuse
        input=b"Subject: to nobody\n\nx\n",
    )
    wait_for(
        lambda: maildir_files(mta.maildir("carol")) and maildir_files(mta.peer_maildir),
        what="local, relayed and bounced mail",
    )


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            for child in Path(f"/proc/{p}/task/{p}/children").read_text().split():
                out.append(int(child))
                todo.append(int(child))
    return out


def searchable(path: Path) -> None:
    """Let mail_owner walk to the instance (pytest makes its temp dirs 0700)."""
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & 0o001:
            os.chmod(p, (mode & 0o777) | 0o711)


_APT_UPDATED = False


def require_tool(command: str, package: str | None = None) -> str:
    """The path of a system tool a test needs, installed with apt-get if missing.

    Tests must run on a fresh machine (CI): they install what they use, they do not skip.
    """
    global _APT_UPDATED
    path = shutil.which(command)
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if not _APT_UPDATED:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600)
            _APT_UPDATED = True
        subprocess.run(
            ["apt-get", "install", "-y", "-q", package or command], capture_output=True, env=env, timeout=600
        )
        path = shutil.which(command)
    assert path, f"{command} is needed: apt-get install {package or command}"
    return path


# A command prefix: run as uid/gid 65534 with no supplementary groups (the test's stranger).
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def nobody_can_run_python() -> bool:
    """(The session fixture has made the interpreter reachable: tests/reachable.py.)"""
    r = subprocess.run([*AS_NOBODY, sys.executable, "-c", "import simmta"], capture_output=True)
    return r.returncode == 0


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("real privilege separation needs root")


# The compromise lab as root, from the issue and each design's documents: what a hole in
# the SMTP server reaches (tests/test_compromise.py; test_rootless.py adds rootless's one change).
LAB_EXPECTED = {
    "postfix": {
        "read-secret": "ENOENT",
        "read-mail": "ENOENT",
        "write-outside": "ENOENT",
        "setuid-0": "EPERM",
        "exec-true": "ENOENT",
    },
    "qmail": {
        "read-secret": "EACCES",
        "read-mail": "EACCES",
        "write-maildir": "EACCES",
        "read-queue": "EACCES",
        "alter-canary": "EACCES",
        "signal-daemon": "EPERM",
        "setuid-0": "EPERM",
        "write-outside": "EACCES",
    },
    "sendmail": {a: "ok" for a in compromise.ATTEMPTS},
}


def tree_state(top: Path) -> dict[str, tuple]:
    """Every entry below ``top``: mode, owner, size, mtime and, for files, a digest of the contents."""
    out = {}
    for p in sorted([top, *top.rglob("*")]):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        out[str(p.relative_to(top))] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, digest)
    return out


def sentinel(base: Path, owner: int = 0) -> Path:
    """A tree beside an instance that no lab attempt may touch: a 0600 file, a world-writable
    directory and file, all ``owner``'s. Compare ``tree_state`` before and after."""
    top = base / "sentinel"
    (top / "sub").mkdir(parents=True)
    (top / "secret").write_text("beside the instance\n")
    os.chmod(top / "secret", 0o600)
    (top / "sub" / "open").write_text("world-writable on purpose\n")
    os.chmod(top / "sub" / "open", 0o666)
    os.chmod(top / "sub", 0o777)
    for p in (top, *top.rglob("*")):
        os.chown(p, owner, owner)
    return top
