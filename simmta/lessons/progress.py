"""Saved lesson progress, per user and per lesson (like rustlings' progress file).

One JSON file, ``$XDG_STATE_HOME/simmta/lessons/progress.json`` (default
``~/.local/state/...``; ``$SIMMTA_LESSON_PROGRESS`` overrides the path), maps a
lesson's key (``02-life-of-a-message``) to ``{"completed": [step numbers],
"current": index, "finished": bool}``. Written atomically (temporary file, then
rename), so a crash never leaves half a file. A path that exists and is not a
regular file (``SIMMTA_LESSON_PROGRESS=/dev/null``) keeps no progress and is
never read, written or replaced: the rename would put a file where the device was.

Trust: the file belongs to the user; a damaged file is treated as no progress
rather than an error.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any


def default_path() -> Path:
    if env := os.environ.get("SIMMTA_LESSON_PROGRESS"):
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "simmta" / "lessons" / "progress.json"


class ProgressStore:
    def __init__(self, path: Path | None = None):
        self.path = path or default_path()
        self._lock = threading.Lock()

    def keeps_nothing(self) -> bool:
        """The path is a device, a FIFO or a directory: nothing is kept there."""
        try:
            return not stat.S_ISREG(self.path.stat().st_mode)
        except OSError:
            return False  # not there yet: put() creates it

    def load(self) -> dict[str, dict[str, Any]]:
        if self.keeps_nothing():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, dict)}

    def get(self, key: str) -> dict[str, Any]:
        return self.load().get(key, {})

    def put(self, key: str, record: dict[str, Any]) -> None:
        with self._lock:
            if self.keeps_nothing():
                return
            data = self.load()
            data[key] = record
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".progress-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(data, f, indent=1, sort_keys=True)
                os.replace(tmp, self.path)
            except OSError:
                Path(tmp).unlink(missing_ok=True)
                raise

    def forget(self, key: str) -> None:
        data = self.load()
        if key in data:
            self.put(key, {})
