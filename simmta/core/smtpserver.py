"""aiosmtpd, hardened and instrumented: the SMTP server side smtpd and peer share.

aiosmtpd 1.4.6 parses SMTP; this module closes what it leaves open
(REFERENCE.md section 4): hostile address syntax no longer raises inside the
stdlib parser, an exception is answered 451 4.3.0 instead of a leaking
``500 Error: (Class) text``, every reply carries an enhanced status code,
error and junk-command limits disconnect with 421, an idle timeout says 421
before it closes, and every command and reply is emitted (neutralised and
truncated) for the transcript, a multi-line reply as one event and one write.
Each command's wrapper keeps aiosmtpd's ``@syntax`` attributes, which its HELP
reads; smtpd answers HELP as Postfix does instead (``help_as_postfix``).

aiosmtpd was written for one long-lived server object; an MTA builds one per
connection, and its constructor then spent more time on introspection
(``dir()`` of the protocol and of the handler, ``inspect.signature`` of an
EHLO hook) than the rest of the session's Python code together. ``__dir__``
here lists only the hook names aiosmtpd looks for, handlers have no EHLO hook
(ENHANCEDSTATUSCODES is advertised by ``push``) and a plain ``<local@domain>``
path skips the stdlib's RFC 5322 parser.

Memory does not depend on what a client sends. aiosmtpd's StreamReader has
a limit of line_length_limit and pauses the transport when its buffer holds
twice that; aiosmtpd drains an overlong command line in bounded reads, but in
DATA it keeps every fragment of an overlong line until the line ends (38 MiB
for a 37 MiB line). So the reader's ``readuntil`` is wrapped, at the
transport level, for each connection: in DATA an overlong line is read and
thrown away in chunks of at most the limit until its CRLF, and aiosmtpd's
loop is handed one fixed marker line longer than the limit instead; aiosmtpd
then discards the message, reads on to the final dot and answers ``554 5.6.0``
(Postfix would split the line; simmta refuses it). Past message_size_limit
aiosmtpd keeps nothing more (552 5.3.4). The number of sessions is bounded by
the smtpd process limit: one session per process.

It also runs one SMTP session on a socket that master accepted for us.

Trust: everything here is fed by the network.
"""

import asyncio
import collections
import functools
import itertools
import os
import re
import socket
from typing import Any, cast

from aiosmtpd.smtp import SMTP, Envelope, Session

from simmta.core.address import printable
from simmta.core.events import reply_text, safe_text
from simmta.core.records import SmtpClose, SmtpCommand, SmtpLimit, SmtpOpen, SmtpReject, SmtpReply
from simmta.core.skeleton import Context

_ENHANCED = re.compile(r"^\d\.\d{1,3}\.\d{1,3}(\s|$)")
_NO_ENHANCED = {"220", "354", "334"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_JUNK = {"NOOP", "RSET", "VRFY", "EXPN"}  # not HELP: Postfix does not count it (smtpd.c)
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# <dot-atom@domain> and optional parameters: what nearly every client sends.
_PLAIN_PATH = re.compile(
    rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>"
    r"(?:[ \t]+([^ \t(].*))?\Z",
    re.S,
)
_sessions = itertools.count(1)


def enhance(status: str) -> str:
    """Add an RFC 3463 enhanced status code where aiosmtpd's reply lacks one."""
    code, sep, text = status[:3], status[3:4], status[4:]
    if code in _NO_ENHANCED or sep == "-" or not code.isdigit() or _ENHANCED.match(text):
        return status
    default = {"2": "2.0.0", "4": "4.0.0", "5": "5.5.0"}.get(code[0])
    if code == "552" and "Too much mail data" in text:
        return "552 5.3.4 Error: message file too big"
    if code == "552" and "exceeds fixed maximum message size" in text:  # MAIL SIZE=
        return "552 5.3.4 Error: message size exceeds fixed limit"
    if code == "500" and "Line too long" in text:  # in DATA: the message is refused
        return "554 5.6.0 Error: message line too long"
    if code == "502" or "not recognized" in text:
        default = "5.5.2"
    if code == "501":
        default = "5.5.4"
    if code == "503":
        default = "5.5.1"
    return f"{code} {default} {text}" if default else status


def hook_names(cls: type, *prefixes: str) -> tuple[str, ...]:
    """The attribute names of ``cls`` that aiosmtpd looks up by prefix."""
    return tuple(n for n in dir(cls) if n.startswith(prefixes))


class Handler:
    """Base of smtpd's and the peer's handlers: ``dir()`` lists only their hooks."""

    def __init_subclass__(cls) -> None:
        names = hook_names(cls, "handle_", "auth_")
        cls.__dir__ = lambda self: names  # type: ignore[method-assign]


class BareNewline(Exception):
    """A command line ended by LF alone (refused when smtpd_forbid_bare_newline = reject)."""


class InstrumentedSMTP(SMTP):
    """aiosmtpd's SMTP protocol with simmta's limits and transcript events."""

    def __init__(
        self,
        handler: Any,
        ctx: Context,
        *,
        line_length_limit: int,
        soft_errors: int,
        hard_errors: int,
        error_sleep: float,
        junk_limit: int,
        forbid_bare_lf: bool = False,
        strict_envelopes: bool = False,
        postfix_help: bool = False,
        **kwargs: Any,
    ):
        self.line_length_limit = line_length_limit  # read by SMTP.__init__ for its stream
        self.forbid_bare_lf = forbid_bare_lf
        self.strict_envelopes = strict_envelopes
        self.postfix_help = postfix_help  # HELP as Postfix answers it (help_as_postfix), not aiosmtpd
        super().__init__(handler, **kwargs)
        self.ctx = ctx
        self.sid = f"S{os.getpid():X}.{next(_sessions)}"
        self.qid: str | None = None  # the current message's queue ID, once cleanup assigned it
        self.errors = 0
        self.junk = 0
        self.limits = (soft_errors, hard_errors, error_sleep, junk_limit)
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.verb = ""
        self.continued: list[str] = []  # lines of a multi-line reply before its last

    def __dir__(self) -> tuple[str, ...]:  # see the module docstring
        return _HOOKS

    # Transcript ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.ctx.emit(SmtpOpen(client=_peer(self.session)), self.qid, self.sid)

    def connection_lost(self, error: Exception | None) -> None:
        self.ctx.emit(SmtpClose(client=_peer(self.session)), self.qid, self.sid)
        super().connection_lost(error)
        if not self.closed.done():
            self.closed.set_result(None)

    def _cb_client_connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super()._cb_client_connected(reader, writer)
        read_line = reader.readuntil
        too_long = b"x" * (self.line_length_limit + 1) + b"\r\n"  # see the module docstring
        overlong: list[bool] = []  # in an overlong line now
        ready: collections.deque[bytes] = collections.deque()  # DATA lines split off ahead

        async def readuntil(separator: bytes = b"\n") -> bytes:
            if ready:  # (only ever filled in DATA, and never past its final dot)
                return ready.popleft()
            try:
                line = await read_line(separator)
            except asyncio.LimitOverrunError as e:
                in_data = separator == b"\r\n"
                if not overlong:  # one event per line, however many chunks it takes
                    overlong.append(True)
                    self.ctx.emit(
                        SmtpLimit(limit="line_length_limit", code="554 5.6.0" if in_data else "500 5.5.0"),
                        self.qid,
                        self.sid,
                    )
                if not in_data:  # a command line: aiosmtpd drains it in bounded reads
                    raise
                await _discard_line(reader, read_line, e.consumed, separator)
                overlong.clear()
                return too_long  # aiosmtpd's DATA loop now discards the message and answers at "."
            # The end of an overlong line may have lost its CR to the chunk before: not judged.
            tail_of_overlong = bool(overlong)
            overlong.clear()
            if (
                self.forbid_bare_lf
                and separator == b"\n"
                and not line.endswith(b"\r\n")
                and not tail_of_overlong
            ):
                raise BareNewline  # smtpd_forbid_bare_newline = "reject": commands too
            if separator == b"\r\n" and line != b".\r\n":
                _split_ahead(reader, ready, self.line_length_limit)
            return line

        reader.readuntil = readuntil  # type: ignore[method-assign,assignment]

    def eof_received(self) -> bool | None:
        """The client half-closed: serve what it already sent, then end the session.

        aiosmtpd cancels the session here, dropping commands already received
        (a whole pipelined message from ``nc -N`` or a batch client). Instead
        the reader sees EOF once its buffer is drained; handle_exception ends it.
        """
        return asyncio.StreamReaderProtocol.eof_received(self)

    async def push(self, status: str | bytes | None) -> None:
        if status is None:  # the session is ending at EOF (see handle_exception)
            return
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        if self.verb not in ("EHLO", "HELO"):  # RFC 2034: not on greeting/EHLO lines
            text = enhance(text)
        text = _CONTROL.sub("?", text)  # aiosmtpd echoes commands and VRFY arguments
        if text[3:4] == "-":  # not the last line: sent, and emitted, with the last
            self.continued.append(text)
            return
        if self.verb == "EHLO" and text.startswith("250 "):
            self.continued.append("250-ENHANCEDSTATUSCODES")  # RFC 2034: we send them
        lines, self.continued = [*self.continued, text], []
        code = text[:3]
        soft, hard, sleep, _ = self.limits
        if code[:1] in ("4", "5") and code != "421":
            self.errors += 1
            if self.errors >= hard:
                await self._disconnect(
                    f"421 4.7.0 {self.hostname} Error: too many errors", "smtpd_hard_error_limit"
                )
                return
            if self.errors > soft:
                await asyncio.sleep(sleep)  # tarpit, as Postfix does past the soft limit
        self.ctx.emit(SmtpReply(line=reply_text(lines)), self.qid, self.sid)
        await super().push("\r\n".join(lines))

    async def _disconnect(self, text: str, limit: str) -> None:
        self.ctx.emit(SmtpLimit(limit=limit, code=text[:9]), self.qid, self.sid)
        self.ctx.emit(SmtpReply(line=text), self.qid, self.sid)
        if self.transport is not None:
            self._write_now(text)
            self.transport.close()

    def _timeout_cb(self) -> None:
        text = f"421 4.4.2 {self.hostname} Error: timeout exceeded"
        self.ctx.emit(SmtpLimit(limit="smtpd_timeout", code="421 4.4.2"), self.qid, self.sid)
        if self.transport is not None:
            self._write_now(text)
        super()._timeout_cb()

    def _write_now(self, line: str) -> None:
        """One reply line straight onto the transport (uvloop's transports are not
        subclasses of asyncio's, so no isinstance test: any transport can write)."""
        cast(asyncio.WriteTransport, self.transport).write(line.encode() + b"\r\n")

    def hold_timeout(self) -> None:
        """Stop the idle timer: while cleanup commits, the client is not the one silent."""
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()

    def restart_timeout(self) -> None:
        """A fresh idle period (after the commit, before the reply)."""
        if self.transport is not None and not self.transport.is_closing():
            self._reset_timeout()

    async def help_as_postfix(self) -> None:
        """Postfix's HELP (3.9 and later, smtpd.c ``help_cmd``): ``214 2.0.0 Commands:``
        and the commands it implements, sorted, whatever the argument and at any
        stage; neither junk nor an error. Implemented: what aiosmtpd's own HELP lists
        (the ``@syntax`` of each command; STARTTLS only with a TLS context), but AUTH
        only where a mechanism could be used (TLS, or none required), as Postfix built
        without SASL leaves AUTH out."""
        auth = bool(self._auth_methods) and (bool(self._tls_protocol) or not self._auth_require_tls)
        names = sorted(
            name
            for name, method in self._smtp_methods.items()
            if self._syntax_available(method) and (name != "AUTH" or auth)
        )
        await self.push("214 2.0.0 Commands: " + " ".join(names))

    # Robustness ------------------------------------------------------------
    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's parser, minus the exceptions the stdlib raises on hostile syntax."""
        if not self.local_part_limit and (plain := _PLAIN_PATH.match(arg)):  # same answer, faster
            return plain.group(1), plain.group(2) or ""
        if "\x00" in arg:
            return None, None
        try:
            return super()._getaddr(arg)
        except Exception:
            return None, None

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, BareNewline):
            self.ctx.emit(SmtpReject(code="550 5.5.2", text="bare <LF> received"), self.qid, self.sid)
            return "550 5.5.2 Error: bare <LF> received"
        if isinstance(error, asyncio.IncompleteReadError):  # EOF: all the client sent is served
            if self.transport is not None:
                self.transport.close()
            raise asyncio.CancelledError  # ends aiosmtpd's loop (it pushes None: ignored)
        self.ctx.emit(
            SmtpReject(code="451 4.3.0", text=f"internal error ({type(error).__name__})"), self.qid, self.sid
        )
        return "451 4.3.0 Error: internal error, try again later"


def _command(name: str, base: Any = None):  # one wrapper per SMTP verb: transcript + junk limit
    aiosmtpds = getattr(SMTP, f"smtp_{name}")
    base = base or aiosmtpds

    # wraps: aiosmtpd's HELP lists, and explains, only the methods its @syntax marked
    @functools.wraps(aiosmtpds)
    async def wrapper(self: InstrumentedSMTP, arg: str | None) -> None:  # None: no argument
        line = f"{name} {arg}" if arg else name
        self.verb = name
        if name in _NEW_TRANSACTION:
            self.qid = None  # the next message has no queue ID yet
        self.ctx.emit(SmtpCommand(line=safe_text(line)), self.qid, self.sid)
        if self.strict_envelopes and (status := _bracketless(name, arg)):
            await self.push(status)  # strict_rfc821_envelopes: Postfix's replies
            self.verb = ""
            return
        if name in _JUNK:
            self.junk += 1
            if self.junk > self.limits[3]:
                await self._disconnect(
                    f"421 4.7.0 {self.hostname} Error: too many junk commands", "smtpd_junk_command_limit"
                )
                return
        try:
            await base(self, arg)
            if name in ("HELO", "EHLO") and self.session and self.session.host_name:
                self.session.host_name = printable(self.session.host_name)  # for Received:
        finally:
            self.verb = ""  # replies outside any verb (unknown command, too long) get codes too

    return wrapper


async def _help(self: InstrumentedSMTP, arg: str | None) -> None:
    """HELP: Postfix's where asked (smtpd), aiosmtpd's otherwise (the peer)."""
    if self.postfix_help:
        await self.help_as_postfix()
    else:
        await SMTP.smtp_HELP(self, arg)


_NEW_TRANSACTION = frozenset({"MAIL", "RSET", "HELO", "EHLO"})
for _verb in (
    "HELO",
    "EHLO",
    "MAIL",
    "RCPT",
    "DATA",
    "RSET",
    "NOOP",
    "QUIT",
    "VRFY",
    "HELP",
    "EXPN",
    "STARTTLS",
    "AUTH",
):
    if hasattr(SMTP, f"smtp_{_verb}"):
        setattr(InstrumentedSMTP, f"smtp_{_verb}", _command(_verb, _help if _verb == "HELP" else None))
_HOOKS = hook_names(InstrumentedSMTP, "smtp_", "auth_")


def _split_ahead(reader: asyncio.StreamReader, ready: "collections.deque[bytes]", limit: int) -> None:
    """Move the DATA lines already in ``reader``'s buffer to ``ready`` in one go.

    aiosmtpd reads DATA one ``readuntil`` per line; splitting what has arrived
    at once hands it the very lines ``readuntil`` would, for a fraction of the
    Python calls. Only when that is exact: every line ends in CRLF with no
    other CR or LF in it, none is longer than the reader's limit, and nothing
    past the final dot is taken (pipelined commands stay in the buffer).
    """
    buf: bytearray = reader._buffer  # type: ignore[attr-defined]  # what arrived, in asyncio's StreamReader
    if buf.startswith(b".\r\n"):
        return
    end = buf.find(b"\r\n.\r\n")
    end = end + 5 if end >= 0 else buf.rfind(b"\r\n") + 2
    if end < 2:
        return
    chunk = bytes(buf[:end])
    crlf = chunk.count(b"\r\n")
    if chunk.count(b"\n") != crlf or chunk.count(b"\r") != crlf:
        return
    lines = chunk.splitlines(keepends=True)
    if max(map(len, lines)) - 2 > limit:
        return
    ready.extend(lines)
    del buf[:end]
    reader._maybe_resume_transport()  # type: ignore[attr-defined]  # as readuntil does after taking


async def _discard_line(
    reader: asyncio.StreamReader, read_line: Any, consumed: int, separator: bytes
) -> None:
    """Consume the rest of an overlong line in chunks of at most the reader's limit, keeping none."""
    while True:
        await reader.read(consumed)
        try:
            await read_line(separator)
            return
        except asyncio.LimitOverrunError as e:
            consumed = e.consumed


def _bracketless(verb: str, arg: str | None) -> str | None:
    """The 501 for ``MAIL FROM:addr`` / ``RCPT TO:addr`` without angle brackets
    (None for a bare ``MAIL``: aiosmtpd answers it, with its syntax)."""
    keyword, why = {
        "MAIL": ("FROM:", "501 5.1.7 Bad sender address syntax"),
        "RCPT": ("TO:", "501 5.1.3 Bad recipient address syntax"),
    }.get(verb, ("", ""))
    if not keyword or not arg or arg[: len(keyword)].upper() != keyword:
        return None
    path = arg[len(keyword) :].lstrip()
    return None if path.startswith("<") else why


def _peer(session: Session | None) -> str:
    peer = getattr(session, "peer", None)
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


async def serve_session(conn: socket.socket, make_protocol: Any) -> InstrumentedSMTP:
    """Run one SMTP session on an accepted socket until the client goes."""
    loop = asyncio.get_running_loop()
    proto: InstrumentedSMTP = make_protocol()
    await loop.connect_accepted_socket(lambda: proto, sock=conn)
    await proto.closed
    return proto


__all__ = ["Envelope", "Handler", "InstrumentedSMTP", "Session", "enhance", "serve_session"]
