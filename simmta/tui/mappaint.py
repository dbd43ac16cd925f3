"""Paints a map layout onto a character grid: frames, edges, arrowheads, boxes, tokens.

Each cell holds one single-width glyph and the name of a style (a component
class of the diagram widget, so every theme colours it). ``static(layout)``
paints what changes only on resize or a new services table; ``overlay(...)``
paints what changes with the model (box facts, the lit path, tokens), as
{row: {column: (glyph, style)}}, so the widget can tell which rows changed.

Line glyphs come from a direction bitmask (N E S W); where an edge crosses a
region frame it gets a crossing glyph of that frame's kind (╫ through the
jail's double frame, ╂ through root's heavy one), so a crossing is seen.

Pure Python. Trust: text is already inert; only glyphs from here are added.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from simmta.tui.mapfacts import Facts
from simmta.tui.maplayout import (
    OPPOSITE,
    Cell,
    E,
    Layout,
    N,
    Rect,
    Route,
    S,
    W,
    frame_texts,
    simulated_region,
)
from simmta.tui.playback import Token

LINE = {
    E | W: "─", N | S: "│", E: "─", W: "─", N: "│", S: "│",
    E | S: "╭", W | S: "╮", N | E: "╰", N | W: "╯",
    N | S | E: "├", N | S | W: "┤", E | W | S: "┬", E | W | N: "┴", N | E | S | W: "┼",
}  # fmt: skip
ARROW = {E: "▶", W: "◀", S: "▼", N: "▲"}
# Frame glyphs: top-left, top, top-right, side, bottom-left, bottom, bottom-right, right side.
FRAMES = {
    "rounded": "╭─╮│╰─╯│",
    "double": "╔═╗║╚═╝║",
    "double-dashed": "╔╍╗╏╚╍╝╏",
    "square": "┌─┐│└─┘│",
    "dashed": "┌╌┐╎└╌┘╎",
    "heavy": "┏━┓┃┗━┛┃",
    "heavy-dashed": "┏┅┓┇┗┅┛┇",
    "block": "▛▀▜▌▙▄▟▐",
}
REGION_FRAME = {
    "internet": ("rounded", "rounded"),
    "jail": ("double", "double-dashed"),
    "unpriv": ("square", "dashed"),
    "root": ("heavy", "heavy-dashed"),
    "users": ("block", "block"),
}
# A line through a frame: (frame glyph, line axis) -> crossing glyph.
CROSSING = {
    ("║", E | W): "╫", ("═", N | S): "╪", ("┃", E | W): "╂", ("━", N | S): "┿",
    ("│", E | W): "┼", ("─", N | S): "┼",
}  # fmt: skip
TOKEN, FOLLOWED = "●", "◆"

Grid = list[list[tuple[str, str]]]
Overlay = dict[int, dict[int, tuple[str, str]]]


@dataclass
class Painted:
    grid: Grid
    clicks: dict[Cell, str]  # cell -> node (a click selects it)


def frame_kind(key: str, mode: str) -> str:
    enforced, dashed = REGION_FRAME[key]
    return dashed if simulated_region(key, mode) else enforced


def _rect(grid: Grid, r: Rect, glyphs: str, style: str) -> None:
    tl, top, tr, side, bl, bottom, br, rside = tuple(glyphs)
    for x in range(r.x + 1, r.x1):
        _put(grid, x, r.y, top, style)
        _put(grid, x, r.y1, bottom, style)
    for y in range(r.y + 1, r.y1):
        _put(grid, r.x, y, side, style)
        _put(grid, r.x1, y, rside, style)
    for x, y, g in ((r.x, r.y, tl), (r.x1, r.y, tr), (r.x, r.y1, bl), (r.x1, r.y1, br)):
        _put(grid, x, y, g, style)


def _put(grid: Grid, x: int, y: int, glyph: str, style: str) -> None:
    if 0 <= y < len(grid) and 0 <= x < len(grid[y]):
        grid[y][x] = (glyph, style)


def _text(grid: Grid, x: int, y: int, text: str, style: str, limit: int) -> None:
    for i, ch in enumerate(text[: max(0, limit)]):
        _put(grid, x + i, y, ch, style)


def static(lay: Layout) -> Painted:
    """Frames, titles, edges and arrowheads, in the layout's privilege mode (real, rootless, ...)."""
    grid: Grid = [[(" ", "map--blank") for _ in range(lay.width)] for _ in range(lay.height)]
    clicks: dict[Cell, str] = {}
    for key, f in lay.frames.items():
        style = f"map--region-{key}"
        _rect(grid, f, FRAMES[frame_kind(key, lay.mode)], style)
        title, tag = frame_texts(lay, key)
        _text(grid, f.x + 1, f.y, title, f"{style}-title", f.w - 2)
        if tag:
            _text(grid, max(f.x + 1, f.x1 - len(tag)), f.y1, tag, "map--simulated", f.w - 2)
    bits: dict[Cell, int] = {}
    kinds: dict[Cell, str] = {}
    for route in lay.routes:
        for a, b in pairwise(route.cells):
            d = _dir(a, b)
            bits[a] = bits.get(a, 0) | d
            bits[b] = bits.get(b, 0) | OPPOSITE[d]
        for c in route.cells:
            kinds[c] = (
                "map--edge" if route.kind == "ipc" or kinds.get(c) == "map--edge" else "map--edge-queue"
            )
        if len(route.cells) == 1:
            bits[route.cells[0]] = bits.get(route.cells[0], 0) | _into(route.cells[0], lay.boxes[route.dst])
    for cell, mask in bits.items():
        x, y = cell
        under = grid[y][x][0]
        axis = E | W if mask & (E | W) and not mask & (N | S) else N | S if not mask & (E | W) else 0
        glyph = CROSSING.get((under, axis)) or LINE.get(mask, "┼")
        style = kinds[cell] + ("-crossing" if (under, axis) in CROSSING else "")
        _put(grid, x, y, glyph, style)
    for route in lay.routes:
        for cell, box in _heads(route, lay):
            _put(grid, cell[0], cell[1], ARROW[_into(cell, box)], kinds[cell])
    for node, box in lay.boxes.items():
        for y in range(box.y, box.y1 + 1):
            for x in range(box.x, box.x1 + 1):
                clicks[(x, y)] = node
    return Painted(grid, clicks)


def _heads(route: Route, lay: Layout) -> list[tuple[Cell, Rect]]:
    out = [(route.cells[-1], lay.boxes[route.dst])]
    if route.both:
        out.append((route.cells[0], lay.boxes[route.src]))
    return out


def _dir(a: Cell, b: Cell) -> int:
    dx, dy = b[0] - a[0], b[1] - a[1]
    return E if dx > 0 else W if dx < 0 else S if dy > 0 else N


def _into(cell: Cell, box: Rect) -> int:
    x, y = cell
    if x < box.x:
        return E
    if x > box.x1:
        return W
    return S if y < box.y else N


def box_style(f: Facts, node: str, lay: Layout, selected: bool) -> tuple[str, str]:
    """(frame style, glyph set) of a box."""
    if selected:
        return "map--selected", FRAMES["heavy" if f.root else "square"]
    if f.root:
        return "map--box-root", FRAMES["heavy"]
    if f.internet:
        return "map--box-internet", FRAMES["double"]
    kind = "queue" if node.endswith("/") or f.name.endswith("/") else "box"
    return f"map--{kind}", FRAMES["rounded" if kind == "queue" else "square"]


def overlay_boxes(lay: Layout, facts: dict[str, Facts], selected: str | None, out: Overlay) -> None:
    for node, box in lay.boxes.items():
        f = facts[node]
        style, glyphs = box_style(f, node, lay, node == selected)
        text_style = "map--box-busy" if f.busy else "map--box-text"
        if box.h == 1:  # a chip: the name and its count on one line
            chip = fit_chip(f.chips, box.w)
            for i, ch in enumerate(chip):
                out.setdefault(box.y, {})[box.x + i] = (ch, style)
            if f.result and box.y + 1 < lay.height:
                _line(out, box.x, box.y + 1, f.result.short, _result_style(f), box.w + 4)
            continue
        for y in range(box.y, box.y1 + 1):
            row = out.setdefault(y, {})
            for x in range(box.x, box.x1 + 1):
                row[x] = (" ", text_style)
        g: Grid = [[(" ", text_style)] * box.w for _ in range(box.h)]
        _rect(g, Rect(0, 0, box.w, box.h), glyphs, style)
        title = fit_title(f, box.w - 2)
        _text(g, 1, 0, title, f"{style}-title", box.w - 2)
        wide = max(map(len, f.lines), default=0) <= box.w - 2
        tall = sum(1 for line in f.lines if line) <= box.h - 2
        # The short form where the lines do not fit, or where it says on one line what they
        # say on two (a queue's count and its retry countdown in a one-line box).
        shown = f.lines if not f.short or (wide and (tall or len(f.short) > 1)) else f.short
        lines = shown[: box.h - 2] if not f.result else [*shown[:1], f.result.short][-(box.h - 2) :]
        for i, line in enumerate(lines):
            is_result = f.result is not None and line == f.result.short
            _text(g, 1, 1 + i, line, _result_style(f) if is_result else text_style, box.w - 2)
        for dy, row_cells in enumerate(g):
            for dx, cell in enumerate(row_cells):
                out.setdefault(box.y + dy, {})[box.x + dx] = cell


def fit_title(f: Facts, width: int) -> str:
    """A framed box's title: its name, else its short name, else that without the marker (the
    frame's style says root or the Internet too); cut only if even that is too long."""
    forms = [f"{f.marker}{f.name}", *([f"{f.marker}{f.compact}", f.compact] if f.compact else [])]
    return next((t for t in forms if len(t) <= width), clip(forms[-1], width))


def fit_chip(chips: list[str], width: int) -> str:
    """The longest one-line form that fits ``width`` (with a space each side if there is room)."""
    for pad in (1, 0):
        for chip in chips:
            if len(chip) + 2 * pad <= width:
                return f"{' ' * pad}{chip}".ljust(width)
    return clip(chips[-1], width).ljust(width)


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells, an ellipsis saying where it was cut."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"[:width]


def _result_style(f: Facts) -> str:
    return "map--result-bad" if f.result and f.result.ok else "map--result"


def _line(out: Overlay, x: int, y: int, text: str, style: str, limit: int) -> None:
    row = out.setdefault(y, {})
    for i, ch in enumerate(text[:limit]):
        row[x + i] = (ch, style)


def overlay_path(lay: Layout, hops: list[tuple[str, str]], current: int, out: Overlay) -> None:
    """The followed message's path so far, lit; its current hop brighter."""
    for i, (src, dst) in enumerate(hops):
        route = lay.route(src, dst)
        if route is None:
            continue
        style = "map--edge-current" if i == current else "map--edge-lit"
        for x, y in route.cells:
            glyph = _glyph_at(out, x, y)
            out.setdefault(y, {})[x] = (glyph, style)


def _glyph_at(out: Overlay, x: int, y: int) -> str:
    return out.get(y, {}).get(x, ("", ""))[0]


def overlay_tokens(lay: Layout, tokens: list[Token], followed: str | None, out: Overlay) -> None:
    """One glyph per token on its edge; where several share a cell, their count."""
    at: dict[Cell, list[Token]] = {}
    for t in tokens:
        route = lay.route(t.src, t.dst)
        if route is None:
            continue
        cells = route.along(t.src)
        at.setdefault(cells[min(len(cells) - 1, int(t.progress * len(cells)))], []).append(t)
    for (x, y), here in at.items():
        is_followed = any(t.ident == followed for t in here)
        style = "map--token-followed" if is_followed else "map--token"
        glyph = (FOLLOWED if is_followed else TOKEN) if len(here) == 1 else str(min(len(here), 9))
        if len(here) > 9:
            glyph = "+"
        out.setdefault(y, {})[x] = (glyph, style)


def resolve(grid: Grid, out: Overlay) -> None:
    """Overlay cells that kept no glyph of their own show the static glyph under them."""
    for y, row in out.items():
        for x, (glyph, style) in list(row.items()):
            if not glyph and 0 <= y < len(grid) and 0 <= x < len(grid[y]):
                row[x] = (grid[y][x][0], style)
