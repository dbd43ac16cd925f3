"""The map: a flow diagram of the MTA drawn with Textual's Line API, messages moving on it.

``render_line(y)`` returns a cached ``Strip`` per row. The static picture
(frames, routed edges, arrowheads) is painted once per size and services
table; the followed message's lit path and the moving tokens are an overlay
recomputed on each ``tick``, over the boxes' live facts (painted again only
when an event was folded or a countdown's second passed); only rows whose overlay changed are
re-rendered and refreshed (``refresh(Region(0, y, width, 1))``). Colours are
the widget's component classes (theme variables in DEFAULT_CSS), and the
style cache is dropped on a theme switch (``notify_style_update``).

The diagram reads the model only through ``mapfacts.MapSource``.
Trust: draws inert text from the model; clicks select by node name kept here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import networkx as nx
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.widget import Widget

from simmta.tui import mappaint, playback, regions
from simmta.tui.mapfacts import MapSource, facts
from simmta.tui.maplayout import Layout, layout
from simmta.tui.widgets.messages import NodeSelected

FPS = 20
LAYOUTS_KEPT = 4


class Diagram(Widget, can_focus=True):
    """Boxes per daemon and store, routed edges across the region frames, tokens on the edges."""

    COMPONENT_CLASSES = {
        "map--blank",
        "map--region-internet", "map--region-internet-title",
        "map--region-jail", "map--region-jail-title",
        "map--region-unpriv", "map--region-unpriv-title",
        "map--region-root", "map--region-root-title",
        "map--region-users", "map--region-users-title",
        "map--simulated",
        "map--edge", "map--edge-crossing", "map--edge-queue", "map--edge-queue-crossing",
        "map--edge-lit", "map--edge-current",
        "map--box", "map--box-title", "map--box-text", "map--box-busy",
        "map--box-root", "map--box-root-title",
        "map--box-internet", "map--box-internet-title",
        "map--queue", "map--queue-title",
        "map--selected", "map--selected-title",
        "map--token", "map--token-followed",
        "map--result", "map--result-bad",
    }  # fmt: skip
    DEFAULT_CSS = """
    Diagram { background: $background; }
    Diagram > .map--blank { background: $background; }
    Diagram > .map--region-internet { color: $map-internet; }
    Diagram > .map--region-internet-title { color: $map-internet; text-style: bold; }
    Diagram > .map--region-jail { color: $map-jail; }
    Diagram > .map--region-jail-title { color: $map-jail; text-style: bold; }
    Diagram > .map--region-unpriv { color: $map-unpriv; }
    Diagram > .map--region-unpriv-title { color: $map-unpriv; text-style: bold; }
    Diagram > .map--region-root { color: $map-root; }
    Diagram > .map--region-root-title { color: $map-root; text-style: bold; }
    Diagram > .map--region-users { color: $map-users; }
    Diagram > .map--region-users-title { color: $map-users; text-style: bold; }
    Diagram > .map--simulated { color: $text; background: $warning-muted; text-style: bold; }
    Diagram > .map--edge { color: $foreground; }
    Diagram > .map--edge-crossing { color: $foreground; text-style: bold; }
    Diagram > .map--edge-queue { color: $foreground-muted; }
    Diagram > .map--edge-queue-crossing { color: $foreground-muted; text-style: bold; }
    Diagram > .map--edge-lit { color: $text; text-style: bold; }
    Diagram > .map--edge-current { color: $text; background: $primary-muted; text-style: bold; }
    Diagram > .map--box { color: $foreground; }
    Diagram > .map--box-title { color: $foreground; text-style: bold; }
    Diagram > .map--box-text { color: $foreground; }
    Diagram > .map--box-busy { color: $text-success; text-style: bold; }
    Diagram > .map--box-root { color: $map-root; text-style: bold; }
    Diagram > .map--box-root-title { color: $map-root; background: $map-root-muted; text-style: bold; }
    Diagram > .map--box-internet { color: $map-internet; }
    Diagram > .map--box-internet-title { color: $map-internet; text-style: bold; }
    Diagram > .map--queue { color: $foreground-muted; }
    Diagram > .map--queue-title { color: $foreground; }
    Diagram > .map--selected { color: $text; background: $primary-muted; text-style: bold; }
    Diagram > .map--selected-title { color: $text; background: $primary-muted; text-style: bold reverse; }
    Diagram > .map--token { color: $background; background: $foreground; text-style: bold; }
    Diagram > .map--token-followed { color: $background; background: $primary; text-style: bold; }
    Diagram > .map--result { color: $text-warning; text-style: bold; }
    Diagram > .map--result-bad { color: $text-error; text-style: bold reverse; }
    """
    BINDINGS = [
        Binding("down,right", "move(1)", "Next box", show=False),
        Binding("up,left", "move(-1)", "Previous box", show=False),
    ]

    def __init__(
        self,
        source: MapSource,
        clock: Callable[[], float],
        graph: nx.DiGraph | None = None,
        **kw: object,
    ) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.source, self.clock = source, clock
        self.initial = graph if graph is not None else regions.graph_from_services([])
        self.graph = self.initial
        self._graph_key: tuple[str, ...] = ()
        self.selected: str | None = None
        self.followed: str | None = None
        self.pinned: int | None = None  # a hop of the followed message chosen by the user
        self.hop_seconds = playback.PACES[0][1]
        self.settled = False  # a paused replay: each message shown at its newest hop
        self.layout_: Layout | None = None
        self._painted: mappaint.Painted | None = None
        self._layout_key: tuple[object, ...] = ()
        # Layouts by key, newest last: a tab switch resizes the map to nothing and back, and
        # routing a layout takes a good part of a second.
        self._layouts: OrderedDict[tuple[object, ...], tuple[Layout, mappaint.Painted]] = OrderedDict()
        self._overlay: mappaint.Overlay = {}
        self._box_key: tuple[object, ...] = ()
        self._box_layer: mappaint.Overlay = {}
        self._moving: mappaint.Overlay = {}
        self._strips: dict[int, Strip] = {}
        self._sized = Size(0, 0)
        self._styles: dict[str, Style] = {}
        # A run's style by (component, box): a box's click meta added to its colour once per
        # layout, not per run drawn (rich's Style addition was most of a row's cost).
        self._run_styles: dict[tuple[str, str | None], Style] = {}
        self.frames = 0  # overlays computed (for the bench)
        self.rows_rendered = 0

    # Building the picture ----------------------------------------------------
    @property
    def cells(self) -> Size:
        """The content size of the last layout. ``Widget.size`` finds the widget's region
        through the screen (a walk up the DOM and a lookup in the compositor's map), which
        asked four times a frame was a sixth of the map's per-frame cost."""
        width, height = self.outer_size
        gutter = self.styles.gutter
        return Size(max(0, width - gutter.width), max(0, height - gutter.height))

    def _current_graph(self) -> nx.DiGraph:
        key = tuple(self.source.services)
        if key != self._graph_key:  # a (new) snapshot: draw what the MTA says it runs
            self._graph_key = key
            services = list(self.source.services.values())
            self.graph = regions.graph_from_services(services) if services else self.initial
        return self.graph

    def ensure_layout(self) -> Layout:
        graph = self._current_graph()
        mode = self.source.privilege_mode
        key = (self.cells.width, self.cells.height, self._graph_key, mode, id(graph))
        if self.layout_ is None or key != self._layout_key:
            self._layout_key = key
            kept = self._layouts.pop(key, None)  # back to a size it had: no new layout
            if kept is None:
                lay = layout(graph, max(self.cells.width, 20), max(self.cells.height, 8), mode)
                kept = (lay, mappaint.static(lay))
            self._layouts[key] = kept
            while len(self._layouts) > LAYOUTS_KEPT:
                self._layouts.popitem(last=False)
            self.layout_, self._painted = kept
            self._strips.clear()
            self._run_styles.clear()
            self._overlay = {}
        return self.layout_

    def tokens(self) -> list[playback.Token]:
        return playback.tokens(self.source.journeys.recent(), self.hop_seconds, self.clock(), self.settled)

    def followed_hop(self) -> tuple[int, float]:
        """(index, progress) of the hop of the followed message the map shows now."""
        hops = self.source.journeys.of(self.followed)
        if self.pinned is not None and hops:
            return min(self.pinned, len(hops) - 1), 0.5
        where = playback.settled_hop if self.settled else playback.shown_hop
        return where(hops, self.hop_seconds, self.clock())

    def compute_overlay(self, tokens: list[playback.Token] | None = None) -> mappaint.Overlay:
        """What is drawn over the static map: the box facts, the followed path, the tokens.

        The box facts change only with an event (or a countdown's second): painted and
        resolved then, and kept. Per frame only the path and the tokens are made
        (``_moving``, the rows they touch), the layer under them shared row by row."""
        lay = self.ensure_layout()
        now = self.clock()
        assert self._painted is not None
        grid = self._painted.grid
        box_key = (self.source.applied, self.source.last_seq, self.selected, int(now), id(lay))
        if box_key != self._box_key:
            self._box_key, self._box_layer = box_key, {}
            box_facts = {n: facts(self.source, lay.graph, n, now) for n in lay.boxes}
            mappaint.overlay_boxes(lay, box_facts, self.selected, self._box_layer)
            mappaint.resolve(grid, self._box_layer)
        moving: mappaint.Overlay = {}
        hops = self.source.journeys.of(self.followed)
        current, _ = self.followed_hop()
        if hops:
            mappaint.overlay_path(lay, [(h.src, h.dst) for h in hops[: current + 1]], current, moving)
        for y, row in moving.items():  # a box's facts are drawn over the path
            for x in self._box_layer.get(y, ()):
                row.pop(x, None)
        if tokens is None:
            tokens = self.tokens()
        if self.pinned is not None and hops:
            hop = hops[current]
            tokens = [t for t in tokens if t.ident != self.followed]
            tokens.append(playback.Token(self.followed or "", current, hop.src, hop.dst, 0.5))
        mappaint.overlay_tokens(lay, tokens, self.followed, moving)
        mappaint.resolve(grid, moving)
        self._moving = moving
        out = dict(self._box_layer)
        for y, row in moving.items():
            out[y] = {**self._box_layer[y], **row} if y in self._box_layer else row
        return out

    def tick(self, tokens: list[playback.Token] | None = None) -> int:
        """Recompute the overlay; refresh only the rows that changed. Returns how many."""
        if not self.size.width or not self.size.height:
            return 0  # hidden (the size of its last layout stays in cells)
        old_layout, old_boxes, old_moving = self.layout_, self._box_layer, self._moving
        overlay = self.compute_overlay(tokens)
        self.frames += 1
        if self.layout_ is not old_layout:
            self._overlay = overlay
            self.refresh()
            return self.cells.height
        # With the same box layer, only the rows the path and tokens touch (now or in the
        # last frame) can differ.
        rows = (
            set(overlay) | set(self._overlay)
            if self._box_layer is not old_boxes
            else set(self._moving) | set(old_moving)
        )
        dirty = [y for y in rows if overlay.get(y) != self._overlay.get(y)]
        self._overlay = overlay
        for y in dirty:
            self._strips.pop(y, None)
        if dirty:
            width = self.cells.width
            self.refresh(*(Region(0, y, width, 1) for y in dirty))
        return len(dirty)

    # The Line API --------------------------------------------------------------
    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(name)
        return style

    def notify_style_update(self) -> None:
        """Rendered rows are dropped only if a colour they use changed (a theme switch), not on
        every restyle: showing the map tab again restyles it, and redrawing every row then was
        most of the switch."""
        super().notify_style_update()
        styles = {name: self.get_component_rich_style(name) for name in self._styles}
        if styles != self._styles:
            self._styles = {}
            self._strips = {}
            self._run_styles = {}

    def render_line(self, y: int) -> Strip:
        strip = self._strips.get(y)
        if strip is not None:
            return strip
        self.ensure_layout()
        if not self._overlay:
            self._overlay = self.compute_overlay()
        assert self._painted is not None and self.layout_ is not None
        grid = self._painted.grid
        if y >= len(grid):
            return Strip.blank(self.cells.width, self._style("map--blank"))
        row = list(grid[y])
        for x, cell in self._overlay.get(y, {}).items():
            if 0 <= x < len(row):
                row[x] = cell
        segments: list[Segment] = []
        clicks = self._painted.clicks
        run, run_key = "", None
        for x, (glyph, name) in enumerate(row):
            node = clicks.get((x, y))
            key = (name, node)
            if key != run_key and run:
                segments.append(self._segment(run, run_key))
                run = ""
            run, run_key = run + glyph, key
        if run:
            segments.append(self._segment(run, run_key))
        strip = Strip(segments, len(row)).adjust_cell_length(self.cells.width, self._style("map--blank"))
        self._strips[y] = strip
        self.rows_rendered += 1
        return strip

    def _segment(self, text: str, key: tuple[str, str | None] | None) -> Segment:
        key = key or ("map--blank", None)
        style = self._run_styles.get(key)
        if style is None:
            name, node = key
            style = self._style(name)
            if node is not None and self.layout_ is not None:
                order = list(self.layout_.boxes)
                style = style + Style.from_meta({"@click": f"select_node({order.index(node)})"})
            self._run_styles[key] = style
        return Segment(text, style)

    def on_resize(self, event: events.Resize) -> None:
        """A new size is a new layout; the same size again (the map tab shown once more) keeps
        the rendered rows: redrawing all of them was most of a switch back to the map."""
        if event.size.area and event.size != self._sized:  # (hidden, the map has no size)
            self._sized = event.size
            self._strips.clear()
            self.layout_ = None

    # Selection -------------------------------------------------------------------
    def order(self) -> list[str]:
        lay = self.ensure_layout()
        return sorted(lay.boxes, key=lambda n: (lay.boxes[n].y, lay.boxes[n].x))

    def _select(self, node: str) -> None:
        self.selected = node
        self.tick()
        self.post_message(NodeSelected(node))

    def action_select_node(self, index: int) -> None:
        """A click on a box (by index into the layout's boxes: names are untrusted)."""
        boxes = list(self.ensure_layout().boxes)
        if 0 <= index < len(boxes):
            self._select(boxes[index])

    def action_move(self, delta: int) -> None:
        order = self.order()
        i = order.index(self.selected) if self.selected in order else -1
        self._select(order[(i + delta) % len(order)])
