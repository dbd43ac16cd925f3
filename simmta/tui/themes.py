"""The projector theme: maximum contrast, nothing that washes out on a beamer.

Dark and light are Textual's own (textual-dark, textual-light).
Trust: constants.
"""

from __future__ import annotations

from textual.theme import Theme

PROJECTOR = Theme(
    name="projector",
    primary="#FFFF00",
    secondary="#00FFFF",
    accent="#FF00FF",
    warning="#FFAA00",
    error="#FF3333",
    success="#00FF00",
    foreground="#FFFFFF",
    background="#000000",
    surface="#000000",
    panel="#202020",
    boost="#303030",
    dark=True,
    luminosity_spread=0.3,
    text_alpha=1.0,
)
THEMES = {"dark": "textual-dark", "light": "textual-light", "projector": "projector"}
