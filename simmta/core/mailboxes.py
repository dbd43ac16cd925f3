"""What a viewer reads of an instance's delivered mail: from the Maildirs, or through master.

A Maildir belongs to its user (mode 0700): in real mode a viewer who is not
root, and in rootless mode anyone outside the namespace (its users are uids
of the subordinate range), may not read it. Then master, which may, lists the
letters and reads one for it over the control socket (``mail`` and
``letter``: master lists only the instance's own mailboxes and reads only
regular files in their new/ and cur/). Used by the TUI's Mailboxes view.

Trust: letters are whatever their senders wrote, and what master sends is
typed again here; showing them inert is the viewer's job (``safe_text``).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from simmta.core import control, maildir
from simmta.core.errors import SimmtaError
from simmta.core.instance import Instance

Listed = list[maildir.Letter] | str  # a mailbox's letters, or why they cannot be read


def letters(instance: Instance, known: dict[str, maildir.Letter]) -> list[tuple[str, Listed]]:
    """(mailbox, its letters or why not) for every mailbox of ``instance``; ``known`` letters
    (by path) are not read again."""
    out: list[tuple[str, Listed]] = []
    listed: dict[str, Any] | None = None  # master's listing, asked for once
    for name, path in instance.mailboxes():
        try:
            out.append((name, maildir.letters(path, known=known)))
        except PermissionError as denied:
            try:
                listed = _listing(instance) if listed is None else listed
                out.append((name, _listed(listed, name)))
            except SimmtaError as e:
                out.append((name, f"cannot read {path} ({denied.strerror}), nor could master: {e}"))
        except OSError as e:
            out.append((name, f"cannot read {path}: {e.strerror or e}"))
    return out


def read(instance: Instance, path: Path) -> tuple[bytes, int]:
    """A letter's first ``maildir.MAX_READ`` bytes and its size: from its file, else through
    master. OSError or SimmtaError if neither can."""
    try:
        return maildir.read(path)
    except PermissionError:
        reply = control.request(instance.control_socket, "letter", timeout=5, file=str(path))
        try:
            return base64.b64decode(reply["data"])[: maildir.MAX_READ], int(reply["size"])
        except (KeyError, TypeError, ValueError) as e:
            raise SimmtaError(f"master sent a damaged letter ({e})") from None


def _listing(instance: Instance) -> dict[str, Any]:
    reply = control.request(instance.control_socket, "mail", timeout=5)
    return {str(m.get("name")): m for m in reply.get("mailboxes") or [] if isinstance(m, dict)}


def _listed(listed: dict[str, Any], name: str) -> list[maildir.Letter]:
    entry = listed.get(name) or {"error": "not among its mailboxes"}
    if "error" in entry:
        raise SimmtaError(str(entry["error"]))
    try:
        return [maildir.from_wire(x) for x in entry["letters"][: maildir.MAX_LETTERS]]
    except (KeyError, TypeError, ValueError) as e:
        raise SimmtaError(f"a listing it sent was damaged ({e})") from None
