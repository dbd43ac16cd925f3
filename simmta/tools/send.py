"""``simmta send``: an SMTP client for demonstrations (one message or a burst).

Talks real SMTP (smtplib) to the instance's smtpd, or to ``--server HOST:PORT``.
A burst (``--count N --concurrency C``) shows a rich progress bar and a summary.

``--raw LINE...`` speaks SMTP by hand, for inputs smtplib will not send (a bare
LF, a NUL, an overlong command): each LINE is sent followed by CRLF, after the
server's reply to the previous one (after a 354 reply, the lines up to ``.``
go without waiting), and the whole transcript is printed. Inside a LINE,
``\n``, ``\r``, ``\0`` and ``\\`` stand for LF, CR, NUL and a backslash, and
``{x*N}`` for N copies of x: a recipe that works from any shell, with no
``nc`` or ``printf`` needed.

Trust: a client; it prints what the server answered, inertly.
"""

import argparse
import re
import smtplib
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from simmta.core.errors import SimmtaError
from simmta.core.events import safe_text
from simmta.core.instance import Instance


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("send", parents=[parent], help="send mail over SMTP (one message or a burst)")
    p.add_argument("--from", dest="sender", default="alice@simmta.test")
    p.add_argument(
        "--to",
        dest="recipients",
        action="append",
        metavar="ADDR",
        help="recipient (repeat for more; default bob@simmta.test)",
    )
    p.add_argument("--subject", default="Hello from simmta")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--body", default="This message travelled through a real MTA.\n")
    g.add_argument("--file", help="send this file's bytes as the whole message (headers and body)")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--server", metavar="HOST:PORT", help="default: the instance's smtpd")
    p.add_argument("--helo", default=None, help="name to give in EHLO")
    p.add_argument(
        "--source",
        metavar="ADDR",
        help="connect from this local address (e.g. 127.0.0.2: a client outside mynetworks)",
    )
    p.add_argument(
        "--raw",
        nargs="+",
        metavar="LINE",
        help="speak SMTP by hand: send each LINE + CRLF after the previous reply "
        "(\\n bare LF, \\r CR, \\0 NUL, {x*N} N copies of x)",
    )
    p.set_defaults(func=cmd_send)


_ESCAPES = {"n": "\n", "r": "\r", "0": "\0", "\\": "\\"}
_RAW_TOKEN = re.compile(r"\\(.)|\{(.{1,8})\*(\d{1,7})\}")
MAX_RAW_LINE = 10_000_000  # what one LINE may expand to


def raw_line(text: str) -> bytes:
    """One --raw LINE with its escapes and repetitions expanded (no CRLF yet)."""

    def expand(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            if m.group(1) not in _ESCAPES:
                raise SimmtaError(f"--raw: unknown escape \\{m.group(1)} (known: \\n \\r \\0 \\\\)")
            return _ESCAPES[m.group(1)]
        return m.group(2) * int(m.group(3))

    if sum(len(m.group(2)) * int(m.group(3)) for m in _RAW_TOKEN.finditer(text) if m.group(2)) > MAX_RAW_LINE:
        raise SimmtaError(f"--raw: a line may expand to at most {MAX_RAW_LINE} characters")
    return _RAW_TOKEN.sub(expand, text).encode("utf-8", "surrogateescape")


def read_reply(stream: Any) -> str:
    """One complete (possibly multi-line) SMTP reply; '' if the server closed."""
    lines = []
    for _ in range(100):  # bounded: no reply has more lines than this
        raw = stream.readline(4096)
        if not raw:
            break
        text = raw.decode(errors="replace").rstrip("\r\n")
        lines.append(text)
        if len(text) < 4 or text[3] != "-":
            break
    return " / ".join(lines)


def shown(line: bytes, limit: int = 120) -> str:
    """A sent line as the transcript shows it: escapes visible, long runs cut."""
    text = safe_text(
        line.decode("utf-8", "replace").replace("\n", "\\n").replace("\r", "\\r").replace("\0", "\\0"), limit
    )
    return text if len(line) <= limit else f"{text} ... ({len(line)} bytes)"


def send_raw(
    host: str, port: int, lines: list[str], timeout: float = 60, source: str | None = None
) -> tuple[list[str], bool]:
    """The transcript of a hand-made session; False if the server hung up before the end."""
    transcript: list[str] = []
    try:
        with (
            socket.create_connection(
                (host, port), timeout=timeout, source_address=(source, 0) if source else None
            ) as sock,
            sock.makefile("rb") as stream,
        ):
            transcript.append("S: " + read_reply(stream))
            in_data = False
            for item in lines:
                line = raw_line(item)
                sock.sendall(line + b"\r\n")
                transcript.append("C: " + shown(line))
                if in_data and item != ".":
                    continue
                reply = read_reply(stream)
                transcript.append("S: " + (reply or "(connection closed)"))
                if not reply:
                    return transcript, False
                in_data = item.upper() == "DATA" and reply.startswith("354")
    except OSError as e:
        transcript.append(f"connection: {e.strerror or e}")
        return transcript, False
    return transcript, True


def build_message(sender: str, recipients: list[str], subject: str, body: str, n: int = 0) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = sender, ", ".join(recipients)
    msg["Subject"] = subject if n == 0 else f"{subject} #{n}"
    msg["Date"], msg["Message-ID"] = formatdate(), make_msgid(domain="client.simmta.test")
    msg.set_content(body)
    return msg.as_bytes()


def send_one(
    host: str,
    port: int,
    sender: str,
    recipients: list[str],
    data: bytes,
    helo: str | None = None,
    timeout: float = 60,
    source: str | None = None,
) -> str:
    """Send one message; the server's final reply text (raises SimmtaError on refusal)."""
    try:
        with smtplib.SMTP(
            host, port, local_hostname=helo, timeout=timeout, source_address=(source, 0) if source else None
        ) as s:
            s.ehlo()
            s.mail(sender)
            refused = {}
            for r in recipients:
                code, text = s.rcpt(r)
                if code >= 400:
                    refused[r] = f"{code} {text.decode('utf-8', 'replace')}"
            if len(refused) == len(recipients):
                raise SimmtaError(
                    "all recipients refused: " + "; ".join(f"{k}: {v}" for k, v in refused.items())
                )
            code, text = s.data(data)
            if code != 250:
                raise SimmtaError(f"{code} {text.decode('utf-8', 'replace')}")
            return text.decode("utf-8", "replace")
    except smtplib.SMTPResponseException as e:
        raise SimmtaError(f"{e.smtp_code} {safe_text(e.smtp_error)}") from None
    except (OSError, smtplib.SMTPException) as e:
        raise SimmtaError(f"cannot send to {host}:{port}: {e}") from None


def server_of(args: argparse.Namespace) -> tuple[str, int]:
    if args.server:
        host, _, port = args.server.rpartition(":")
        if not port.isdigit():
            raise SimmtaError("--server takes HOST:PORT")
        return host, int(port)
    st = Instance(args.instance).status()
    return st["smtp"]["host"], int(st["smtp"]["port"])


def cmd_send(args: argparse.Namespace) -> int:
    host, port = server_of(args)
    if args.raw:
        transcript, whole = send_raw(host, port, args.raw, source=args.source)
        print("\n".join(transcript))
        return 0 if whole else 1
    rcpts = args.recipients or ["bob@simmta.test"]
    if args.count < 1 or args.concurrency < 1:
        raise SimmtaError("--count and --concurrency must be at least 1")
    if args.file:
        try:
            data = Path(args.file).read_bytes()
        except OSError as e:
            raise SimmtaError(f"{args.file}: {e.strerror}") from None
    if args.count == 1:
        if not args.file:
            data = build_message(args.sender, rcpts, args.subject, args.body)
        print(safe_text(send_one(host, port, args.sender, rcpts, data, args.helo, source=args.source)))
        return 0
    console = Console()
    ok, failed = 0, []
    lock = threading.Lock()
    start = time.monotonic()

    def one(n: int) -> None:
        nonlocal ok
        payload = data if args.file else build_message(args.sender, rcpts, args.subject, args.body, n)
        try:
            send_one(host, port, args.sender, rcpts, payload, args.helo, source=args.source)
            with lock:
                ok += 1
        except SimmtaError as e:
            with lock:
                failed.append(str(e))
        progress.advance(task)

    with Progress(console=console) as progress:
        task = progress.add_task(f"sending {args.count} messages", total=args.count)
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            list(pool.map(one, range(1, args.count + 1)))
    elapsed = time.monotonic() - start
    console.print(
        f"{ok} accepted, {len(failed)} refused in {elapsed:.2f} s ({ok / elapsed:.0f} msg/s)", highlight=False
    )
    for reason in sorted(set(failed))[:5]:
        console.print(f"  refused: {safe_text(reason)}", highlight=False, markup=False)
    return 0 if not failed else 1
