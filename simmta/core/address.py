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
_DOMAIN = re.compile(r"^(\[[0-9.:a-fA-F]+\]|[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                     r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)$")  # labels <= 63


def printable(text: str) -> str:
    """Like Postfix's printable(): what reaches a header is printable ASCII, the rest '?'.

    A bare CR in ``EHLO evil\rX-Injected: yes`` would otherwise end the
    Received: line for many mail readers.
    """
    return "".join(c if " " <= c < "\x7f" else "?" for c in text)


def syntax_error(address: str) -> str | None:
    """Why ``address`` is unacceptable (None if it is fine)."""
    if len(address) > PATH_MAX:
        return "address too long"
    if any(ord(c) < 33 or ord(c) == 127 for c in address):
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


def local_user(local_part: str, cfg: Config) -> str | None:
    """The local user a local part names (after aliases), or None. Case-insensitive."""
    name = local_part.lower()
    if "+" in name:  # address extensions: alice+lists -> alice
        name = name.split("+", 1)[0]
    name = cfg.alias_maps.get(name, name)
    return name if name in cfg.local_users else None
