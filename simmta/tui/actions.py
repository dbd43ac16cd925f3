"""What the TUI can do to a running MTA: control requests and sending mail.

Plain blocking functions (no Textual); the app runs them in worker threads and
shows the result. Mail goes in the front door like any client's: SMTP to the
address master published, or ``simmta sendmail`` for a local submission.
Control goes through ``simmta.core.control.request`` (master checks the peer).

Trust: the user's own actions on the user's own instance; nothing here
interprets what master answers beyond "ok" and a message.
"""

from __future__ import annotations

import smtplib
import subprocess
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from simmta.core import control
from simmta.core.errors import SimmtaError
from simmta.core.events import safe_text
from simmta.core.pyexec import python_module
from simmta.tools.lab import account_label, mode_label

SENDER = "alice@simmta.test"
DEFAULT_RCPT = "bob@simmta.test"
REMOTE_RCPT = "someone@example.net"


def compose(rcpt: str, number: int = 1, of: int = 1) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = rcpt
    msg["Subject"] = f"Hello from simmta ({number}/{of})" if of > 1 else "Hello from simmta"
    msg.set_content("A message sent from the simmta TUI.\n")
    return msg


def send_mail(host: str, port: int, rcpt: str, count: int = 1, timeout: float = 30.0) -> str:
    """Send ``count`` messages over one SMTP connection; a one-line result."""
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            smtp.ehlo("tui.simmta.test")
            for i in range(1, count + 1):
                smtp.send_message(compose(rcpt, i, count), from_addr=SENDER, to_addrs=[rcpt])
    except (OSError, smtplib.SMTPException) as e:
        raise SimmtaError(f"sending to {host}:{port} failed: {e}") from None
    return f"sent {count} message{'s' if count > 1 else ''} to {rcpt}"


def submit_local(instance: Path, rcpt: str, timeout: float = 30.0) -> str:
    """A local submission through ``simmta sendmail`` (maildrop -> pickup)."""
    message = compose(rcpt).as_bytes()
    cmd = python_module("simmta", "sendmail", "--instance", str(instance), "-f", SENDER, rcpt)
    try:
        done = subprocess.run(cmd, input=message, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SimmtaError(f"sendmail failed: {e}") from None
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SimmtaError(err[-1] if err else f"sendmail exited {done.returncode}")
    return f"submitted locally to {rcpt} (maildrop)"


def cat(instance: Path, qid: str, timeout: float = 10.0) -> list[str]:
    """``simmta cat QID`` (postcat): the queue file's records, or why they cannot be read."""
    cmd = python_module("simmta", "cat", "--instance", str(instance), qid)
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return [f"(simmta cat failed: {e})"]
    out = done.stdout if done.returncode == 0 else done.stderr
    return out.decode("utf-8", "replace").splitlines()[:200]


def compromise(control_socket: Path, service: str) -> str:
    """The compromise lab on one process of ``service``: a one-line summary (the map shows each)."""
    r = control.request(control_socket, "compromise", timeout=30, service=service)
    got = [f"{x['attempt']} {x['outcome']}" for x in r["results"]]
    return safe_text(
        f"compromised {r['program']}[{r['pid']}] as {account_label(r)} ({mode_label(r)}): " + ", ".join(got),
        600,
    )


def request(control_socket: Path, op: str, **args: Any) -> str:
    """One control request; a one-line result (SimmtaError when refused)."""
    return control.describe(op, args, control.request(control_socket, op, **args))
