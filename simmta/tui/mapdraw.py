"""Draws the architecture map as a Rich renderable from the graph and the model.

Regions are panels (border style, glyph and label per region; dashed and
"SIMULATED" where the boundary is only simulated). Inside, one entry per node
of the graph: services with live process counts and observed privilege, queue
directories with their messages (tokens labelled by queue ID, deferred ones
with their retry countdown), stores with delivered counts. Edges are the real
IPC paths and queue accesses, drawn at their source node, with the tokens of
messages currently on that hop.

Pure Rich, no Textual: the widget in widgets/mapview.py only chooses sizes
and colours. Trust: all names and queue IDs are shown as Text (never markup).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.style import Style
from rich.table import Table
from rich.text import Text

from simmta.core import names, privilege
from simmta.tui import regions
from simmta.tui.model import HELD, Model

TOKEN = "◆"
MAX_TOKENS = 4
ONE_ROW_WIDTH = 190
EXPANDED_HEIGHT = 30
LONG_LABEL_WIDTH = 120


@dataclass
class MapStyle:
    colours: dict[str, str] = field(default_factory=dict)  # region key -> colour
    selected: str = "reverse"
    token: str = "bold reverse"
    followed: str = "bold underline reverse"
    dim: str = "dim"


def countdown(seconds: float | None) -> str:
    if seconds is None:
        return ""
    m, s = divmod(int(seconds), 60)
    return f"⟳{m}m{s:02d}s" if m else f"⟳{s}s"


def privilege_of(model: Model, service: str) -> str:
    """Observed privilege of a service's processes: root, uid N, and the jail."""
    procs = model.processes_of(service)
    if not procs:
        return ""
    uids = sorted({p.euid for p in procs if p.euid is not None})
    who = "/".join("root" if u == 0 else f"uid {u}" for u in uids)
    jailed = any(p.root not in ("", "/") for p in procs)
    return (who + (" jailed" if jailed else "")).strip()


class MapDrawing:
    """One frame of the map; ``nodes`` is the selection order (keyboard cursor)."""

    def __init__(
        self,
        graph: nx.DiGraph,
        model: Model,
        style: MapStyle,
        selected: str | None = None,
        followed: str | None = None,
        size: tuple[int, int] = (200, 50),
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.g = graph.copy()
        for q in names.MESSAGE_QUEUES:
            if q not in self.g:
                self.g.add_node(q, kind="queue")
        self.model, self.style = model, style
        self.selected, self.followed = selected, followed
        width, height = size
        self.one_row = width >= ONE_ROW_WIDTH  # all regions side by side
        self.wide = height >= EXPANDED_HEIGHT  # one line per edge
        self.long_labels = width >= LONG_LABEL_WIDTH
        self.now = clock() if clock else model.now
        self.on_edges = model.on_edges(self.now)
        self.members = regions.members(self.g)
        self.members["root"].insert(0, names.MASTER)
        self.g.add_node(names.MASTER, kind="service", service={"name": "master", "unpriv": False})
        self.nodes = [n for r in regions.REGIONS for n in self.members[r.key]]

    # Pieces ------------------------------------------------------------------
    def token(self, qid: str) -> Text:
        style = self.style.followed if qid == self.followed else self.style.token
        glyph = "" if qid.startswith(HELD) else TOKEN  # a held token shows ⏸ instead
        return Text(f"{glyph}{qid}", style=style)

    def tokens(self, qids: list[str], retry: dict[str, str] | None = None) -> Text:
        out = Text()
        limit = MAX_TOKENS if self.wide else 1
        for qid in qids[:limit]:
            out.append(" ")
            out.append_text(self.token(qid))
            if retry and retry.get(qid):
                out.append(" " + retry[qid], style=self.style.dim)
        if len(qids) > limit:
            out.append(f" +{len(qids) - limit}", style="bold")
        return out

    def head(self, node: str) -> Text:
        kind = self.g.nodes[node].get("kind", "service")
        line = Text(regions.NODE_GLYPH.get(kind, "?") + " ")
        # A click on the name selects the node (an action by index: names are untrusted).
        click = Style(bold=True, meta={"@click": f"select_node({self.nodes.index(node)})"})
        line.append(self.g.nodes[node].get("label", node), style=click)
        if kind == "service":
            n = len(self.model.processes_of(node))
            line.append(f" x{n}" if n else " idle", style="" if n else self.style.dim)
            if priv := privilege_of(self.model, node):
                if not self.long_labels:
                    priv = priv.replace("uid ", "u").replace(" jailed", "⛓")
                line.append(f" {priv}", style=self.style.dim)
            if node in self.model.throttled:
                line.append(" THROTTLED", style="bold")
        elif kind == "queue":
            msgs = self.model.in_queue(node)
            line.append(f" {len(msgs)}")
            retry = {m.qid: countdown(self.model.retry_in(m, self.now)) for m in msgs}
            line.append_text(self.tokens([m.qid for m in msgs], retry))
        elif kind == "store":
            line.append(f" {self.model.delivered_to(node)} delivered")
        if node == self.selected:
            line.stylize(self.style.selected)
        return line

    def edges(self, node: str) -> list[Text]:
        out = []
        for _, dst in regions.out_edges(self.g, node):
            kind = self.g.edges[node, dst].get("kind")
            arrow = "──▶" if kind == "ipc" else "══▶" if kind == "writes" else "··▶"
            line = Text(f"  {arrow} {dst}", style=self.style.dim if kind == "reads" else "")
            line.append_text(self.tokens(self.on_edges.get((node, dst), [])))
            out.append(line)
        return out

    def inline_edges(self, node: str) -> Text:
        """Narrow screens: the IPC edges on the node's own line (queue writes are left out)."""
        joined = Text()
        edges = [
            (a, b)
            for a, b in regions.out_edges(self.g, node)
            if self.g.edges[a, b].get("kind") == "ipc" or self.g.nodes[b].get("kind") == "store"
        ]
        for i, (_, dst) in enumerate(edges):
            joined.append(("," if i else " →") + dst)
            joined.append_text(self.tokens(self.on_edges.get((node, dst), [])))
        return joined

    def entry(self, node: str) -> list[Text]:
        kind = self.g.nodes[node].get("kind")
        if kind not in ("service", "internet"):
            return [self.head(node)]
        if not self.wide:
            return [self.head(node) + self.inline_edges(node)]
        return [self.head(node), *self.edges(node)]

    # Layout ----------------------------------------------------------------
    def panel(self, region: regions.Region) -> Panel:
        mode = self.model.privilege_mode
        enforced = privilege.chroot_enforced(mode) if region.key == "jail" else privilege.uids_enforced(mode)
        simulated = region.simulated_box is not None and mode in privilege.MODES and not enforced
        note = regions.mode_note(region.key, mode, self.long_labels)
        body: RenderableType
        nodes = self.members[region.key]
        if region.key == "jail":
            grid = Table.grid(padding=(0, 1), expand=True)
            grid.add_column(ratio=3)  # the daemons and their edges (with tokens) need room
            grid.add_column(ratio=2)
            services = [t for n in nodes if self.g.nodes[n].get("kind") != "queue" for t in self.entry(n)]
            queues = [t for n in nodes if self.g.nodes[n].get("kind") == "queue" for t in self.entry(n)]
            grid.add_row(Group(*services), Group(*queues))
            body = grid
        else:
            body = Group(*(t for n in nodes for t in self.entry(n)))
        colour = self.style.colours.get(region.key, "")
        return Panel(
            body,
            box=(region.simulated_box or region.box) if simulated else region.box,
            title=Text(
                f"{region.glyph} {region.label if self.long_labels else region.short}",
                style=f"bold {colour}",
            ),
            title_align="left",
            border_style=colour,
            subtitle=Text("SIMULATED" + (" boundary" if self.long_labels else ""), style="bold")
            if simulated
            else Text(note, style="bold") if note else None,
            subtitle_align="right",
            padding=(0, 1),
        )

    def render(self) -> RenderableType:
        panels = {r.key: self.panel(r) for r in regions.REGIONS if self.members[r.key]}
        rows = [list(panels)] if self.one_row else [["internet", "jail"], ["unpriv", "root", "users"]]
        grids = []
        for row in rows:
            grid = Table.grid(expand=True, padding=(0, 0))
            keys = [k for k in row if k in panels]
            for k in keys:
                grid.add_column(ratio=2 if k == "jail" else 1)
            grid.add_row(*(panels[k] for k in keys))
            grids.append(grid)
        return Group(*grids)
