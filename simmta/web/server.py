"""The web server of ``simmta serve``: the TUI in browsers, one app process per session.

Built from textual-serve's pieces (its browser terminal ``textual.js`` and
static files, its ``AppService`` for the packet protocol of Textual's web
driver) around checks it does not make:

- Two secret tokens, one per role, in the URL path (``/s/TOKEN/``): the page
  and its websocket need one; the presenter's app acts on the MTA, a
  viewer's app refuses every action and every file write
  (``SimmtaApp(watch_only=True)``).
- The Host header must name this machine (an IP literal, ``localhost`` or its
  host name: no DNS rebinding), and the websocket's Origin must be this very
  page, even on loopback: any web page can open a websocket to localhost.
- At most ``max_sessions`` sessions at once; a browser's messages are bounded
  and checked (keys, window size, focus); anything else is ignored.
- Events reach every session from one bus subscription (``fanout``).

Trust: browsers are untrusted. The server runs as an ordinary user (never
root), the instance owner; tokens travel in plain HTTP, which the page and
the command line both say.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import ipaddress
import json
import logging
import secrets
import socket
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from aiohttp import WSMsgType, web
from textual_serve.app_service import AppService
from textual_serve.download_manager import DownloadManager

from simmta.core.pyexec import python_module
from simmta.web.fanout import Fanout

log = logging.getLogger("simmta.serve")

MAX_MESSAGE = 64 * 1024  # bytes in one websocket message from a browser
MAX_KEYS = 4096  # characters of keyboard input in one message
SIZE_LIMITS = ((20, 400), (8, 200))  # columns, rows a browser may ask for
STOP_TIMEOUT = 5.0  # seconds an app gets to quit before it is killed
PAGE = Template((resources.files("simmta.web") / "page.html").read_text())
STATIC = resources.files("textual_serve") / "static"


@dataclass
class Settings:
    instance: Path
    host: str = "127.0.0.1"
    port: int = 0
    max_sessions: int = 20
    theme: str = "dark"
    screenshots: Path | None = None
    allow_hosts: tuple[str, ...] = ()
    tokens: dict[str, str] = field(
        default_factory=lambda: {secrets.token_urlsafe(18): role for role in ("presenter", "viewer")}
    )

    def token(self, role: str) -> str:
        return next(t for t, r in self.tokens.items() if r == role)


def role_of(settings: Settings, token: str) -> str | None:
    """The role a token grants (compared in constant time), or None."""
    found = None
    for known, role in settings.tokens.items():
        if hmac.compare_digest(known.encode(), token.encode()):
            found = role
    return found


def host_allowed(settings: Settings, host: str) -> bool:
    """Host header check: this machine's names and addresses only (DNS rebinding)."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    if name in ("localhost", *(h.lower() for h in settings.allow_hosts)):
        return True
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(name)
        return True
    return name in (socket.gethostname().lower(), socket.getfqdn().lower())


def clamp(value: Any, limits: tuple[int, int], default: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return max(limits[0], min(limits[1], number))


class Session(AppService):
    """One browser's app process: textual-serve's packet relay, our process and meta."""

    def __init__(self, ws: web.WebSocketResponse, settings: Settings, role: str, events_fd: int) -> None:
        super().__init__(
            "simmta-session",
            write_bytes=ws.send_bytes,
            write_str=ws.send_str,
            close=self._close,
            download_manager=DownloadManager(),
        )
        self.settings, self.role, self.events_fd, self.ws = settings, role, events_fd, ws

    async def _close(self) -> None:
        await self.ws.close()

    async def _open_app_process(self, width: int = 80, height: int = 24) -> asyncio.subprocess.Process:
        env = self._build_environment(width, height)
        argv = python_module(
            "simmta.web.child",
            "--fd",
            str(self.events_fd),
            "--role",
            self.role,
            "--instance",
            str(self.settings.instance),
            "--theme",
            self.settings.theme,
            *(["--screenshots", str(self.settings.screenshots)] if self.settings.screenshots else []),
        )
        self._process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            pass_fds=(self.events_fd,),
        )
        assert self._process.stdin is not None
        self._stdin = self._process.stdin
        return self._process

    async def on_meta(self, data: bytes) -> None:
        """Only "the app exited" matters; no URL opening, no file delivery to browsers."""
        with contextlib.suppress(ValueError):
            if json.loads(data).get("type") == "exit":
                await self.remote_close()

    async def stop(self) -> None:
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
            await asyncio.wait_for(super().stop(), STOP_TIMEOUT)
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()


class Server:
    def __init__(self, settings: Settings, fanout: Fanout) -> None:
        self.settings, self.fanout = settings, fanout
        self.sessions: set[Session] = set()
        self.slots = 0  # sessions admitted (starting or running)
        self.refused: dict[str, int] = {"token": 0, "host": 0, "origin": 0, "full": 0}
        self.served = 0

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard], client_max_size=MAX_MESSAGE)
        app.add_routes(
            [
                web.get("/s/{token}/", self.page),
                web.get("/s/{token}/ws", self.websocket),
                web.static("/static", Path(str(STATIC))),
            ]
        )
        return app

    @web.middleware
    async def guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not host_allowed(self.settings, request.host):
            self.refused["host"] += 1
            raise web.HTTPMisdirectedRequest(text="simmta serve: unknown Host\n")
        response = await handler(request)
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def role(self, request: web.Request) -> str:
        role = role_of(self.settings, request.match_info["token"])
        if role is None:
            self.refused["token"] += 1
            raise web.HTTPForbidden(
                text="simmta serve: this link's token is not valid (ask for the new one)\n"
            )
        return role

    async def page(self, request: web.Request) -> web.Response:
        role = self.role(request)
        on_network = not ipaddress.ip_address(self.settings.host).is_loopback
        body = PAGE.substitute(
            role=role,
            article="the" if role == "presenter" else "a",
            role_line={
                "presenter": "You are the <b>presenter</b>: your keys act on the MTA (send, kill, pace).",
                "viewer": "You are a <b>viewer</b>: look around as you like; only the presenter can act "
                "on the MTA.",
            }[role],
            scope="This server is open to the network: share the viewer link only in a classroom you trust."
            if on_network
            else "This server listens on loopback only.",
            websocket_url=html.escape(f"ws://{request.host}/s/{request.match_info['token']}/ws"),
            font_size=clamp(request.query.get("fontsize"), (8, 48), 16),
        )
        headers = {
            "Content-Security-Policy": (
                "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                f"font-src 'self'; img-src 'self' data:; connect-src ws://{request.host}; "
                "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
            ),
            "Cache-Control": "no-store",
        }
        return web.Response(text=body, content_type="text/html", headers=headers)

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        role = self.role(request)
        if request.headers.get("Origin") != f"http://{request.host}":
            self.refused["origin"] += 1
            raise web.HTTPForbidden(text="simmta serve: a websocket must come from this server's page\n")
        if self.slots >= self.settings.max_sessions:
            self.refused["full"] += 1
            raise web.HTTPServiceUnavailable(
                text=f"simmta serve: full ({self.settings.max_sessions} sessions); try again later\n"
            )
        self.slots += 1
        try:
            return await self._session(request, role)
        finally:
            self.slots -= 1

    async def _session(self, request: web.Request, role: str) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=15, max_msg_size=MAX_MESSAGE)
        await ws.prepare(request)
        (wmin, wmax), (hmin, hmax) = SIZE_LIMITS
        width = clamp(request.query.get("width"), (wmin, wmax), 80)
        height = clamp(request.query.get("height"), (hmin, hmax), 24)
        self.served += 1
        theirs, feed = await self.fanout.join(f"serve: {role} session {self.served}")
        session = Session(ws, self.settings, role, theirs.fileno())
        try:
            await session.start(width, height)
        finally:
            theirs.close()  # the app has its own copy
        self.sessions.add(session)
        log.info("%s session %d from %s", role, self.served, request.remote)
        try:
            await self._relay(ws, session)
        finally:
            self.sessions.discard(session)
            await session.stop()
            self.fanout.leave(feed)
            await ws.close()
        return ws

    async def _relay(self, ws: web.WebSocketResponse, session: Session) -> None:
        """A browser's messages to its app: keys, window size, focus; nothing else."""
        (wmin, wmax), (hmin, hmax) = SIZE_LIMITS
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                envelope = json.loads(message.data)
            except ValueError:
                continue
            if not isinstance(envelope, list) or not envelope:
                continue
            kind, body = envelope[0], envelope[1] if len(envelope) > 1 else None
            if kind == "stdin" and isinstance(body, str) and len(body) <= MAX_KEYS:
                await session.send_bytes(body.encode("utf-8", "replace"))
            elif kind == "resize" and isinstance(body, dict):
                await session.set_terminal_size(
                    clamp(body.get("width"), (wmin, wmax), 80), clamp(body.get("height"), (hmin, hmax), 24)
                )
            elif kind == "ping" and isinstance(body, str) and len(body) < 64:
                await ws.send_json(["pong", body])
            elif kind == "focus":
                await session.focus()
            elif kind == "blur":
                await session.blur()

    async def close(self) -> None:
        await asyncio.gather(*(s.stop() for s in list(self.sessions)), return_exceptions=True)


def urls(settings: Settings, port: int) -> dict[str, str]:
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    if ipaddress.ip_address(settings.host).is_unspecified:
        host = socket.gethostname()
    return {role: f"http://{host}:{port}/s/{settings.token(role)}/" for role in ("presenter", "viewer")}


async def serve(settings: Settings, fanout: Fanout, ready: Any = None) -> str:
    """Run until SIGINT/SIGTERM or the bus closes; returns why it stopped."""
    server = Server(settings, fanout)
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_address=False)
    await site.start()
    port = int(runner.addresses[0][1])
    loop = asyncio.get_running_loop()
    stopped = asyncio.get_running_loop().create_future()

    def stop(why: str) -> None:
        if not stopped.done():
            stopped.set_result(why)

    for sig, name in ((2, "interrupted"), (15, "terminated")):
        loop.add_signal_handler(sig, stop, name)
    relay = asyncio.create_task(fanout.run(stop))
    if ready is not None:
        ready(urls(settings, port), port, server)
    try:
        why: str = await stopped
    finally:
        await server.close()
        fanout.stop()
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
        await runner.cleanup()
    print(
        f"simmta serve: {why}; {server.served} session(s) served, refused {server.refused}",
        file=sys.stderr,
        flush=True,
    )
    return why
