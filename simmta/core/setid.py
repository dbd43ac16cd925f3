"""Which files carry a set-uid or set-gid bit: the audit behind "no set-uid".

``scan(roots)`` walks the given directories (without following symbolic
links, bounded in the number of files) and reports every regular file whose
mode has S_ISUID or S_ISGID, with the modes of the directories a lesson asks
about. master runs it for ``simmta ctl scan`` over the instance and simmta's
own installation, so what the student sees is what the file system says.

Trust: reads metadata only (lstat), never file contents; paths are shown inert.
"""

import os
import stat
import sys
from pathlib import Path
from typing import Any

import simmta

MAX_FILES = 200_000  # a scan never walks more than this


def install_roots() -> list[Path]:
    """simmta's own installation: the package and the Python that runs it."""
    exe = Path(sys.executable).resolve()
    return [Path(simmta.__file__).resolve().parent, exe]


def scan(roots: list[Path]) -> dict[str, Any]:
    found: list[str] = []
    checked = 0
    for root in roots:
        if root.is_file():
            checked += 1
            if os.lstat(root).st_mode & (stat.S_ISUID | stat.S_ISGID):
                found.append(f"{stat.filemode(os.lstat(root).st_mode)} {root}")
            continue
        for top, dirs, files in os.walk(root, onerror=lambda _e: None):
            for name in files:
                checked += 1
                path = Path(top) / name
                try:
                    mode = os.lstat(path).st_mode
                except OSError:
                    continue
                if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
                    found.append(f"{stat.filemode(mode)} {path}")
            if checked >= MAX_FILES:
                dirs.clear()
    return {"roots": [str(r) for r in roots], "setid": found[:50], "checked": checked}


def mode_of(path: Path) -> str:
    """``drwx-wx-wt 1733`` style: the permission string and the octal mode."""
    try:
        mode = os.lstat(path).st_mode
    except OSError as e:
        return f"missing ({e.strerror})"
    return f"{stat.filemode(mode)} {stat.S_IMODE(mode):04o}"


def protected_hardlinks() -> str:
    """The kernel's fs.protected_hardlinks setting ("1": on), or why it is unknown."""
    try:
        return Path("/proc/sys/fs/protected_hardlinks").read_text().strip()
    except OSError as e:
        return f"unknown ({e.strerror})"
