"""What lessons may cite: sections of ``docs/sources.md``, or files of simmta itself.

``docs/sources.md`` quotes, word for word and with its public address, every
passage the course relies on; each ``## id`` heading is a section a lesson
cites as ``docs/sources.md#id``. A lesson may also cite a file of simmta's own
tree (``simmta/core/maildir.py``) when it says what simmta does. Anything else
(a file the student does not have, a section that does not exist, free text) is
a validation error, so a student can always open what a lesson cites.

Trust: reads a file shipped with simmta; citations come from teachers and are
only compared with it, never opened as paths outside the tree.
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import simmta

SOURCES_REF = "docs/sources.md"
_SECTION = re.compile(r"^## ([a-z0-9][a-z0-9-]*)\s*$")
_URL = re.compile(r"https?://\S+")
_REPO_FILE = re.compile(r"^(simmta|lessons|docs)/[\w./-]+$")


@dataclass(frozen=True)
class Source:
    id: str
    title: str  # the first line under the heading
    url: str | None

    @property
    def ref(self) -> str:
        return f"{SOURCES_REF}#{self.id}"


def tree_roots() -> list[Path]:
    """Where simmta's files are: a source checkout, or an installation's share/simmta."""
    package_parent = Path(simmta.__file__).resolve().parent.parent
    return [package_parent, Path(sys.prefix) / "share" / "simmta"]


def sources_file() -> Path:
    for root in tree_roots():
        if (root / SOURCES_REF).is_file():
            return root / SOURCES_REF
    return tree_roots()[0] / SOURCES_REF


def parse(text: str) -> dict[str, Source]:
    out: dict[str, Source] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _SECTION.match(line)
        if not m:
            continue
        body = [x for x in lines[i + 1 : i + 6] if x.strip() and not _SECTION.match(x)]
        title = body[0].strip() if body else m.group(1)
        url = next((u.group(0).rstrip(".,)") for x in body if (u := _URL.search(x))), None)
        out[m.group(1)] = Source(m.group(1), title, url)
    return out


@functools.cache
def index() -> dict[str, Source]:
    """The sections of the shipped docs/sources.md (empty if it is missing)."""
    try:
        return parse(sources_file().read_text(encoding="utf-8"))
    except OSError:
        return {}


def problem(citation: str, sections: dict[str, Source] | None = None) -> str | None:
    """Why ``citation`` is not something a student can open, or None if it is fine."""
    known = index() if sections is None else sections
    if citation.startswith(SOURCES_REF + "#"):
        section = citation.partition("#")[2]
        if section in known:
            return None
        return f"source {citation!r}: no section {section!r} in {SOURCES_REF}"
    if _REPO_FILE.match(citation) and ".." not in citation.split("/"):
        if any((root / citation).is_file() for root in tree_roots()):
            return None
        return f"source {citation!r}: no such file in simmta's tree"
    return (
        f"source {citation!r}: cite a section of {SOURCES_REF} ({SOURCES_REF}#SECTION) "
        "or a file of simmta's tree (e.g. simmta/core/maildir.py)"
    )


def describe(citation: str) -> str:
    """A citation as a student reads it: the section's title and public address."""
    if citation.startswith(SOURCES_REF + "#"):
        found = index().get(citation.partition("#")[2])
        if found is not None:
            return (
                f"{found.title}"
                + (f" <{found.url}>" if found.url and found.url not in found.title else "")
                + f" ({citation})"
            )
    return citation
