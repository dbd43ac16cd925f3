"""Errors a user can cause, with the text shown to them (never a traceback).

Trust: shared by every tier. ``ConfigError`` names the file, the line and the key.
"""

from pathlib import Path


class SimmtaError(Exception):
    """An error the user can fix; ``simmta`` prints it and exits with status 2."""


class ConfigError(SimmtaError):
    def __init__(self, path: Path | str | None, line: int | None, key: str | None, what: str):
        self.path, self.line, self.key, self.what = path, line, key, what
        where = str(path) if path else "<defaults>"
        if line:
            where += f", line {line}"
        if key:
            where += f", key '{key}'"
        super().__init__(f"{where}: {what}")
