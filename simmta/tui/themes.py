"""simmta's three themes (dark, light, projector) and the map's region colours in each.

The region colours keep a hue that means something (the Internet orange, the
jail yellow, unprivileged blue, root purple, the users' side green; on the
light theme's white, where a yellow that reads is amber, the Internet is red) and were
chosen, per background, by a search maximising the smallest CIELAB distance
between any two regions with normal vision and under simulated protanopia and
deuteranopia; tests/tui/test_themes.py checks every theme for WCAG contrast
against the background and for those distances (thresholds stated there).
Colour is never the only cue: each region also has its own frame style, glyph
and label (tui/regions.py, tui/mappaint.py).

Dark and light start from Textual's own themes (textual-dark, textual-light):
dark only adds the map's variables; light also draws on white with near-black text. Trust: constants.
"""

from __future__ import annotations

from dataclasses import replace

from textual.theme import BUILTIN_THEMES, Theme

REGION_KEYS = ("internet", "jail", "unpriv", "root", "users")
# theme -> (background the map is drawn on, region -> colour)
PALETTES: dict[str, tuple[str, dict[str, str]]] = {
    "simmta-dark": (
        "#121212",
        {
            "internet": "#B8720F",
            "jail": "#F3FF05",
            "unpriv": "#A8D2FF",
            "root": "#AE57FF",
            "users": "#80FFB0",
        },
    ),
    "simmta-light": (
        "#FFFFFF",
        {
            "internet": "#9A1322",
            "jail": "#9E6602",
            "unpriv": "#0E53CF",
            "root": "#901088",
            "users": "#0F7B60",
        },
    ),
    "projector": (
        "#000000",
        {
            "internet": "#CC5324",
            "jail": "#FFFF1A",
            "unpriv": "#378DA4",
            "root": "#A442FF",
            "users": "#A8FFCA",
        },
    ),
}


def _variables(name: str) -> dict[str, str]:
    _, colours = PALETTES[name]
    out = {f"map-{k}": v for k, v in colours.items()}
    out["map-root-muted"] = f"{colours['root']} 25%"
    return out


DARK = replace(BUILTIN_THEMES["textual-dark"], name="simmta-dark", variables=_variables("simmta-dark"))
# Light: white paper and near-black ink (Textual's own light theme is grey on grey, which a
# projector turns to mud), saturated region inks.
LIGHT = replace(
    BUILTIN_THEMES["textual-light"],
    name="simmta-light",
    primary="#0B4F9C",
    background=PALETTES["simmta-light"][0],
    surface="#F2F4F7",
    panel="#E3E8EF",
    foreground="#111111",
    text_alpha=1.0,
    variables=_variables("simmta-light"),
)
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
    variables=_variables("projector"),
)
ALL = (DARK, LIGHT, PROJECTOR)
THEMES = {"dark": DARK.name, "light": LIGHT.name, "projector": PROJECTOR.name}
DEFAULT_VARIABLES = _variables("simmta-dark")  # for any other theme the palette offers
