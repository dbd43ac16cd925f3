"""The TUI's own settings, kept per user: for now the theme it opens in.

``$XDG_CONFIG_HOME/simmta/tui.toml`` (default ``~/.config/simmta/tui.toml``)
holds ``theme = "projector"``; ``simmta tui --theme projector --remember``
writes it. A bad file is an error naming the file and key, never a traceback.
Trust: the user's own file.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from simmta.core.errors import SimmtaError

THEMES = ("dark", "light", "projector")


def path() -> Path:
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "simmta" / "tui.toml"


def default_theme() -> str:
    """The remembered theme, or dark."""
    p = path()
    if not p.exists():
        return "dark"
    try:
        data = tomllib.loads(p.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise SimmtaError(f"{p}: {e}") from None
    theme = data.get("theme", "dark")
    if theme not in THEMES:
        raise SimmtaError(f"{p}: key 'theme': expected one of {', '.join(THEMES)}, got {theme!r}")
    return str(theme)


def remember_theme(theme: str) -> Path:
    p = path()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(f'theme = "{theme}"\n', "utf-8")
    return p
