"""Read a TOML file and point at the line behind any key, for clear errors.

Trust: reads user-written files; everything it returns is still validated by
the caller (config or services table).
"""

import re
import tomllib
from pathlib import Path
from typing import Any

from simmta.core.errors import ConfigError


class TomlFile:
    """A parsed TOML document that remembers its text to locate keys."""

    def __init__(self, path: Path, text: str | None = None):
        self.path = path
        try:
            self.text = path.read_text(encoding="utf-8") if text is None else text
        except OSError as e:
            raise ConfigError(path, None, None, f"cannot read: {e.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(path, None, None, "not UTF-8 text") from None
        try:
            self.data: dict[str, Any] = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as e:
            m = re.search(r"\(at line (\d+), column \d+\)", str(e))
            line = int(m.group(1)) if m else None
            msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
            raise ConfigError(path, line, None, f"TOML syntax error: {msg}") from None
        self._lines = self.text.splitlines()

    def line_of(self, key: str, occurrence: int = 0, after_line: int = 0) -> int | None:
        """The 1-based line where ``key = ...`` is written (the nth time, after a line)."""
        pat = re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\")\s*=")
        seen = 0
        for i, text in enumerate(self._lines[after_line:], start=after_line + 1):
            if pat.match(text):
                if seen == occurrence:
                    return i
                seen += 1
        return None

    def table_lines(self, header: str) -> list[int]:
        """Lines where ``[[header]]`` array-of-tables entries start."""
        pat = re.compile(rf"^\s*\[\[\s*{re.escape(header)}\s*\]\]")
        return [i for i, t in enumerate(self._lines, start=1) if pat.match(t)]

    def error(self, key: str | None, what: str, line: int | None = None) -> ConfigError:
        if line is None and key:
            line = self.line_of(key.rsplit(".", 1)[-1])
        return ConfigError(self.path, line, key, what)
