"""Modal screens: a pick-one menu (signals, faults, crash points ...) and help.

Trust: option labels are our own strings or names from the model (Text).
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class Choose(ModalScreen[str | None]):
    """Pick one of ``choices`` (value, label); escape cancels."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, choices: list[tuple[str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.title_text, style="bold"))
            yield OptionList(*(Option(Text(label), id=value) for value, label in self.choices))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


KEYS: tuple[tuple[str, str], ...] = (
    ("F1 m · F2 p · F3 u", "map · processes · queue (+ message detail)"),
    ("F4 t · F5 e · F6 g", "SMTP sessions · event log · figures"),
    ("F7 i", "mailboxes: the delivered mail per user and the peer (enter replays its path)"),
    ("s · S", "send one message alice → bob · to a chosen local or remote user"),
    ("b · l", "send a burst · submit locally through sendmail (maildrop, pickup)"),
    ("k", "kill a daemon (choose it, then the signal)"),
    ("f · c", "set a peer or queue fault · arm a crash point"),
    ("h r R D", "hold · release · requeue · delete the followed message"),
    ("a", "lab attempt: a daemon tries what its privilege forbids (simmta tui --lab)"),
    ("enter · ↑↓", "follow the selected message · select on the map"),
    (". · ,", "view: the followed message's next · previous hop (replay: next · previous event)"),
    ("[ · ] · v", "view: the map's pace (live … 3 s per hop) · the hop list beside the map"),
    ("space · + -", "replay: play/pause · speed x0.1 … x64 (view controls: mail is never held)"),
    ("P · G", "MTA (presenter): hold every hand-off until G lets one go · P again lifts the hold"),
    ("n", "replay: jump to the followed message's next event"),
    ("/ · space", "filter (event log, tables) · live: freeze the event log"),
    ("click", "an event in the log goes to its message, session or process"),
    ("o", "processes: change the sort column"),
    ("T · w F12", "theme dark → light → projector · screenshot (SVG)"),
    ("ctrl+p · ? · q", "every action by name · this help · quit (ctrl+q)"),
)
LEGEND: tuple[tuple[str, str], ...] = (
    ("☁ ╭─╮", "the Internet: untrusted"),
    ("⛓ ╔═╗", "chroot jail = the queue directory; chrooted, unprivileged daemons"),
    ("◇ ┌─┐", "unprivileged (mail_owner) but not chrooted"),
    ("♛ ┏━┓", "root (master; local, which switches to the recipient's uid)"),
    ("⌂ ▛▀▜", "the users' Maildirs"),
    ("╌ ┅ ╍", "dashed border + SIMULATED: a boundary simmta only simulates (not root)"),
    ("● ◆ 3", "a message on its hop · the followed one · 3 messages bunched there"),
    ("──▶", "IPC request (bright) · a queue or store read or written (dim) · ◀──▶ both ways"),
    ("╫ ╪ ╂ ┿", "an edge crossing a region's frame"),
    ("⟳", "retry countdown of a deferred message"),
)


def _table(rows: tuple[tuple[str, str], ...]) -> Table:
    table = Table(box=None, show_header=False, padding=(0, 1), expand=True)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(ratio=1)
    for key, what in rows:
        table.add_row(key, what)
    return table


class Help(ModalScreen[None]):
    """Keys and the map legend (escape, q or ? closes)."""

    BINDINGS = [
        Binding("escape,q,question_mark", "dismiss(None)", "Close"),
        Binding("w,f12", "app.snap", "Screenshot"),  # the help itself is worth a screenshot
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Static(Text("simmta: keys", style="bold"))
            yield Static(_table(KEYS))
            yield Static(Text("the map", style="bold"))
            yield Static(_table(LEGEND))
