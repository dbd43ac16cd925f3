"""Security regions of the map, derived from the services graph.

Each node of ``ServiceTable.graph()`` (or of the equivalent graph rebuilt from
a snapshot's service list) falls in one region: the Internet side, the chroot
jail (the queue directory and the chrooted daemons), unprivileged but not
chrooted, root, and the users' side. Regions are told apart by border, glyph
and label, not colour alone; a boundary that is only simulated (simmta not
running as root) gets a dashed border and says SIMULATED.

Pure Python (networkx and rich.box only): lessons may ask the same questions.
Trust: the graph comes from the instance's validated services table, or from a
snapshot (untrusted: names are passed through ``safe_text``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx
from rich import box
from rich.box import Box

from simmta.core import names
from simmta.core.events import safe_text

DASHED = box.Box("┌╌┬┐\n╎ ╎╎\n├╌┼┤\n╎ ╎╎\n├╌┼┤\n├╌┼┤\n╎ ╎╎\n└╌┴┘\n")
DASHED_HEAVY = box.Box("┏┅┳┓\n┇ ┇┇\n┣┅╋┫\n┇ ┇┇\n┣┅╋┫\n┣┅╋┫\n┇ ┇┇\n┗┅┻┛\n")
DASHED_DOUBLE = box.Box("╔╍╦╗\n╏ ╏╏\n╠╍╬╣\n╏ ╏╏\n╠╍╬╣\n╠╍╬╣\n╏ ╏╏\n╚╍╩╝\n")
BLOCK = box.Box("▛▀▀▜\n▌ ▌▐\n▌▀▀▐\n▌ ▌▐\n▌▀▀▐\n▌▀▀▐\n▌ ▌▐\n▙▄▄▟\n")


@dataclass(frozen=True)
class Region:
    key: str
    glyph: str
    label: str
    short: str
    box: Box
    simulated_box: Box | None  # None: a boundary that is never simulated
    colour: str  # a theme variable name


REGIONS: tuple[Region, ...] = (
    Region("internet", "☁", "INTERNET (untrusted)", "INTERNET", box.ROUNDED, None, "error"),
    Region(
        "jail",
        "⛓",
        "CHROOT JAIL = queue dir",
        "JAIL = queue dir",
        box.DOUBLE,
        DASHED_DOUBLE,
        "warning",
    ),
    Region("unpriv", "◇", "UNPRIVILEGED, no chroot", "UNPRIV", box.SQUARE, DASHED, "accent"),
    Region("root", "♛", "ROOT", "ROOT", box.HEAVY, DASHED_HEAVY, "secondary"),
    Region("users", "⌂", "USERS' MAILDIRS", "USERS", BLOCK, None, "success"),
)
BY_KEY = {r.key: r for r in REGIONS}
NODE_GLYPH = {"service": "▣", "queue": "▤", "store": "✉", "internet": "☁"}


def mode_note(key: str, mode: str, long: bool) -> str:
    """A region's subtitle where the privilege mode changes what it means ('' if not)."""
    if key == "root" and mode in ("rootless", "partial"):
        return "root of a user namespace = you" if long else "ns root"
    if key == "jail" and mode == "partial":
        return "chroot real, uid SIMULATED" if long else "uid SIMULATED"
    if key == "unpriv" and mode == "rootless":
        return "uid from your subordinate range" if long else "subuid"
    return ""


def graph_from_services(services: list[dict[str, Any]]) -> nx.DiGraph:
    """The same graph as ``ServiceTable.graph()``, rebuilt from a snapshot's list."""
    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_node("internet", kind="internet", label="the Internet")
    known = {safe_text(str(s.get("name")), 40) for s in services}
    for s in services:
        name = safe_text(str(s.get("name")), 40)
        g.add_node(name, kind="service", service=s)
        if s.get("faces") == "internet" and s.get("type") == "inet":
            g.add_edge("internet", name, kind="ipc")
    for s in services:
        name = safe_text(str(s.get("name")), 40)
        for peer in s.get("talks_to") or ():
            if peer in known:
                g.add_edge(name, peer, kind="ipc")
        for key, kind in (("reads", "reads"), ("writes", "writes")):
            for q in s.get(key) or ():
                q = safe_text(str(q), 40)
                g.add_node(q, kind="queue" if q in names.ALL_QUEUES else "store")
                g.add_edge(*((q, name) if kind == "reads" else (name, q)), kind=kind)
    return g


def _field(service: Any, key: str, default: Any = None) -> Any:
    if isinstance(service, dict):
        return service.get(key, default)
    return getattr(service, key, default)


def runs_as_root(service: Any) -> bool:
    """What the table says: an explicit account (profiles name one), else Postfix's unpriv column."""
    user = _field(service, "user", "")
    return user == "root" if user else not _field(service, "unpriv", True)


def region_of(g: nx.DiGraph, node: str) -> str:
    """Which security region a node of the graph belongs to."""
    kind = g.nodes[node].get("kind")
    if kind == "internet":
        return "internet"
    if kind == "queue":
        return _queue_region(g)
    if kind == "store":
        writers = [s for s in g.predecessors(node) if g.nodes[s].get("kind") == "service"]
        internet_only = writers and all(_field(g.nodes[s]["service"], "role") == "internet" for s in writers)
        return "internet" if internet_only else "users"
    service = g.nodes[node].get("service")
    if _field(service, "role") == "internet":
        return "internet"
    if runs_as_root(service):
        return "root"
    return "jail" if _field(service, "chroot", False) else "unpriv"


def _queue_region(g: nx.DiGraph) -> str:
    """The queue directory is the jail where a daemon is chrooted to it (Postfix); in a design
    with no chroot (qmail, Sendmail) it lies with the least privileged service that uses it."""
    services = [d.get("service") for _, d in g.nodes(data=True) if d.get("kind") == "service"]
    if any(_field(s, "chroot", False) for s in services):
        return "jail"
    return (
        "unpriv" if any(not runs_as_root(s) and _field(s, "role") != "internet" for s in services) else "root"
    )


def members(g: nx.DiGraph) -> dict[str, list[str]]:
    """Region key -> its nodes, in a stable order (the order of a message's path)."""
    order = {n: i for i, n in enumerate(nx.topological_sort(_acyclic(g)))}
    order.update({q: 50 + i for i, q in enumerate(names.ALL_QUEUES)})
    out: dict[str, list[str]] = {r.key: [] for r in REGIONS}
    for node in sorted(g.nodes, key=lambda n: (order.get(n, 99), n)):
        out[region_of(g, node)].append(node)
    return out


def _acyclic(g: nx.DiGraph) -> nx.DiGraph:
    """The graph without the edges that close cycles (bounce -> cleanup), from the Internet on."""
    dag: nx.DiGraph[str] = nx.DiGraph()
    dag.add_nodes_from(g.nodes)
    roots = ["internet"] + [n for n in g.nodes if g.in_degree(n) == 0 and n != "internet"]
    for root in roots:
        for u, v in nx.edge_dfs(g, root):
            dag.add_edge(u, v)
            if not nx.is_directed_acyclic_graph(dag):
                dag.remove_edge(u, v)
    return dag


def out_edges(g: nx.DiGraph, node: str) -> list[tuple[str, str]]:
    """Edges drawn at ``node``: its IPC requests and writes, or a queue's readers."""
    return [(node, v) for v in g.successors(node)]
