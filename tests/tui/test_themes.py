"""Region colours in every theme: readable on the background, and apart for colour-blind eyes.

For each theme (tui/themes.py) and each pair of map regions this computes
- the WCAG 2.1 contrast ratio of the region colour against the theme's background
  (https://www.w3.org/TR/WCAG21/#dfn-contrast-ratio), required >= MIN_CONTRAST;
- the CIE76 colour difference (Delta E in CIELAB) between the two regions' colours
  as seen with normal vision and under simulated protanopia and deuteranopia
  (Machado, Oliveira and Fernandes 2009, severity 1.0, applied in linear sRGB),
  required >= MIN_DELTA_E.
Thresholds: 4.5:1 is WCAG's AA level for normal text (region titles are text);
Delta E 20 is far above the ~2.3 "just noticeable difference", so two frames
are told apart at a glance on a washed-out projector, not just side by side.
Trust: test code.
"""

from __future__ import annotations

import itertools

import pytest

from simmta.tui.themes import PALETTES, REGION_KEYS

MIN_CONTRAST = 4.5
MIN_DELTA_E = 20.0
MACHADO = {
    "protanopia": (
        (0.152286, 1.052583, -0.204868),
        (0.114503, 0.786281, 0.099216),
        (-0.003882, -0.048116, 1.051998),
    ),
    "deuteranopia": (
        (0.367322, 0.860646, -0.227968),
        (0.280085, 0.672501, 0.047413),
        (-0.011820, 0.042940, 0.968881),
    ),
}


def linear(hex_colour: str) -> tuple[float, float, float]:
    def one(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    h = hex_colour.lstrip("#")
    r, g, b = (one(int(h[i : i + 2], 16)) for i in (0, 2, 4))
    return r, g, b


def luminance(rgb: tuple[float, float, float]) -> float:
    r, g, b = rgb
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(linear(a)), luminance(linear(b))), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def simulate(rgb: tuple[float, float, float], kind: str | None) -> tuple[float, float, float]:
    if kind is None:
        return rgb
    m = MACHADO[kind]
    out = [sum(m[i][j] * rgb[j] for j in range(3)) for i in range(3)]
    return out[0], out[1], out[2]


def lab(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
    r, g, b = (min(1.0, max(0.0, c)) for c in rgb)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116

    fx, fy, fz = f(x), f(y), f(z)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def delta_e(a: str, b: str, kind: str | None) -> float:
    la, lb = lab(simulate(linear(a), kind)), lab(simulate(linear(b), kind))
    return sum((p - q) ** 2 for p, q in zip(la, lb, strict=True)) ** 0.5


@pytest.mark.parametrize("theme", PALETTES)
def test_region_colours_are_readable_on_the_background(theme: str) -> None:
    background, colours = PALETTES[theme]
    assert set(colours) == set(REGION_KEYS)
    for key, colour in colours.items():
        assert contrast(colour, background) >= MIN_CONTRAST, (
            theme,
            key,
            round(contrast(colour, background), 2),
        )


@pytest.mark.parametrize("vision", [None, "protanopia", "deuteranopia"])
@pytest.mark.parametrize("theme", PALETTES)
def test_region_colours_stay_apart_for_colour_blind_eyes(theme: str, vision: str | None) -> None:
    _, colours = PALETTES[theme]
    for (ka, a), (kb, b) in itertools.combinations(colours.items(), 2):
        assert delta_e(a, b, vision) >= MIN_DELTA_E, (theme, vision, ka, kb, round(delta_e(a, b, vision), 1))


def test_the_checks_can_fail() -> None:
    """The measures tell apart what they should: orange and red-orange collapse under deuteranopia."""
    assert contrast("#000000", "#FFFFFF") == pytest.approx(21.0)
    assert delta_e("#FF7F00", "#FF4000", "deuteranopia") < MIN_DELTA_E
    assert contrast("#1A237E", "#121212") < MIN_CONTRAST  # the old dark-blue-on-near-black root
