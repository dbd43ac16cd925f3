"""``simmta serve``: the TUI in a real browser, and the server's checks.

The server must run as an ordinary user; as root the tests run it (and the
MTA) as uid 65534. The browser test drives headless Chromium over the
DevTools protocol (tests/chromium.py) and reads what the page's terminal
emulator holds.
"""

import asyncio
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from chromium import Chromium
from mtakit import NOBODY, Mta, maildir_files, nobody_can_run_python, wait_for

from simmta.web.fanout import Fanout

REPO = Path(__file__).resolve().parent.parent


class Served:
    """``simmta serve --instance`` for a running MTA, with the links it printed."""

    def __init__(self, mta: Mta, *args: str) -> None:
        self.proc = subprocess.Popen(
            mta.command("serve", *args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.links = wait_for(self._links, 30, "simmta serve to print its links")
        self.port = int(self.links["presenter"].split(":")[2].split("/")[0])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def _links(self) -> dict[str, str] | None:
        found = dict(re.findall(r"(presenter|viewer) link.*?(http://\S+)", "".join(self.lines)))
        return found if len(found) == 2 else None

    def token(self, role: str) -> str:
        return self.links[role].rstrip("/").rsplit("/", 1)[1]

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self.reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return "".join(self.lines)


@pytest.fixture
def user_mta(simmta_tmp: Path) -> Iterator[Mta]:
    """An MTA of an ordinary user: uid 65534 when the tests run as root."""
    if os.geteuid() != 0:
        m = Mta(simmta_tmp / "inst")
    else:
        assert nobody_can_run_python()
        base = simmta_tmp / "nobody"
        base.mkdir()
        os.chown(base, NOBODY, NOBODY)
        m = Mta(base / "inst", user=NOBODY)
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture
def served(user_mta: Mta) -> Iterator[Served]:
    s = Served(user_mta, "--max-sessions", "2")
    try:
        yield s
    finally:
        s.stop()


def request(port: int, path: str, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def websocket(port: int, token: str, origin: str | None) -> int:
    """A websocket handshake's status (the connection closed again)."""
    conn = handshake(port, token, origin)
    try:
        return conn.getresponse().status
    finally:
        conn.close()


def handshake(port: int, token: str, origin: str | None) -> http.client.HTTPConnection:
    """A websocket handshake sent; a 101 keeps a session open until the caller closes it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Host": f"127.0.0.1:{port}",
    }
    if origin is not None:
        headers["Origin"] = origin
    conn.request("GET", f"/s/{token}/ws", headers=headers)
    return conn


def test_serve_refuses_root(simmta_tmp: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the refusal is for root")
    done = subprocess.run(
        [sys.executable, "-m", "simmta", "serve", "--instance", str(simmta_tmp / "x")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode != 0
    assert "does not run as root" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_tokens_host_origin_and_cap(served: Served) -> None:
    port, good = served.port, {"Host": f"127.0.0.1:{served.port}"}
    page = served.links["viewer"].split(str(port), 1)[1]
    assert request(port, page, good) == 200
    assert request(port, "/s/not-a-token/", good) == 403
    assert request(port, page, {"Host": f"attacker.example:{port}"}) == 421  # DNS rebinding
    origin = f"http://127.0.0.1:{port}"
    assert websocket(port, "not-a-token", origin) == 403
    assert websocket(port, served.token("viewer"), None) == 403  # no Origin: not our page
    assert websocket(port, served.token("viewer"), f"http://evil.example:{port}") == 403
    assert websocket(port, served.token("viewer"), "http://localhost:1") == 403
    open_sessions = [handshake(port, served.token(role), origin) for role in ("presenter", "viewer")]
    try:
        assert [c.getresponse().status for c in open_sessions] == [101, 101]
        assert websocket(port, served.token("viewer"), origin) == 503  # --max-sessions 2
    finally:
        for c in open_sessions:
            c.close()
    out = served.stop()
    assert "refused {'token': 2, 'host': 1, 'origin': 3, 'full': 1}" in out, out


@pytest.mark.slow
def test_browser_presenter_sends_viewer_cannot(served: Served, user_mta: Mta, tmp_path: Path) -> None:
    browser = Chromium(width=1400, height=900)
    try:
        presenter, viewer = browser.new_page(), browser.new_page()
        presenter.open(served.links["presenter"])
        wait_for(
            lambda: "INTERNET" in presenter.terminal_text() and "smtpd" in presenter.terminal_text(),
            60,
            "the map in the presenter's page",
        )
        assert "presenter" in presenter.evaluate("document.getElementById('role').textContent")
        assert "Plain HTTP" in presenter.evaluate("document.getElementById('warning').textContent")

        # A message sent by SMTP shows up by its queue ID in what the page renders.
        qid = user_mta.send()
        presenter.press("e")  # the events view
        wait_for(lambda: qid in presenter.terminal_text(), 30, f"{qid} in the presenter's page")

        # The presenter's send key sends ...
        before = len(maildir_files(user_mta.maildir("bob")))
        presenter.press("s")
        wait_for(lambda: len(maildir_files(user_mta.maildir("bob"))) == before + 1, 30, "presenter's mail")

        # ... a viewer's is refused, and nothing is sent.
        viewer.open(served.links["viewer"])
        wait_for(lambda: "INTERNET" in viewer.terminal_text(), 60, "the map in the viewer's page")
        assert "viewer" in viewer.evaluate("document.getElementById('role').textContent")
        viewer.press("s")
        wait_for(lambda: "you cannot act on the MTA" in viewer.terminal_text(), 30, "the viewer's refusal")
        shot = viewer.screenshot(tmp_path / "viewer.png")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")

        # Two browser sessions, one bus subscription.
        subscribers = user_mta.live_status()["events"]["subscribers"]
        assert len(subscribers) == 1, subscribers
    finally:
        browser.close()
    assert len(maildir_files(user_mta.maildir("bob"))) == before + 1  # the viewer sent nothing


def test_bind_elsewhere_warns_before_anything(user_mta: Mta) -> None:
    """A non-loopback --bind prints the plain-HTTP warning (here nothing runs on --instance,
    so it stops right after: no socket is ever bound off loopback)."""
    cmd = user_mta.command("serve", "--bind", "10.255.255.1")
    cmd[cmd.index("--instance") + 1] += "-absent"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no simmta running" in done.stderr
    assert "WARNING: listening on 10.255.255.1, not loopback, over plain HTTP" in done.stderr


def test_fanout_late_joiner_gets_snapshot_then_exactly_the_rest(mta: Mta) -> None:
    """Two sessions, one joining mid-stream: each gets a snapshot, then every line of the one
    shared subscription with a higher sequence number, once, in order."""

    async def scenario() -> tuple[list[int], dict[str, list[dict[str, object]]]]:
        fan = Fanout(mta.instance / "run" / "bus.sock")
        await fan.start()
        relay = asyncio.create_task(fan.run(lambda why: None))
        received: dict[str, list[dict[str, object]]] = {"early": [], "late": []}

        async def read(name: str, sock: socket.socket) -> None:
            reader, writer = await asyncio.open_connection(sock=sock)
            while line := await reader.readline():
                received[name].append(json.loads(line))
            writer.close()

        early_sock, _ = await fan.join("early")
        readers = [asyncio.create_task(read("early", early_sock))]
        first = await asyncio.to_thread(mta.send)
        await wait_async(lambda: delivered(received["early"], first))
        late_sock, _ = await fan.join("late")
        readers.append(asyncio.create_task(read("late", late_sock)))
        second = await asyncio.to_thread(mta.send)
        await wait_async(lambda: delivered(received["late"], second) and delivered(received["early"], second))
        subscribers = await asyncio.to_thread(
            lambda: wait_for(
                lambda: len(mta.live_status()["events"]["subscribers"]) == 1, 20, "one subscriber"
            )
        )
        fan.stop()  # the sessions get what was forwarded so far, then EOF; nothing more is
        shared = [seq for seq, _ in fan.ring]
        relay.cancel()
        await asyncio.gather(relay, *readers, return_exceptions=True)
        assert fan.snapshots == 2 and subscribers
        return shared, received

    shared, received = asyncio.run(scenario())
    for name, events in received.items():
        assert events[0]["kind"] == "snapshot", name
        start = int(events[0]["seq"])  # type: ignore[call-overload]
        assert [e["seq"] for e in events[1:]] == [s for s in shared if s > start], name
    assert received["late"][0]["seq"] > received["early"][0]["seq"]


def delivered(events: list[dict[str, object]], qid: str) -> bool:
    return any(e["kind"] == "delivery" and e["type"] == "delivered" and e["qid"] == qid for e in events)


async def wait_async(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)
