"""The services table (master.cf as data) and the graph built from it.

One table drives master (what to start, how privileged), the map the TUI
draws, and the lessons' questions ("which services are chrooted?").

A table is also an *architecture profile* (``--profile postfix|qmail|sendmail``):
the same daemons composed into the processes of another design, with that
design's accounts (``[[account]]``, uids as offsets in the instance's uid block),
its program names (``label``, and ``short`` for a small map), who starts whom in the real program
(``parent``), how long a process lives (``lifetime``) and set-uid programs,
emulated (``setuid``: real uid of the caller, effective and saved uid of the
program's owner). See simmta.core.profiles for the shipped ones.

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

LIFETIMES = ("resident", "reused", "per-connection", "per-message")
ROOT = "root"
MAIL_OWNER = "mail_owner"  # the account named by main.toml's mail_owner_uid/gid
UID_BLOCK = 16  # a profile's accounts are offsets 0..15 from mail_owner_uid
SHORT_MAX = 10  # a box's name on a small map (80x24, the lesson screen) fits this many cells


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
    label: str = ""
    short: str = ""
    user: str = ""
    setuid: str = ""
    parent: str = "master"
    lifetime: str = ""
    embeds: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def resident(self) -> bool:
        """Started when master starts (Postfix: services with a wakeup timer)."""
        return self.wakeup > 0

    @property
    def program(self) -> str:
        """The name of this process in the profile's design (qmail-smtpd, sendmail ...)."""
        return self.label or self.name

    @property
    def account(self) -> str:
        """The account the process runs as (its real uid)."""
        return self.user or (MAIL_OWNER if self.unpriv else ROOT)

    @property
    def life(self) -> str:
        return self.lifetime or ("resident" if self.resident else "reused")

    @property
    def max_use(self) -> int | None:
        """Requests before exit, if the design throws the process away (else max_use)."""
        return 1 if self.life in ("per-connection", "per-message") else None

    @property
    def socket_dir(self) -> str:
        return names.PRIVATE if self.private else names.PUBLIC

    def process_limit(self, default_process_limit: int) -> int:
        return self.maxproc or default_process_limit

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        d["resident"] = self.resident
        d["program"], d["account"], d["life"] = self.program, self.account, self.life
        return d


_TYPES: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "type": str,
    "command": str,
    "private": bool,
    "unpriv": bool,
    "chroot": bool,
    "wakeup": int,
    "maxproc": int,
    "talks_to": list,
    "reads": list,
    "writes": list,
    "faces": str,
    "role": str,
    "summary": str,
    "label": str,
    "short": str,
    "user": str,
    "setuid": str,
    "parent": str,
    "lifetime": str,
    "embeds": list,
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
    if entry["command"] not in names.DAEMONS:
        raise err("command", "no such daemon (known: " + ", ".join(sorted(names.DAEMONS)) + ")")
    if entry.get("lifetime", "resident") not in LIFETIMES:
        raise err("lifetime", "expected one of " + ", ".join(LIFETIMES))
    if len(entry.get("short", "")) > SHORT_MAX:
        raise err("short", f"at most {SHORT_MAX} characters (the map's small boxes)")
    for key in ("wakeup", "maxproc"):
        if entry.get(key, 0) < 0:
            raise err(key, "must not be negative")
    for key in ("talks_to", "reads", "writes", "embeds"):
        if not all(isinstance(x, str) for x in entry.get(key, [])):
            raise err(key, "expected a list of names")
        entry[key] = tuple(entry.get(key, ()))
    for key in ("reads", "writes"):
        for q in entry[key]:
            if q not in names.ALL_QUEUES and q not in names.STORES:
                raise err(key, f"unknown queue or store {q!r}")
    return Service(**entry)


@dataclass(frozen=True)
class Profile:
    """The design a table describes, and the accounts its processes run as.

    ``accounts`` maps an account name to (uid offset, group name); ``groups`` a
    group name to its gid offset; both offsets count from mail_owner_uid/gid,
    so moving the instance's uid block (or mapping it onto a subuid range) moves
    every account with it.
    """

    name: str = "postfix"
    title: str = "Postfix"
    summary: str = ""
    notes: tuple[str, ...] = ()
    queue_owner: str = MAIL_OWNER
    queue_group: str = MAIL_OWNER
    accounts: dict[str, tuple[int, str]] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)

    @property
    def group_shared_queue(self) -> bool:
        """Several uids share the queue through its group (qmail's group qmail)."""
        return self.queue_group != self.queue_owner

    def ids(self, cfg: Any) -> dict[str, tuple[int, int]]:
        """uid and gid of every account the profile names, root, mail_owner and the peer's included."""
        mail_owner_uid, mail_owner_gid = cfg.mail_owner_uid, cfg.mail_owner_gid
        out = {
            ROOT: (0, 0),
            MAIL_OWNER: (mail_owner_uid, mail_owner_gid),
            names.PEER: (cfg.peer_uid, cfg.peer_gid),
        }
        for name, (offset, group) in self.accounts.items():
            gid = mail_owner_gid + self.groups[group] if group in self.groups else mail_owner_gid
            out[name] = (mail_owner_uid + offset, gid)
        return out

    def gid_of(self, group: str, mail_owner_gid: int) -> int:
        return mail_owner_gid + self.groups[group] if group in self.groups else mail_owner_gid

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "summary": self.summary,
            "notes": list(self.notes),
            "queue_owner": self.queue_owner,
            "queue_group": self.queue_group,
            "accounts": {k: list(v) for k, v in self.accounts.items()},
            "groups": self.groups,
        }


def _profile(src: TomlFile) -> Profile:
    raw = src.data.get("profile", {})
    known = {"name", "title", "summary", "notes", "queue_owner", "queue_group"}
    if not isinstance(raw, dict) or set(raw) - known:
        raise src.error("profile", "expected a table with " + ", ".join(sorted(known)))
    if not all(isinstance(v, str) for k, v in raw.items() if k != "notes") or not all(
        isinstance(n, str) for n in raw.get("notes", [])
    ):
        raise src.error("profile", "expected text values (notes: a list of strings)")
    groups: dict[str, int] = {}
    for g in src.data.get("group", []):
        if not (
            isinstance(g, dict)
            and isinstance(g.get("name"), str)
            and isinstance(g.get("offset"), int)
            and 0 < g["offset"] < UID_BLOCK
        ):
            raise src.error("group", f"expected name and an offset 1..{UID_BLOCK - 1}")
        groups[g["name"]] = g["offset"]
    accounts: dict[str, tuple[int, str]] = {}
    for a in src.data.get("account", []):
        if not (
            isinstance(a, dict)
            and isinstance(a.get("name"), str)
            and isinstance(a.get("offset"), int)
            and 0 < a["offset"] < UID_BLOCK
            and a.get("group", MAIL_OWNER) in (*groups, MAIL_OWNER)
        ):
            raise src.error("account", f"expected name, an offset 1..{UID_BLOCK - 1} and a known group")
        accounts[a["name"]] = (a["offset"], a.get("group", MAIL_OWNER))
    offsets = [o for o, _ in accounts.values()]
    if len(set(offsets)) != len(offsets) or len(set(groups.values())) != len(groups):
        raise src.error("account", "each account and group needs an offset of its own")
    prof = Profile(**{**raw, "notes": tuple(raw.get("notes", ())), "accounts": accounts, "groups": groups})
    if prof.queue_owner not in (*accounts, MAIL_OWNER, ROOT):
        raise src.error("profile.queue_owner", f"unknown account {prof.queue_owner!r}")
    if prof.queue_group not in (*groups, MAIL_OWNER, ROOT):
        raise src.error("profile.queue_group", f"unknown group {prof.queue_group!r}")
    return prof


class ServiceTable:
    """The ordered services, looked up by name, and the profile they belong to."""

    def __init__(self, services: list[Service], source: Path | None = None, profile: Profile | None = None):
        self.services = services
        self.source = source
        self.profile = profile or Profile()
        self.by_name = {s.name: s for s in services}

    def find(self, name: str) -> Service | None:
        """A service by its name or by its program name in the profile (qmail-smtpd)."""
        return self.by_name.get(name) or next((s for s in self.services if s.label == name), None)

    def internet_facing(self) -> Service:
        """The process a remote SMTP client talks to (the lab's usual target)."""
        return next(s for s in self.services if s.type == "inet" and s.role != "internet")

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


PROFILES = {"postfix": "services.toml", "qmail": "profiles/qmail.toml", "sendmail": "profiles/sendmail.toml"}
DEFAULT_PROFILE = "postfix"


def load(path: Path | None = None, profile: str = DEFAULT_PROFILE) -> ServiceTable:
    """The instance's table if ``path`` exists, else the shipped ``profile``."""
    if path is not None and path.exists():
        src = TomlFile(path)
    else:
        if profile not in PROFILES:
            raise ConfigError(
                None, None, "profile", f"unknown profile {profile!r} (known: " + ", ".join(PROFILES) + ")"
            )
        rel = f"data/{PROFILES[profile]}"
        text = resources.files("simmta").joinpath(rel).read_text("utf-8")
        src = TomlFile(Path(f"<simmta>/{rel}"), text)
        path = None
    entries = src.data.get("service")
    extra = set(src.data) - {"service", "profile", "account", "group"}
    if extra:
        raise src.error(
            sorted(extra)[0],
            "unknown top-level key (expected [profile], [[account]], [[group]] and [[service]] tables)",
        )
    prof = _profile(src)
    if not isinstance(entries, list) or not entries:
        raise src.error("service", "no [[service]] entries")
    lines = src.table_lines("service")
    services = [_service(dict(e), src, lines[i] if i < len(lines) else 1) for i, e in enumerate(entries)]
    seen: set[str] = set()
    shorts: set[str] = set()
    for i, s in enumerate(services):
        if s.name in seen:
            raise src.error("service.name", f"duplicate service {s.name!r}", lines[i])
        if s.short and s.short in shorts:
            raise src.error("service.short", f"short name {s.short!r} taken by another service", lines[i])
        seen.add(s.name)
        shorts.add(s.short)
    for i, s in enumerate(services):
        for peer in (*s.talks_to, *s.embeds):
            if peer not in seen:
                raise src.error("service.talks_to", f"unknown service {peer!r}", lines[i])
    for i, s in enumerate(services):
        for key in ("user", "setuid"):
            acct = getattr(s, key)
            if acct and acct not in (*prof.accounts, MAIL_OWNER, ROOT):
                raise src.error(f"service.{key}", f"unknown account {acct!r}", lines[i])
    required = {names.SMTPD, names.CLEANUP, names.QMGR, names.LOCAL}
    missing = required - {names.SMTPD if s.command == names.SENDMAIL else s.command for s in services}
    if missing:
        raise src.error("service", "the mail system needs " + ", ".join(sorted(missing)))
    return ServiceTable(services, path, prof)
