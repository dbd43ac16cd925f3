"""Main parameters, in the spirit of Postfix's main.cf, with Postfix's names.

Every parameter has a default, so no file is needed. An instance may hold
``main.toml``; an unknown key, a wrong type or a bad value is refused with the
file, line and key named. ``simmta config`` prints the effective values.

Trust: reads a file written by the instance owner; daemons get the validated
values from master (as JSON on their command line), never re-read the file.
"""

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simmta.core.errors import ConfigError
from simmta.core.tomlfile import TomlFile

_TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _time(v: Any) -> float:
    """Seconds; a number or a string with a Postfix time unit (300s, 5m, 5d)."""
    if isinstance(v, bool):
        raise ValueError("expected a time (seconds, or a string like '300s', '5d')")
    if isinstance(v, int | float):
        t = float(v)
    elif isinstance(v, str) and (m := re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw]?)", v.strip())):
        t = float(m.group(1)) * _TIME_UNITS[m.group(2) or "s"]
    else:
        raise ValueError("expected a time (seconds, or a string like '300s', '5d')")
    if t < 0:
        raise ValueError("must not be negative")
    return t


def duration(seconds: float) -> str:
    """A time for people: 59s, 4m59s, 1h06m."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _int(minimum: int = 0) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError("expected a whole number")
        if v < minimum:
            raise ValueError(f"must be at least {minimum}")
        return v

    return check


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("expected a string")
    return v


def _hostname(v: Any) -> str:
    v = _str(v).strip().lower()
    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)*", v):
        raise ValueError("not a valid host or domain name")
    return v


def _domains(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise ValueError("expected a list of domain names")
    return tuple(_hostname(x) for x in v)


def _networks(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError("expected a list of networks like '127.0.0.1/32'")
    try:
        return tuple(str(ipaddress.ip_network(x, strict=False)) for x in v)
    except ValueError as e:
        raise ValueError(str(e)) from None


def _networks_or_mynetworks(v: Any) -> tuple[str, ...]:
    """Networks, where the item "$mynetworks" stands for mynetworks' value (as in main.cf)."""
    if isinstance(v, list) and "$mynetworks" in v:
        return ("$mynetworks", *_networks([x for x in v if x != "$mynetworks"]))
    return _networks(v)


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}
_ESCAPE = re.compile(r"\\([0-7]{1,3}|[abfnrtv\\])")


def characters(spec: str) -> bytes:
    """The bytes a character-set parameter names, with Postfix's escapes (``\\0``, ``\\r``)."""

    def one(m: re.Match[str]) -> str:
        e = m.group(1)
        return chr(int(e, 8)) if e[0].isdigit() else _ESCAPES[e]

    return _ESCAPE.sub(one, spec).encode("latin-1")  # no codec lookup: daemons run chrooted


def _chars(v: Any) -> str:
    v = _str(v)
    try:
        if not v.isascii():
            raise ValueError
        characters(v)
    except (ValueError, UnicodeError):
        raise ValueError("expected ASCII characters, with escapes such as \\0 or \\r") from None
    return v


def _recipient_maps(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(x in ("local_users", "alias_maps") for x in v):
        raise ValueError("expected a list of tables: 'local_users', 'alias_maps' (or [])")
    return tuple(v)


def _loopback(v: Any) -> str:
    v = _str(v)
    try:
        addr = ipaddress.ip_address(v)
    except ValueError:
        raise ValueError("expected an IP address") from None
    if not addr.is_loopback:
        raise ValueError("simmta listens on loopback only (127.0.0.0/8 or ::1)")
    return v


def _port(v: Any) -> int:
    p = _int(0)(v)
    if p > 65535:
        raise ValueError("a port is at most 65535")
    return p


def check_nexthop(v: Any) -> str:
    """'' (the peer), 'peer', or 'host:port' on loopback."""
    v = _str(v).strip()
    if v in ("", "peer"):
        return v
    host, sep, port = v.rpartition(":")
    if not sep:
        raise ValueError("expected 'peer' or 'host:port'")
    _loopback(host.strip("[]"))
    if not port.isdigit():
        raise ValueError("expected 'peer' or 'host:port'")
    _port(int(port))
    return v


def _transport_maps(v: Any) -> dict[str, str]:
    if not isinstance(v, dict):
        raise ValueError("expected a table of domain = 'peer' | 'host:port' | 'error'")
    out = {}
    for dom, hop in v.items():
        _hostname(dom)
        if hop != "error":
            check_nexthop(hop)
        out[dom.lower()] = hop
    return out


def _users(v: Any) -> dict[str, int]:
    if not isinstance(v, dict) or not v:
        raise ValueError("expected a table of user = uid")
    out = {}
    for name, uid in v.items():
        if not re.fullmatch(r"[a-z][a-z0-9._-]{0,31}", name):
            raise ValueError(f"bad user name {name!r}")
        out[name] = _int(1)(uid)
    return out


def _aliases(v: Any) -> dict[str, str]:
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        raise ValueError("expected a table of alias = user")
    return {k.lower(): x.lower() for k, x in v.items()}


def _choice(*options: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in options:
            raise ValueError("expected one of " + ", ".join(options))
        return v

    return check


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    check: Callable[[Any], Any]
    doc: str


PARAMS: tuple[Param, ...] = (
    Param("myhostname", "mx.simmta.test", _hostname, "this mail system's host name (greeting, Received:)"),
    Param("mydomain", "simmta.test", _hostname, "the local domain"),
    Param(
        "mydestination",
        ["simmta.test", "mx.simmta.test", "localhost"],
        _domains,
        "domains delivered locally; everything else is remote",
    ),
    Param("mynetworks", ["127.0.0.1/32", "::1/128"], _networks, "clients allowed to relay to remote domains"),
    Param("inet_interfaces", "127.0.0.1", _loopback, "address smtpd listens on (loopback only)"),
    Param("smtp_port", 2525, _port, "smtpd's TCP port (0: any free port)"),
    Param("peer_port", 0, _port, "the peer's TCP port (0: any free port)"),
    Param(
        "relayhost",
        "",
        check_nexthop,
        "next hop for remote mail: '' or 'peer' (the simulated Internet) or host:port",
    ),
    Param(
        "transport_maps", {}, _transport_maps, "per-domain next hop: domain = 'peer' | 'host:port' | 'error'"
    ),
    Param(
        "local_users",
        {"alice": 61001, "bob": 61002, "carol": 61003},
        _users,
        "local users and the uid each owns its Maildir with (no accounts are created)",
    ),
    Param(
        "alias_maps",
        {"postmaster": "alice", "root": "alice", "mailer-daemon": "alice"},
        _aliases,
        "local aliases: alias = user",
    ),
    Param("mail_owner_uid", 61000, _int(1), "uid unprivileged daemons switch to (shared with nothing else)"),
    Param("mail_owner_gid", 61000, _int(1), "gid unprivileged daemons switch to"),
    Param("peer_uid", 61100, _int(1), 'uid of the peer, "the Internet" (shared with nothing else)'),
    Param("peer_gid", 61100, _int(1), "gid of the peer"),
    Param(
        "uid_allocation",
        "auto",
        _choice("auto", "fixed"),
        "as root: 'auto' moves the whole uid block (mail_owner, the profile's accounts, the "
        "peer, local_users) by 16 until no uid is a host account's or another running "
        "instance's; 'fixed' refuses to start on a clash",
    ),
    Param("message_size_limit", 10240000, _int(1024), "largest message accepted, in bytes (552 5.3.4)"),
    Param("line_length_limit", 2048, _int(1001), "longest line accepted in SMTP (including CRLF)"),
    Param("header_size_limit", 102400, _int(1024), "header text kept per message; excess is discarded"),
    Param("hopcount_limit", 50, _int(1), "Received: headers before a message is a mail loop (554 5.4.0)"),
    Param("smtpd_recipient_limit", 1000, _int(1), "recipients per message (452 4.5.3 past it)"),
    Param("smtpd_timeout", 300.0, _time, "idle time before smtpd says 421 and closes"),
    Param("smtpd_soft_error_limit", 10, _int(0), "errors before smtpd slows the client down"),
    Param("smtpd_hard_error_limit", 20, _int(1), "errors before smtpd disconnects (421)"),
    Param("smtpd_error_sleep_time", 1.0, _time, "delay per reply past the soft error limit"),
    Param(
        "smtpd_junk_command_limit",
        100,
        _int(1),
        "NOOP/RSET/VRFY/EXPN commands per session (not HELP: Postfix does not count it)",
    ),
    Param(
        "smtpd_client_connection_count_limit",
        50,
        _int(0),
        "sessions at once from one client outside the exceptions (421 4.7.0 past it; 0: no limit)",
    ),
    Param(
        "smtpd_client_event_limit_exceptions",
        ["$mynetworks"],
        _networks_or_mynetworks,
        "clients exempt from smtpd_client_connection_count_limit",
    ),
    Param(
        "smtpd_forbid_bare_newline",
        "reject",
        _choice("no", "normalize", "yes", "reject"),
        "a line ended by a bare LF, in commands and DATA: reject (550 5.5.2; simmta's default), "
        "normalize or yes (taken as CRLF; Postfix 3.9's default), no (the same here: Postfix 3.7's)",
    ),
    Param(
        "smtpd_forbid_bare_newline_exclusions",
        ["$mynetworks"],
        _networks_or_mynetworks,
        "clients exempt from smtpd_forbid_bare_newline (their bare LFs are normalized)",
    ),
    Param(
        "strict_rfc821_envelopes",
        True,
        _bool,
        "MAIL FROM/RCPT TO need <angle brackets> (501; Postfix's default is no)",
    ),
    Param(
        "local_recipient_maps",
        ["local_users", "alias_maps"],
        _recipient_maps,
        "tables listing the valid local recipients (empty: every local part is accepted at RCPT)",
    ),
    Param(
        "smtpd_reject_unlisted_recipient",
        True,
        _bool,
        "refuse at RCPT a local recipient not in local_recipient_maps (550 5.1.1)",
    ),
    Param(
        "message_reject_characters",
        "\\0",
        _chars,
        "characters refused in message content (550 5.6.0; Postfix's default is none)",
    ),
    Param("message_strip_characters", "", _chars, "characters removed from message content"),
    Param(
        "cleanup_replace_stray_cr_lf",
        True,
        _bool,
        "cleanup replaces a CR not followed by LF with a space (the smtp client always does)",
    ),
    Param("smtp_connect_timeout", 30.0, _time, "smtp client: time to connect to the next hop"),
    Param("smtp_helo_timeout", 300.0, _time, "smtp client: time for the greeting and each reply"),
    Param("smtp_data_done_timeout", 600.0, _time, "smtp client: time for the reply after the final dot"),
    Param("queue_run_delay", 300.0, _time, "time between scans of the deferred queue"),
    Param("minimal_backoff_time", 300.0, _time, "first retry delay of a deferred message"),
    Param("maximal_backoff_time", 4000.0, _time, "retry delays double up to this"),
    Param("maximal_queue_lifetime", 432000.0, _time, "age at which a deferred message is bounced"),
    Param(
        "default_destination_concurrency_limit",
        20,
        _int(1),
        "deliveries in parallel to one destination (a next hop)",
    ),
    Param(
        "local_destination_concurrency_limit",
        2,
        _int(1),
        "local deliveries in parallel to one recipient (one Maildir)",
    ),
    Param("default_process_limit", 100, _int(1), "process limit of a service whose maxproc is 0"),
    Param("max_use", 100, _int(1), "requests a daemon serves before it exits"),
    Param("max_idle", 100.0, _time, "idle time before a non-resident daemon exits"),
    Param("service_throttle_time", 60.0, _time, "how long a crash-looping service is not restarted"),
    Param("events_enabled", True, _bool, "daemons emit instrumentation events"),
    Param(
        "disk_events",
        False,
        _bool,
        "daemons emit one event per fsync, rename and link they do for a message (simmta.core.disk)",
    ),
)
PARAM_BY_NAME = {p.name: p for p in PARAMS}


class Config(dict[str, Any]):
    """Effective parameters. Attribute access for brevity: ``cfg.message_size_limit``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def defaults() -> Config:
    return Config({p.name: p.check(p.default) for p in PARAMS})


def apply(cfg: Config, values: dict[str, Any], source: TomlFile | None = None) -> Config:
    """Validate ``values`` and lay them over ``cfg``; errors name file, line, key."""
    out = Config(cfg)
    for key, value in values.items():
        param = PARAM_BY_NAME.get(key)
        if param is None:
            what = "unknown parameter (see 'simmta config' for the list)"
            raise source.error(key, what) if source else ConfigError(None, None, key, what)
        try:
            out[key] = param.check(value)
        except ValueError as e:
            raise (source.error(key, str(e)) if source else ConfigError(None, None, key, str(e))) from None
    if out.smtpd_soft_error_limit > out.smtpd_hard_error_limit:
        raise ConfigError(
            source.path if source else None,
            None,
            "smtpd_soft_error_limit",
            "must not exceed smtpd_hard_error_limit",
        )
    if out.minimal_backoff_time > out.maximal_backoff_time:
        raise ConfigError(
            source.path if source else None,
            None,
            "minimal_backoff_time",
            "must not exceed maximal_backoff_time",
        )
    for alias, user in out.alias_maps.items():
        if user not in out.local_users:
            raise ConfigError(
                source.path if source else None,
                source.line_of(alias) if source else None,
                f"alias_maps.{alias}",
                f"{user!r} is not in local_users",
            )
    ids = [*out.local_users.values(), out.mail_owner_uid, out.peer_uid]
    if len(set(ids)) != len(ids):
        raise ConfigError(
            source.path if source else None,
            None,
            "local_users",
            "each user, mail_owner_uid and peer_uid need a uid of their own",
        )
    return out


def load(path: Path) -> Config:
    """Defaults, then ``path`` if it exists."""
    cfg = defaults()
    if not path.exists():
        return cfg
    source = TomlFile(path)
    return apply(cfg, source.data, source)
