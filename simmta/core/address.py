"""Addresses: syntax checks (RFC 5321 limits) and resolution, like trivial-rewrite.

``resolve()`` answers where a recipient goes: the local transport (and which
user, if any), or the smtp transport and its next hop. smtpd uses it for the
relay decision, qmgr to route, local to find the mailbox owner; one function
serves all three so they cannot disagree.

Trust: input comes from the network. A local part becomes a user name only by
lookup in the configured tables; it never becomes a path.
"""

import re
from dataclasses import dataclass

from simmta.core.config import Config

LOCAL_PART_MAX = 64
DOMAIN_MAX = 255
PATH_MAX = 256
_DOMAIN = re.compile(
    r"^(\[[0-9.:a-fA-F]+\]|[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)$"
)  # labels <= 63
# Character classes, one regex search instead of a Python loop per character:
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # C0 controls and DEL
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")  # anything but printable ASCII
_ROUTING = re.compile(r"[%!@]")


def printable(text: str) -> str:
    """Like Postfix's printable(): what reaches a header is printable ASCII, the rest '?'.

    A bare CR in ``EHLO evil\rX-Injected: yes`` would otherwise end the
    Received: line for many mail readers.
    """
    return _UNPRINTABLE.sub("?", text)


def syntax_error(address: str) -> str | None:
    """Why ``address`` is unacceptable (None if it is fine)."""
    if len(address) > PATH_MAX:
        return "address too long"
    if _CONTROL_OR_SPACE.search(address):
        return "control character or space in address"
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return "address needs a local part and a domain"
    if len(local) > LOCAL_PART_MAX:
        return "local part too long"
    if len(domain) > DOMAIN_MAX or not _DOMAIN.match(domain):
        return "bad domain"
    return None


@dataclass(frozen=True)
class Route:
    transport: str  # "local", "smtp" or "error"
    nexthop: str = ""  # smtp: "peer" or "host:port"; local: the user ("" if unknown)
    reason: str = ""


def is_local_domain(domain: str, cfg: Config) -> bool:
    return domain.lower() in cfg.mydestination


def resolve(address: str, cfg: Config) -> Route:
    local, _, domain = address.rpartition("@")
    domain = domain.lower()
    if is_local_domain(domain, cfg):
        user = local_user(local, cfg)
        return Route("local", user or "", "" if user else "unknown user")
    hop = cfg.transport_maps.get(domain)
    if hop == "error":
        return Route("error", reason="domain is configured as undeliverable")
    return Route("smtp", hop or cfg.relayhost or "peer")


def routing_syntax(local_part: str) -> bool:
    """A local part that tries to route elsewhere: percent hack, bang path, quoted '@'.

    simmta never rewrites these (Postfix's allow_percent_hack and swap_bangpath
    off, resolve_dequoted_address without the relay): they name no user.
    """
    return _ROUTING.search(local_part) is not None


def unsafe_local_part(local_part: str) -> bool:
    """A local part that looks like a path or carries control characters."""
    return "/" in local_part or ".." in local_part or CONTROL.search(local_part) is not None


def _base(local_part: str) -> str:
    name = local_part.lower()
    return name.split("+", 1)[0]  # address extensions: alice+lists -> alice


def always_listed(local_part: str) -> bool:
    """postmaster and MAILER-DAEMON always reach a person (RFC 5321 4.5.1)."""
    return _base(local_part) in ("postmaster", "mailer-daemon")


def listed_recipient(local_part: str, cfg: Config) -> bool:
    """Whether local_recipient_maps lists this local part (empty maps: everything is listed)."""
    if routing_syntax(local_part) or unsafe_local_part(local_part):
        return False
    maps, name = cfg.local_recipient_maps, _base(local_part)
    return (
        not maps
        or always_listed(local_part)
        or ("local_users" in maps and name in cfg.local_users)
        or ("alias_maps" in maps and name in cfg.alias_maps)
    )


def local_user(local_part: str, cfg: Config) -> str | None:
    """The local user a local part names (after aliases), or None. Case-insensitive."""
    if routing_syntax(local_part) or unsafe_local_part(local_part):
        return None
    name = _base(local_part)
    name = cfg.alias_maps.get(name, name)
    return name if name in cfg.local_users else None
