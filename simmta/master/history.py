"""A bounded memory of what master's bus streamed, so a late reader can look back.

``simmta events --since 10m`` (and a lesson hint that shows what already
happened) asks master for it over the control socket. The bus records each
line it streams with the time it streamed it; the history keeps the newest
ones only, bounded in count and in bytes, so memory never grows with the
traffic. Like the stream itself it holds only what happened while someone
watched: with no subscriber the daemons stay quiet and nothing is recorded.

Trust: lines are the bus's own (validated and stamped); readers get copies.
"""

import itertools
import time
from collections import deque
from typing import Any

MAX_EVENTS = 20_000
MAX_BYTES = 8 << 20
MAX_REPLY_BYTES = 4 << 20  # what one history request returns at most (the newest part)


class History:
    def __init__(self, max_events: int = MAX_EVENTS, max_bytes: int = MAX_BYTES):
        self.lines: deque[tuple[float, bytes]] = deque()
        self.bytes = 0
        self.max_events, self.max_bytes = max_events, max_bytes
        self.forgotten = 0  # lines pushed out by the bounds
        self.started = time.monotonic()

    def record(self, lines: list[bytes]) -> None:
        self.lines.extend(zip(itertools.repeat(time.monotonic()), lines))  # (no Python per line)
        self.bytes += sum(map(len, lines))
        while self.lines and (len(self.lines) > self.max_events or self.bytes > self.max_bytes):
            self.bytes -= len(self.lines.popleft()[1])
            self.forgotten += 1

    def since(self, seconds: float | None) -> dict[str, Any]:
        """The lines of the last ``seconds`` (None: all kept), the newest part if too many.

        ``complete`` says whether nothing in that window was forgotten or cut.
        """
        cutoff = time.monotonic() - seconds if seconds is not None else float("-inf")
        picked: list[str] = []
        size, cut = 0, False
        for when, line in reversed(self.lines):
            if when < cutoff:
                break
            if size + len(line) > MAX_REPLY_BYTES:
                cut = True
                break
            picked.append(line.decode("utf-8", "replace"))
            size += len(line)
        picked.reverse()
        window_start = cutoff if seconds is not None else self.started
        lost = self.forgotten > 0 and (not self.lines or self.lines[0][0] > window_start)
        return {"lines": picked, "forgotten": self.forgotten, "complete": not (cut or lost)}
