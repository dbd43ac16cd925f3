"""``simmta bench --postfix``: the README's loopback Postfix, installed and configured for the bench.

On Debian, as root, ``ensure_postfix`` does what the README's recipe says, and
only what is missing: installs the ``postfix`` package (and ``strace``, for the
bench's system-call counts, through ``apt_install``) (debconf answered "Local
only", so it never listens beyond loopback; Debian's policy-rc.d, if any, keeps
it from starting during the install), creates the ``benchuser`` account,
sets the recipe's ``main.cf`` parameters with ``postconf -e``, moves the
``smtp inet`` service of ``master.cf`` from port 25 to 127.0.0.1:2626, and
starts Postfix (or reloads it, if it ran and the configuration changed). Run
twice, the second run changes nothing. ``stop`` stops Postfix again only if
this run started it; the package, the account and the configuration stay.

Trust: runs as root and changes the system, so it is used only when asked for
(``--postfix``); it refuses a port 2626 held by anything but Postfix's master.
"""

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from simmta.core.errors import SimmtaError
from simmta.tools.bench_stats import find_listener, process_name
from simmta.tools.bench_targets import _poll, read_greeting

HOST, PORT = "127.0.0.1", 2626
USER = "benchuser"
MAILDIR = Path("/home") / USER / "Maildir"
RECIPIENT = f"{USER}@localhost"
MASTER_CF = Path("/etc/postfix/master.cf")
MAIN_CF = {
    "inet_interfaces": "loopback-only",
    "inet_protocols": "ipv4",
    "home_mailbox": "Maildir/",
    "myhostname": "bench.localdomain",
    "mydestination": "bench.localdomain, localhost",
    "smtpd_relay_restrictions": "permit_mynetworks reject",
    "maillog_file": "/var/log/postfix.log",
}
DEBCONF = (
    "postfix postfix/main_mailer_type select Local only\npostfix postfix/mailname string bench.localdomain\n"
)
SMTP_LINE = re.compile(r"^smtp\s+inet\b", re.MULTILINE)
BENCH_LINE = re.compile(rf"^{re.escape(HOST)}:{PORT}\s+inet\b", re.MULTILINE)


def _run(*argv: str, stdin: str | None = None) -> str:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise SimmtaError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def running() -> bool:
    """Postfix's master is up (``postfix status``)."""
    return subprocess.run(["postfix", "status"], capture_output=True, check=False).returncode == 0


@dataclass
class Postfix:
    """The bench's Postfix: where it listens and delivers, and whether this run started it."""

    started: bool = False

    def stop(self) -> None:
        if self.started and running():
            _run("postfix", "stop")
        self.started = False


def apt_install(package: str, say: Callable[[str], None]) -> None:
    """``apt-get install -y PACKAGE`` (Debian's packages only)."""
    if shutil.which("apt-get") is None:
        raise SimmtaError(f"--postfix knows Debian's packages only; install {package} as the README says")
    say(f"installing {package} (apt-get install {package})")
    _run("apt-get", "install", "-y", "-q", package)


def ensure_postfix(say: Callable[[str], None]) -> Postfix:
    """Install, configure and start the README's loopback Postfix as far as it is not already."""
    if os.geteuid() != 0:
        raise SimmtaError("--postfix installs and configures Postfix: run it as root")
    holder = find_listener(PORT)
    if holder is not None and process_name(holder) != "master":
        raise SimmtaError(f"port {PORT} is held by {process_name(holder)}[{holder}], not Postfix")
    if shutil.which("postfix") is None:
        _run("debconf-set-selections", stdin=DEBCONF)
        apt_install("postfix", say)
    changed = False
    try:
        _run("id", USER)
    except SimmtaError:
        say(f"creating the account {USER}")
        _run("useradd", "-m", "-s", "/usr/sbin/nologin", USER)
    current = dict(line.split(" = ", 1) for line in _run("postconf", *MAIN_CF).splitlines() if " = " in line)
    wrong = [f"{k} = {v}" for k, v in MAIN_CF.items() if current.get(k) != v]
    if wrong:
        say("postconf -e " + " ".join(repr(w) for w in wrong))
        _run("postconf", "-e", *wrong)
        changed = True
    text = MASTER_CF.read_text()
    if not BENCH_LINE.search(text):
        if not SMTP_LINE.search(text):
            raise SimmtaError(f"{MASTER_CF} has no 'smtp inet' line to move to {HOST}:{PORT}")
        say(f"master.cf: the smtp inet service moves to {HOST}:{PORT}")
        MASTER_CF.write_text(SMTP_LINE.sub(f"{HOST}:{PORT} inet", text, count=1))
        changed = True
    postfix = Postfix()
    if not running():
        say("postfix start")
        _run("postfix", "start")
        postfix.started = True
    elif changed:
        say("postfix reload")
        _run("postfix", "reload")
    deadline = time.monotonic() + 30
    _poll(f"Postfix's greeting on {HOST}:{PORT}", deadline, lambda: read_greeting(HOST, PORT, 5.0))
    return postfix
