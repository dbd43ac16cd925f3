"""The services table (master.cf as data) and the graph built from it.

One table drives master (what to start, how privileged), the map the TUI
draws, and the lessons' questions ("which services are chrooted?").

Trust: the shipped table, or one the instance owner wrote; validated here with
errors naming file, line and key.
"""

from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simmta.core import names
from simmta.core.errors import ConfigError
from simmta.core.tomlfile import TomlFile

if TYPE_CHECKING:
    import networkx as nx

_COMMANDS = {
    names.SMTPD, names.PICKUP, names.CLEANUP, names.QMGR, names.BOUNCE,
    names.SMTP, names.LOCAL, names.PEER,
}
_STORES = {"mailboxes", "peer-mailbox"}


@dataclass(frozen=True)
class Service:
    name: str
    type: str
    command: str
    private: bool = True
    unpriv: bool = True
    chroot: bool = False
    wakeup: int = 0
    maxproc: int = 0
    talks_to: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    faces: str = ""
    role: str = "mta"
    summary: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def resident(self) -> bool:
        """Started when master starts (Postfix: services with a wakeup timer)."""
        return self.wakeup > 0

    @property
    def socket_dir(self) -> str:
        return names.PRIVATE if self.private else names.PUBLIC

    def process_limit(self, default_process_limit: int) -> int:
        return self.maxproc or default_process_limit

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        d["resident"] = self.resident
        return d


_TYPES: dict[str, type | tuple[type, ...]] = {
    "name": str, "type": str, "command": str, "private": bool, "unpriv": bool,
    "chroot": bool, "wakeup": int, "maxproc": int, "talks_to": list, "reads": list,
    "writes": list, "faces": str, "role": str, "summary": str,
}


def _service(entry: dict[str, Any], src: TomlFile, line: int) -> Service:
    def err(key: str, what: str) -> ConfigError:
        return src.error(f"service.{key}", what, src.line_of(key, after_line=line - 1) or line)

    for key, value in entry.items():
        if key not in _TYPES:
            raise err(key, "unknown column (known: " + ", ".join(_TYPES) + ")")
        expected = _TYPES[key]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise err(key, f"expected {getattr(expected, '__name__', expected)}")
    for key in ("name", "type", "command"):
        if key not in entry:
            raise src.error(f"service.{key}", "missing", line)
    if entry["type"] not in ("inet", "unix"):
        raise err("type", "expected 'inet' or 'unix'")
    if entry["command"] not in _COMMANDS:
        raise err("command", "no such daemon (known: " + ", ".join(sorted(_COMMANDS)) + ")")
    for key in ("wakeup", "maxproc"):
        if entry.get(key, 0) < 0:
            raise err(key, "must not be negative")
    for key in ("talks_to", "reads", "writes"):
        if not all(isinstance(x, str) for x in entry.get(key, [])):
            raise err(key, "expected a list of names")
        entry[key] = tuple(entry.get(key, ()))
    for key in ("reads", "writes"):
        for q in entry[key]:
            if q not in names.ALL_QUEUES and q not in _STORES:
                raise err(key, f"unknown queue or store {q!r}")
    return Service(**entry)


class ServiceTable:
    """The ordered services, looked up by name."""

    def __init__(self, services: list[Service], source: Path | None = None):
        self.services = services
        self.source = source
        self.by_name = {s.name: s for s in services}

    def __iter__(self):
        return iter(self.services)

    def __getitem__(self, name: str) -> Service:
        return self.by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    def as_list(self) -> list[dict[str, Any]]:
        return [s.as_dict() for s in self.services]

    def graph(self) -> "nx.DiGraph":
        """Services, queues and stores as nodes; IPC and queue access as edges.

        Node attribute ``kind`` is "service", "queue", "store" or "internet";
        edge attribute ``kind`` is "ipc", "reads" or "writes".
        """
        import networkx as nx  # here, not at the top: daemons never draw (and start faster)

        g: nx.DiGraph[str] = nx.DiGraph()
        g.add_node("internet", kind="internet", label="the Internet")
        for s in self.services:
            g.add_node(s.name, kind="service", service=s)
            if s.faces == "internet" and s.type == "inet":
                g.add_edge("internet", s.name, kind="ipc")
        for s in self.services:
            for peer in s.talks_to:
                g.add_edge(s.name, peer, kind="ipc")
            for q in s.reads:
                g.add_node(q, kind="queue" if q in names.ALL_QUEUES else "store")
                g.add_edge(q, s.name, kind="reads")
            for q in s.writes:
                g.add_node(q, kind="queue" if q in names.ALL_QUEUES else "store")
                g.add_edge(s.name, q, kind="writes")
        return g


def load(path: Path | None = None) -> ServiceTable:
    """The instance's table if ``path`` exists, else the shipped default."""
    if path is not None and path.exists():
        src = TomlFile(path)
    else:
        text = resources.files("simmta").joinpath("data/services.toml").read_text("utf-8")
        src = TomlFile(Path("<simmta>/data/services.toml"), text)
        path = None
    entries = src.data.get("service")
    extra = set(src.data) - {"service"}
    if extra:
        raise src.error(sorted(extra)[0], "unknown top-level key (expected [[service]] tables)")
    if not isinstance(entries, list) or not entries:
        raise src.error("service", "no [[service]] entries")
    lines = src.table_lines("service")
    services = [_service(dict(e), src, lines[i] if i < len(lines) else 1)
                for i, e in enumerate(entries)]
    seen: set[str] = set()
    for i, s in enumerate(services):
        if s.name in seen:
            raise src.error("service.name", f"duplicate service {s.name!r}", lines[i])
        seen.add(s.name)
    for i, s in enumerate(services):
        for peer in s.talks_to:
            if peer not in seen:
                raise src.error("service.talks_to", f"unknown service {peer!r}", lines[i])
    required = {names.SMTPD, names.CLEANUP, names.QMGR, names.LOCAL}
    missing = required - {s.command for s in services}
    if missing:
        raise src.error("service", "the mail system needs " + ", ".join(sorted(missing)))
    return ServiceTable(services, path)
