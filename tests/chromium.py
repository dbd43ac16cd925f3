"""Test kit: headless Chromium driven over the DevTools protocol on a pipe.

No browser-automation library: Chromium's ``--remote-debugging-pipe`` reads
protocol commands on fd 3 and writes replies on fd 4 (JSON, NUL-terminated),
so the standard library is enough. ``terminal_text()`` reads what the page's
terminal emulator (xterm.js inside textual.js, drawn on a canvas) holds in
its buffer: a script added before the page loads keeps a reference to the
terminal object when textual.js stores it.
"""

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mtakit import require_tool

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-pipe",
)

# The protocol pipe on fds 3 and 4, then exec Chromium (moved above 10 first: no clash).
FDS_3_AND_4 = """import fcntl, os, sys
high = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3]]
os.dup2(high[0], 3)
os.dup2(high[1], 4)
for fd in high:
    os.close(fd)
os.execv(sys.argv[3], sys.argv[3:])
"""

# textual.js does ``this.terminal = new Terminal(...)``: an inherited setter sees it.
KEEP_TERMINAL = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  set(value) {
    Object.defineProperty(this, "terminal", {value, writable: true, configurable: true, enumerable: true});
    if (value && value.buffer && value.buffer.active && !window.__terminal) { window.__terminal = value; }
  },
});
"""

READ_TERMINAL = """(() => {
  const t = window.__terminal;
  if (!t) { return null; }
  const b = t.buffer.active, rows = [];
  for (let y = 0; y < t.rows; y++) {
    const line = b.getLine(b.viewportY + y);
    rows.push(line ? line.translateToString(true) : "");
  }
  return rows.join("\\n");
})()"""


class Chromium:
    """One headless browser (a fresh profile, removed on close); ``new_page()`` opens a tab."""

    def __init__(self, width: int = 1280, height: int = 800) -> None:
        binary = require_tool("chromium")
        self.profile = Path(tempfile.mkdtemp(prefix="simmta-chromium-"))
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser = os.pipe()
        cmd = [
            sys.executable,
            "-c",
            FDS_3_AND_4,
            str(to_browser),
            str(from_browser),
            binary,
            *FLAGS,
            f"--user-data-dir={self.profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            cmd,
            pass_fds=(to_browser, from_browser),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._next = 0
        self._buffer = b""

    def new_page(self) -> "Page":
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        page = Page(self, self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"])
        page.call("Page.enable")
        page.call("Page.addScriptToEvaluateOnNewDocument", source=KEEP_TERMINAL)
        return page

    def call(self, method: str, session: str = "", timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._next:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return dict(reply.get("result", {}))
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise TimeoutError(f"chromium did not answer {method}")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the protocol pipe")
            self._buffer += chunk

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._to_browser)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            os.close(self._from_browser)
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One tab, driven through its own protocol session."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser, self.session = browser, session

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        return self.browser.call(method, session=self.session, **params)

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def terminal_text(self) -> str:
        return self.evaluate(READ_TERMINAL) or ""

    def press(self, key: str) -> None:
        """A real key press into the terminal (its hidden textarea has the focus)."""
        self.evaluate("document.querySelector('.xterm-helper-textarea').focus()")
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, text=key if kind == "keyDown" else "")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path
