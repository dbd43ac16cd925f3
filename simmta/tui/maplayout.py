"""Where the map puts each box, region frame and edge: a designed slot grid and orthogonal routes.

The topology comes from the services graph (``regions.members`` and the
graph's edges); the placement is designed, not computed: ``SLOTS`` gives each
known node a (column, row) cell of a logical grid, per size class, and
``SPANS`` gives each region a rectangle of cells, so the regions nest as
frames (the Internet on the left, the chroot jail on top, unprivileged, root
and the users' Maildirs below). A node the table does not know (a profile
with other services) takes the next free cell of its region; a full region
gets one more grid row. Edges are routed orthogonally by a small A* search
over the character grid that pays for bends and for running along other
lines, so they cross region frames where the path really crosses them.
A pair of opposite edges (qmgr reads and writes deferred/) is one line with
two arrowheads.

Pure Python (networkx for the graph). Trust: node names come from the
validated services table or a snapshot (already ``safe_text``).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from itertools import pairwise

import networkx as nx

from simmta.core import names, privilege
from simmta.tui import regions
from simmta.tui.mapfacts import label_needs, label_widths

Cell = tuple[int, int]
N, E, S, W = 1, 2, 4, 8
STEP = {N: (0, -1), E: (1, 0), S: (0, 1), W: (-1, 0)}
OPPOSITE = {N: S, S: N, E: W, W: E}
TITLE = 16  # a frame cell under the region's title
# What the router pays for a turn, for running along another line, for crossing one.
BEND, ALONG, CROSS = 2.5, 16.0, 8.0

# The logical grid: 6 columns (Internet | four of the jail, over unprivileged | root, over the
# users' Maildirs), 4 rows: a message enters on the left, is queued across the top, scheduled by
# qmgr at the bottom and handed right, to local (root) and down into the Maildirs.
_GRID = {
    "internet": (0, 0),
    names.PEER: (0, 2),
    "peer-mailbox": (0, 3),
    names.SMTPD: (1, 0),
    names.CLEANUP: (2, 0),
    names.INCOMING: (3, 0),
    names.ACTIVE: (4, 0),
    names.PICKUP: (1, 1),
    names.BOUNCE: (2, 1),
    names.DEFERRED: (3, 1),
    names.HOLD: (4, 1),
    names.MAILDROP: (1, 2),
    names.SMTP: (2, 2),
    names.CORRUPT: (4, 2),
    names.QMGR: (3, 3),
    names.MASTER: (5, 0),
    names.LOCAL: (5, 2),
    "mailboxes": (5, 3),
}
# Region -> (first column, last column, first row, last row) of the logical grid.
_SPANS = {
    "internet": (0, 0, 0, 3),
    "jail": (1, 4, 0, 2),
    "unpriv": (1, 4, 3, 3),
    "root": (5, 5, 0, 2),
    "users": (5, 5, 3, 3),
}
# A region the table leaves empty gives its cells to a neighbour: a design with no chroot
# (qmail) has unprivileged take the jail's cells; one where all runs as root (Sendmail) has root
# take the middle of the map.
MERGE = {"jail": ("unpriv", "root"), "unpriv": ("jail", "root", "users"), "root": ("unpriv", "jail")}
SIZE_CLASSES = ("compact", "normal", "large")
SLOTS: dict[str, dict[str, Cell]] = {cls: dict(_GRID) for cls in SIZE_CLASSES}
SPANS: dict[str, dict[str, tuple[int, int, int, int]]] = {cls: dict(_SPANS) for cls in SIZE_CLASSES}
# Box height per size class: one line (a chip), a frame around one line, a frame around two.
BOX_HEIGHT = {"compact": 1, "normal": 3, "large": 4}
# Column widths by weight: at 80 columns the four middle ones get room for "incoming/ 0";
# on a large screen the queue directories show their tokens in a row.
COLUMN_WEIGHT = {
    "compact": (12, 13, 13, 13, 13, 14),
    "normal": (6, 5, 5, 5, 5, 6),
    "large": (5, 6, 6, 6, 6, 6),
}


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int

    @property
    def x1(self) -> int:
        return self.x + self.w - 1

    @property
    def y1(self) -> int:
        return self.y + self.h - 1

    def __contains__(self, cell: object) -> bool:
        if not isinstance(cell, tuple):
            return False
        x, y = cell
        return self.x <= x <= self.x1 and self.y <= y <= self.y1


@dataclass
class Route:
    src: str
    dst: str
    kind: str  # ipc, reads, writes
    cells: list[Cell]  # from next to src to next to dst
    both: bool = False  # one line standing for src->dst and dst->src

    def along(self, src: str) -> list[Cell]:
        """The cells in the direction of travel from ``src``."""
        return self.cells if src == self.src else self.cells[::-1]


@dataclass
class Layout:
    width: int
    height: int
    size_class: str
    boxes: dict[str, Rect] = field(default_factory=dict)
    frames: dict[str, Rect] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    region: dict[str, str] = field(default_factory=dict)  # node -> region key
    mode: str = "real"  # the privilege mode the frames' tags speak of
    short: bool = False  # short region titles and tags (a narrow map)
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)  # the graph drawn (with master and every queue)

    def route(self, src: str, dst: str) -> Route | None:
        for r in self.routes:
            if (r.src, r.dst) == (src, dst) or (r.both and (r.dst, r.src) == (src, dst)):
                return r
        return None


def size_class(width: int, height: int, rows: int = 4) -> str:
    per_row = height // max(rows, 1)
    if per_row >= 7 and width >= 100:
        return "large"
    if per_row >= 5 and width >= 70:
        return "normal"
    return "compact"


def place(graph: nx.DiGraph, cls: str) -> tuple[dict[str, Cell], dict[str, tuple[int, int, int, int]]]:
    """Node -> cell, region -> span: the designed slots, plus free cells for unknown nodes."""
    members = regions.members(graph)
    spans = _merged(SPANS[cls], {k for k, ns in members.items() if ns})
    region = {n: k for k, ns in members.items() for n in ns}
    slots = {n: c for n, c in SLOTS[cls].items() if n in graph and _inside(spans[region[n]], c)}
    for key in (r.key for r in regions.REGIONS):
        for node in members[key]:
            if node in slots:
                continue
            while (cell := _free_cell(spans[key], slots)) is None:
                spans = _grow(spans, key)
            slots[node] = cell
    return slots, spans


def _merged(
    spans: dict[str, tuple[int, int, int, int]], present: set[str]
) -> dict[str, tuple[int, int, int, int]]:
    """The design's spans with each empty region's cells given to the first neighbour in ``MERGE``
    whose span grown over them stays clear of every other present region."""
    out = dict(spans)
    for empty in (r.key for r in regions.REGIONS if r.key not in present and r.key in MERGE):
        for into in (k for k in MERGE[empty] if k in present):
            a, b = out[empty], out[into]
            grown = (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))
            others = (out[k] for k in present if k != into)
            if not any(_overlap(grown, o) for o in others):
                out[into] = grown
                break
    return out


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1] and a[2] <= b[3] and b[2] <= a[3]


def _inside(span: tuple[int, int, int, int], cell: Cell) -> bool:
    c0, c1, r0, r1 = span
    return c0 <= cell[0] <= c1 and r0 <= cell[1] <= r1


def _free_cell(span: tuple[int, int, int, int], slots: dict[str, Cell]) -> Cell | None:
    taken = set(slots.values())
    c0, c1, r0, r1 = span
    return next(((c, r) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1) if (c, r) not in taken), None)


def _grow(spans: dict[str, tuple[int, int, int, int]], key: str) -> dict[str, tuple[int, int, int, int]]:
    """One more grid row under region ``key``: regions across that row stretch, those below move."""
    row = spans[key][3]
    out = {}
    for k, (c0, c1, r0, r1) in spans.items():
        if r0 > row:
            out[k] = (c0, c1, r0 + 1, r1 + 1)
        elif r1 >= row:
            out[k] = (c0, c1, r0, r1 + 1)
        else:
            out[k] = (c0, c1, r0, r1)
    return out


def _cuts(total: int, weights: list[int]) -> list[int]:
    """Start offsets of len(weights) bands sharing ``total`` cells by weight (and the end)."""
    whole = sum(weights)
    out, acc = [0], 0
    for w in weights:
        acc += w
        out.append(total * acc // whole)
    return out


def layout(graph: nx.DiGraph, width: int, height: int, mode: str = "real") -> Layout:
    """Boxes, frames and routes for a widget of ``width`` x ``height`` cells; ``mode`` is the
    privilege mode, which says what each frame's tag reads (kept clear of lines). The size class
    is the largest the height allows whose box names all fit the width (``label_needs``): where
    a class's boxes would be cut, the next smaller one is drawn (compact, at the least)."""
    g = _drawn(graph)
    rows_guess = 1 + max(r1 for *_, r1 in SPANS["normal"].values())
    first = size_class(width, height, rows_guess)
    out = None
    for cls in SIZE_CLASSES[SIZE_CLASSES.index(first) :: -1]:
        out = _place_boxes(g, width, height, mode, cls, last=cls == SIZE_CLASSES[0])
        if out is not None:
            break
    assert out is not None  # compact is always drawn
    out.routes = route_all(g, out)
    return out


def _place_boxes(g: nx.DiGraph, width: int, height: int, mode: str, cls: str, last: bool) -> Layout | None:
    """The frames and boxes of size class ``cls``, or None where a box's name would not fit
    (unless ``last``: then as well as the width allows)."""
    slots, spans = place(g, cls)
    label_width = label_widths(g, cls)
    out = Layout(width, height, cls, graph=g, mode=mode, short=width < 110)
    for node in slots:
        out.region[node] = regions.region_of(g, node) if node != names.MASTER else "root"
    used = {k: sp for k, sp in spans.items() if k in out.region.values()}
    ncols = 1 + max(c1 for _, c1, _, _ in spans.values())
    weights = (list(COLUMN_WEIGHT[cls]) + [5] * (ncols - len(COLUMN_WEIGHT[cls])))[:ncols]
    needs = label_needs(g, cls)
    xs = _columns(width, weights, _least(slots, used, out.region, needs, ncols))
    if xs is None:
        if not last:
            return None
        xs = _cuts(width, weights)
    bh = BOX_HEIGHT[cls]
    stores_only = [
        all(g.nodes[n].get("kind") == "store" for n, c in slots.items() if c[1] == r)
        for r in range(1 + max(r1 for *_, r1 in used.values()))
    ]
    # A row of stores only (the Maildirs) needs room for its boxes, not for lines between them.
    ys, bands = _rows(used, height, bh, [1 if s else 3 for s in stores_only])
    for key, (c0, c1, r0, r1) in used.items():
        out.frames[key] = Rect(xs[c0], ys[r0], xs[c1 + 1] - xs[c0] - 1, ys[r1 + 1] - ys[r0] - bands[r1][2])
    for node, (c, r) in slots.items():
        c0, c1, _, _ = used[out.region[node]]
        # Inside the column: clear of the region's frame by a column (a frame's right side
        # stands one column in from the next region), of the next box by two.
        lo = xs[c] + (2 if c == c0 else 1)
        room = xs[c + 1] - xs[c] - _margins(c, c0, c1)
        top, free, _ = bands[r]
        bw = max(3, min(room, max(label_width.get(node, len(node)), needs.get(node, 0))))
        h = min(bh, max(1, free))
        out.boxes[node] = Rect(lo + (room - bw) // 2, ys[r] + top + (free - h) // 2, bw, h)
    return out


def _least(
    slots: dict[str, Cell],
    spans: dict[str, tuple[int, int, int, int]],
    region: dict[str, str],
    needs: dict[str, int],
    ncols: int,
) -> list[int]:
    """The cells each column must have for its boxes' names to be whole (and the gaps beside)."""
    least = [0] * ncols
    for node, (c, _) in slots.items():
        c0, c1, _, _ = spans[region[node]]
        least[c] = max(least[c], needs.get(node, len(node)) + _margins(c, c0, c1))
    return least


def _drawn(graph: nx.DiGraph) -> nx.DiGraph:
    """The graph the map draws: master and every message queue, whether the table has them."""
    g = graph.copy()
    g.add_node(names.MASTER, kind="service", service={"name": names.MASTER, "unpriv": False})
    for q in names.MESSAGE_QUEUES:
        if q not in g:
            g.add_node(q, kind="queue")
    return g


def least_width(graph: nx.DiGraph, cls: str = "compact") -> int:
    """The fewest columns a map of ``graph`` in size class ``cls`` takes with every box's name
    whole (the compact class: what a lesson panel beside the map must leave it)."""
    g = _drawn(graph)
    slots, spans = place(g, cls)
    region = {n: regions.region_of(g, n) if n != names.MASTER else "root" for n in slots}
    ncols = 1 + max(c1 for _, c1, _, _ in spans.values())
    return sum(_least(slots, spans, region, label_needs(g, cls), ncols))


def _margins(c: int, c0: int, c1: int) -> int:
    """Cells of column ``c`` that are not a box's (its region spans columns ``c0`` to ``c1``):
    left of it the frame and a gap (or a gap); right of it a gap, the frame and the column
    between regions (or the gap before the next box)."""
    return (2 if c == c0 else 1) + (3 if c == c1 else 1)


def _columns(width: int, weights: list[int], least: list[int]) -> list[int] | None:
    """Where each column starts (and the end): shared by ``weights`` where that gives every
    column its ``least`` cells, else each its least and the rest by weight; None if the width
    is less than they need together."""
    xs = _cuts(width, weights)
    if all(b - a >= n for a, b, n in zip(xs, xs[1:], least, strict=False)):
        return xs
    spare = width - sum(least)
    if spare < 0:
        return None
    extra = _cuts(spare, weights)
    out, x = [0], 0
    for i, n in enumerate(least):
        x += n + extra[i + 1] - extra[i]
        out.append(x)
    return out


def _rows(
    spans: dict[str, tuple[int, int, int, int]], height: int, box_height: int, weights: list[int]
) -> tuple[list[int], list[tuple[int, int, int]]]:
    """Where each grid row starts, and per row (rows its frame lines take above the boxes;
    rows for boxes and the lines between them: a box's height and a share of the rest by
    ``weights``; the gap under its frames' bottom lines). A frame's top and bottom lines get rows
    of their own, so a box never sits on a region's title or tag, at any size."""
    nrows = 1 + max(r1 for *_, r1 in spans.values())
    tops = [int(any(r0 == r for _, _, r0, _ in spans.values())) for r in range(nrows)]
    bottoms = [int(any(r1 == r for *_, r1 in spans.values())) for r in range(nrows)]
    # A row between a frame's bottom and the top of the one under it, for lines to turn in.
    gaps = [int(bool(bottoms[r] and r + 1 < nrows and tops[r + 1])) for r in range(nrows)]
    fixed = [t + b + g for t, b, g in zip(tops, bottoms, gaps, strict=True)]
    cuts = _cuts(max(0, height - sum(fixed) - box_height * nrows), weights)
    ys, y = [], 0
    bands = []
    for r in range(nrows):
        ys.append(y)
        free = box_height + cuts[r + 1] - cuts[r]
        bands.append((tops[r], free, gaps[r]))
        y += fixed[r] + free
    ys.append(y)
    return ys, bands


def frame_texts(lay: Layout, key: str) -> tuple[str, str]:
    """A region frame's title (top left) and its tag (bottom right: SIMULATED, or what the mode
    changes), each as long as the frame allows."""
    region, f = regions.BY_KEY[key], lay.frames[key]
    room = f.w - 2
    candidates = [f" {region.glyph} {region.label} "] if not lay.short else []
    candidates += [f" {region.glyph} {region.short} ", f"{region.glyph}{region.short}", region.short]
    title = next((t for t in candidates if len(t) <= room), region.short[:room])
    note = regions.mode_note(key, lay.mode, not lay.short)
    if simulated_region(key, lay.mode):
        tag = " SIMULATED " if lay.short else " SIMULATED boundary "
    else:
        tag = f" {note} " if note else ""
    if len(tag) > room:
        tag = tag.strip()[:room]
    return title, tag


def simulated_region(key: str, mode: str) -> bool:
    """Whether this region's boundary is only simulated in this privilege mode (partial: the uid ones)."""
    enforced = privilege.chroot_enforced(mode) if key == "jail" else privilege.uids_enforced(mode)
    return regions.BY_KEY[key].simulated_box is not None and mode in privilege.MODES and not enforced


def route_all(g: nx.DiGraph, lay: Layout) -> list[Route]:
    """Every edge of the graph whose ends have boxes, most important first."""
    order = {"ipc": 0, "writes": 1, "reads": 2}
    edges = [
        (u, v, d.get("kind", "ipc")) for u, v, d in g.edges(data=True) if u in lay.boxes and v in lay.boxes
    ]
    edges.sort(key=lambda e: (order.get(e[2], 3), _distance(lay.boxes[e[0]], lay.boxes[e[1]])))
    used: dict[Cell, int] = {}  # cell -> direction bits of the lines through it
    frame_cells = _frame_cells(lay)
    blocked = {(x, y) for b in lay.boxes.values() for x in range(b.x, b.x1 + 1) for y in range(b.y, b.y1 + 1)}
    blocked |= {c for c, d in frame_cells.items() if d == TITLE}  # titles and tags stay readable
    routes: list[Route] = []
    done: set[tuple[str, str]] = set()
    for u, v, kind in edges:
        if (u, v) in done:
            continue
        both = g.has_edge(v, u)
        done |= {(u, v), (v, u)} if both else {(u, v)}
        cells = _search(lay.boxes[u], lay.boxes[v], blocked, used, frame_cells, lay.width, lay.height)
        if not cells:
            continue
        for a, b in pairwise(cells):
            d = _direction(a, b)
            used[a] = used.get(a, 0) | d
            used[b] = used.get(b, 0) | OPPOSITE[d]
        routes.append(Route(u, v, kind, cells, both))
    return routes


def _distance(a: Rect, b: Rect) -> int:
    return abs(a.x - b.x) + abs(a.y - b.y)


def _direction(a: Cell, b: Cell) -> int:
    dx, dy = b[0] - a[0], b[1] - a[1]
    return E if dx > 0 else W if dx < 0 else S if dy > 0 else N


def _frame_cells(lay: Layout) -> dict[Cell, int]:
    """Cells on a region frame -> the frame's own direction there (N|S on a side, E|W on top)."""
    out: dict[Cell, int] = {}
    for f in lay.frames.values():
        for x in range(f.x, f.x1 + 1):
            out[(x, f.y)] = out[(x, f.y1)] = E | W
        for y in range(f.y, f.y1 + 1):
            out[(f.x, y)] = out[(f.x1, y)] = N | S
    for key, f in lay.frames.items():  # keep lines off the region's title and its tag
        title, tag = frame_texts(lay, key)
        for x in range(f.x, min(f.x1, f.x + 1 + len(title) + 1)):
            out[(x, f.y)] = TITLE
        for x in range(max(f.x, f.x1 - len(tag) - 1), f.x1 + 1) if tag else ():
            out[(x, f.y1)] = TITLE
    return out


def _ends(box: Rect, width: int, height: int) -> list[tuple[Cell, int]]:
    """Cells just outside a box, with the direction that points away from it."""
    out = [((x, box.y - 1), N) for x in range(box.x + 1, box.x1)]
    out += [((x, box.y1 + 1), S) for x in range(box.x + 1, box.x1)]
    mid = box.y + box.h // 2
    out += [((box.x - 1, mid), W), ((box.x1 + 1, mid), E)]
    return [(c, d) for c, d in out if 0 <= c[0] < width and 0 <= c[1] < height]


def _search(
    a: Rect,
    b: Rect,
    blocked: set[Cell],
    used: dict[Cell, int],
    frames: dict[Cell, int],
    width: int,
    height: int,
) -> list[Cell]:
    """Cheapest orthogonal path from just outside ``a`` to just outside ``b`` (A*)."""
    goals = {c: OPPOSITE[d] for c, d in _ends(b, width, height)}  # cell -> direction into b
    if not goals:
        return []
    gx, gy = b.x + b.w // 2, b.y + b.h // 2
    heap: list[tuple[float, float, Cell, int]] = []
    best: dict[tuple[Cell, int], float] = {}
    came: dict[tuple[Cell, int], tuple[Cell, int] | None] = {}
    for cell, d in _ends(a, width, height):
        if cell in blocked:
            continue
        cost = _enter_cost(cell, d, used, frames)
        best[(cell, d)] = cost
        came[(cell, d)] = None
        heapq.heappush(heap, (cost + abs(cell[0] - gx) + abs(cell[1] - gy), cost, cell, d))
    while heap:
        _, cost, cell, d = heapq.heappop(heap)
        if best.get((cell, d), 1e18) < cost:
            continue
        if cell in goals and d == goals[cell]:
            return _path((cell, d), came)
        for nd, (dx, dy) in STEP.items():
            if nd == OPPOSITE[d]:
                continue
            nxt = (cell[0] + dx, cell[1] + dy)
            if not (0 <= nxt[0] < width and 0 <= nxt[1] < height) or nxt in blocked:
                continue
            step = 1.0 + (BEND if nd != d else 0.0) + _enter_cost(nxt, nd, used, frames)
            ncost = cost + step
            if ncost < best.get((nxt, nd), 1e18):
                best[(nxt, nd)] = ncost
                came[(nxt, nd)] = (cell, d)
                heapq.heappush(heap, (ncost + abs(nxt[0] - gx) + abs(nxt[1] - gy), ncost, nxt, nd))
    return []


def _enter_cost(cell: Cell, d: int, used: dict[Cell, int], frames: dict[Cell, int]) -> float:
    axis = E | W if d in (E, W) else N | S
    cost = 0.0
    if cell in used:
        cost += ALONG if used[cell] & axis else CROSS  # running along another line / crossing it
    if cell in frames:
        frame = frames[cell]
        cost += 40.0 if frame == TITLE else 30.0 if frame & axis else 0.5  # title / along a frame / through
    return cost


def _path(end: tuple[Cell, int], came: dict[tuple[Cell, int], tuple[Cell, int] | None]) -> list[Cell]:
    out = []
    node: tuple[Cell, int] | None = end
    while node is not None:
        out.append(node[0])
        node = came[node]
    return out[::-1]
