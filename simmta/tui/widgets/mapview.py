"""The map view: the architecture drawn from the services graph, live.

Until the first snapshot arrives it draws the instance's own services table
(``ServiceTable.graph()``), so the map is there while the MTA starts.
A focusable widget; up/down move a selection over the graph's nodes,
and the detail pane under it shows the selected service's processes and
observed privileges, or the selected queue's messages.
Trust: renders the model via mapdraw (Text only).
"""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx
from rich.console import RenderableType
from rich.text import Text
from textual.binding import Binding
from textual.widget import Widget

from simmta.tui import fmt, regions
from simmta.tui.mapdraw import MapDrawing, MapStyle
from simmta.tui.model import Model
from simmta.tui.widgets.messages import NodeSelected
from simmta.tui.widgets.quiet import QuietStatic


class ArchitectureMap(Widget, can_focus=True):
    """The regions, services, queues and tokens."""

    BINDINGS = [
        Binding("down", "move(1)", "Next node", show=False),
        Binding("up", "move(-1)", "Previous node", show=False),
    ]

    def __init__(
        self, model: Model, clock: Callable[[], float], graph: nx.DiGraph | None = None, **kw: object
    ) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.model, self.clock = model, clock
        self.initial = graph if graph is not None else regions.graph_from_services([])
        self.graph = self.initial
        self._graph_key: tuple[str, ...] = ()
        self.selected: str | None = None
        self.followed: str | None = None
        self.order: list[str] = []

    def style(self) -> MapStyle:
        v = self.app.theme_variables
        return MapStyle(colours={r.key: v.get(r.colour, "") for r in regions.REGIONS})

    def drawing(self) -> MapDrawing:
        key = tuple(self.model.services)
        if key != self._graph_key:  # a (new) snapshot: draw what the MTA says it runs
            self._graph_key = key
            services = list(self.model.services.values())
            self.graph = regions.graph_from_services(services) if services else self.initial
        return MapDrawing(
            self.graph,
            self.model,
            self.style(),
            self.selected,
            self.followed,
            size=(self.size.width, self.app.size.height),
            clock=self.clock,
        )

    def render(self) -> RenderableType:
        drawing = self.drawing()
        self.order = drawing.nodes
        return drawing.render()

    def action_select_node(self, index: int) -> None:
        """A click on a node's name."""
        if 0 <= index < len(self.order):
            self.selected = self.order[index]
            self.refresh()
            self.post_message(NodeSelected(self.selected))

    def action_move(self, delta: int) -> None:
        if not self.order:
            return
        i = self.order.index(self.selected) if self.selected in self.order else -1
        self.selected = self.order[(i + delta) % len(self.order)]
        self.refresh()
        self.post_message(NodeSelected(self.selected))


class NodeDetail(QuietStatic):
    """What the selected map node holds: processes and privilege steps, or messages."""

    def show(self, model: Model, node: str | None, now: float) -> None:
        if node is None:
            self.show_lines([Text("↑/↓ select a service or queue · s sends a message · ? help", style="dim")])
            return
        lines: list[Text] = []
        summary = model.services.get(node, {}).get("summary")
        if summary:
            lines.append(Text(f"{node}: {fmt.text(summary)}", style="bold"))
        for p in model.processes_of(node):
            lines.append(
                Text(
                    f"pid {p.pid} {p.state:<8} uid/euid:gid {fmt.uid_text(p)} "
                    f"root {p.root} {p.mode} served {p.served}"
                )
            )
        steps = model.steps.get(node, ())
        if steps:
            line = Text("drop: ", style="dim")
            for step, target, outcome in steps:
                line.append(f"{step} {target} → ")
                line.append(outcome, style="bold" if outcome != "done" else "")
                line.append(" · ", style="dim")
            lines.append(line)
        for attempt in model.lab_attempts:
            if attempt["service"] == node:
                lines.append(
                    Text(
                        f"lab {attempt['action']} {attempt['target']}: "
                        f"{attempt['outcome']} {attempt['detail']}",
                        style="bold",
                    )
                )
        for m in model.in_queue(node):
            line = Text(f"{m.qid} ", style="bold")
            line.append(f"{m.sender} → {', '.join(m.recipients)} {m.reason}")
            lines.append(line)
        if len(lines) <= 1:
            lines.append(Text(f"{node}: nothing here now", style="dim"))
        self.show_lines(lines[:8])
