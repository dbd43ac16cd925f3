"""The Mailboxes view: the mail that was delivered, per mailbox, read from the instance's Maildirs.

A line of counts per mailbox (each local user's, then the peer's: what "the
Internet" received), a table of letters (newest first: mailbox, when, from,
subject, queue ID) and, beside it, the highlighted letter as its file holds
it: headers, a blank line, the body. Enter on a letter posts ``MailChosen``
with its queue ID (from simmta's own Received: line), and the app replays
that message's path on the map. The files are re-read when the view is shown,
when a delivery is counted, and every few seconds; a letter's file is read
only when it is listed first or shown.

Bounded: ``maildir.MAX_LETTERS`` letters listed per mailbox, ``maildir.MAX_READ``
bytes of a letter and ``MAX_LINES`` lines shown, each line cut at ``LINE_CHARS``.
Trust: a letter is whatever its sender wrote. Every line is passed through
``safe_text`` (control characters shown as ``\\x1b``, never sent to the
terminal) and shown as a ``Text`` (markup such as ``[link=...]`` is not
interpreted). A Maildir the TUI may not read (it is its user's, mode 0700:
in rootless mode a uid of the namespace) is read through master's control
socket (``mail``, ``letter``: master lists only the instance's mailboxes and
reads only their letters: ``simmta.core.mailboxes``), and if that fails too
it is named with the error, not hidden.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable

from simmta.core import mailboxes, maildir
from simmta.core.errors import SimmtaError
from simmta.core.events import safe_text
from simmta.core.instance import Instance
from simmta.tui import fmt
from simmta.tui.widgets.messages import MailChosen
from simmta.tui.widgets.quiet import QuietStatic

MAX_LINES = 400  # lines of one letter shown
LINE_CHARS = 400  # characters of one line shown
RESCAN = 3.0  # seconds between re-reads of the Maildirs while the view is shown


def letter_lines(raw: bytes, size: int) -> list[Text]:
    """A letter's bytes as inert lines: headers in bold names, a rule, the body; bounded."""
    headers, body = maildir.split_headers(raw)
    lines = [
        Text.assemble((safe_text(k, 80) + ":", "bold"), " ", safe_text(v, LINE_CHARS)) for k, v in headers
    ]
    lines.append(Text(""))
    text = body.decode("utf-8", "backslashreplace")
    for line in text.split("\n")[: max(0, MAX_LINES - len(lines))]:
        lines.append(Text(safe_text(line, LINE_CHARS)))
    shown = len(raw)
    if size > shown or len(lines) >= MAX_LINES:
        lines.append(
            Text(f"… cut: {size} bytes, the first {shown} read, {MAX_LINES} lines shown", style="dim")
        )
    return lines


class LetterTable(DataTable[Any]):
    BINDINGS = [Binding("enter", "choose", "Replay its path")]

    def action_choose(self) -> None:
        view = self.parent_view()
        if view is not None and self.row_count:
            view.choose(self.current_key())

    def current_key(self) -> str:
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return str(row_key.value)

    def parent_view(self) -> MailboxesView | None:
        for node in self.ancestors:
            if isinstance(node, MailboxesView):
                return node
        return None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        view = self.parent_view()
        if view is not None and event.row_key is not None and event.row_key.value:
            view.show_letter(str(event.row_key.value))


class MailboxesView(Vertical):
    """Counts per mailbox, the letters, the highlighted letter (see the module docstring)."""

    def __init__(self, instance: Path | None, **kw: Any) -> None:
        super().__init__(**kw)
        self.instance = Instance(instance) if instance is not None else None
        self.letters: dict[str, tuple[str, maildir.Letter]] = {}  # path -> (mailbox, letter)
        self.problems: list[str] = []
        self.told = ""  # what the app last said about a chosen letter (its path not seen ...)
        self._scanned = 0.0
        self._delivered = -1
        self.counts = Text()

    def compose(self) -> ComposeResult:
        yield QuietStatic(id="mail-counts")
        with Horizontal():
            yield LetterTable(cursor_type="row", zebra_stripes=True, id="mail-table")
            with VerticalScroll(id="letter-box"):
                yield QuietStatic(id="letter")

    def on_mount(self) -> None:
        self.query_one(LetterTable).add_columns("mailbox", "delivered", "from", "subject", "queue ID")

    def update_from_instance(self, delivered: int) -> None:
        """Re-read the Maildirs if a delivery was counted or RESCAN seconds passed."""
        if delivered == self._delivered and time.monotonic() - self._scanned < RESCAN:
            return
        self._delivered, self._scanned = delivered, time.monotonic()
        self.scan()

    def scan(self) -> None:
        counts = Text()
        self.problems = []
        known = self.letters
        self.letters = {}
        if self.instance is None:
            counts.append("no instance: the Mailboxes view reads a live MTA's Maildirs", style="dim")
        known_letters = {p: letter for p, (_, letter) in known.items()}
        for name, found in mailboxes.letters(self.instance, known_letters) if self.instance else ():
            if isinstance(found, str):
                self.problems.append(f"{name}: {found}")
                counts.append(f"{safe_text(name, 40)} ? ", style="bold")
                continue
            counts.append(f"{safe_text(name, 40)} ", style="dim")
            counts.append(f"{len(found)}   ", style="bold")
            for letter in found:
                self.letters[str(letter.path)] = (name, letter)
        self.counts = counts
        self._show_counts()
        self._fill()

    def _show_counts(self) -> None:
        lines = [self.counts, *(Text(p, style="bold reverse") for p in self.problems)]
        if self.told:
            lines.append(Text(self.told, style="bold"))
        self.query_one("#mail-counts", QuietStatic).show_lines(lines)

    def tell(self, what: str) -> None:
        """A line under the counts (kept until the next letter is chosen)."""
        self.told = safe_text(what, 300)
        self._show_counts()

    def _fill(self) -> None:
        table = self.query_one(LetterTable)
        rows = sorted(self.letters.items(), key=lambda kv: kv[1][1].mtime, reverse=True)
        keys = [k for k, _ in rows]
        if keys == [str(k.value) for k in table.rows]:
            return
        current = table.current_key() if table.row_count else None
        table.clear()
        for key, (name, letter) in rows:
            table.add_row(
                Text(safe_text(name, 40), style="bold"),
                Text(fmt.clock(letter.mtime)[:8]),
                Text(safe_text(letter.header("From"), 60)),
                Text(safe_text(letter.header("Subject"), 80)),
                Text(letter.qid or "-"),
                key=key,
            )
        if current in keys:
            table.move_cursor(row=keys.index(current))
        elif keys:
            self.show_letter(keys[0])
        else:
            self.query_one("#letter", QuietStatic).show_lines(
                [Text("no mail delivered yet (s sends one)", style="dim")]
            )

    def show_letter(self, key: str) -> None:
        entry = self.letters.get(key)
        box = self.query_one("#letter", QuietStatic)
        if entry is None:
            return
        name, letter = entry
        head = Text.assemble(
            (f"{safe_text(name, 40)}  ", "bold"),
            (safe_text(self.where(letter.path), 200), "dim"),
            (f"  queue ID {letter.qid}" if letter.qid else "  no simmta Received: line", "dim"),
        )
        try:
            assert self.instance is not None
            raw, size = mailboxes.read(self.instance, letter.path)
        except (OSError, SimmtaError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            box.show_lines([head, Text(f"cannot read it: {safe_text(why, 300)}", style="bold reverse")])
            return
        hint = Text("enter: replay its path on the map", style="dim")
        box.show_lines([head, hint, Text(""), *letter_lines(raw, size)])

    def where(self, path: Path) -> str:
        """A letter's file, under the instance directory (the status line names the instance)."""
        assert self.instance is not None
        return (
            str(path.relative_to(self.instance.path))
            if path.is_relative_to(self.instance.path)
            else str(path)
        )

    def choose(self, key: str) -> None:
        entry = self.letters.get(key)
        if entry is not None:
            self.tell("")
            self.post_message(MailChosen(entry[1].qid, entry[0]))
