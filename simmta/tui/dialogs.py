"""Modal screens: a pick-one menu (signals, faults, crash points ...) and help.

Trust: option labels are our own strings or names from the model (Text).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Markdown, OptionList, Static
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


HELP = """\
# simmta: keys

| key | what |
|---|---|
| F1 `m` / F2 `p` / F3 `u` | map / processes / queue |
| F4 `t` / F5 `e` / F6 `g` | SMTP sessions / event log / figures |
| `s` / `S` | send one message to bob / choose the recipient |
| `b` | send a burst · `l` local submission (sendmail) |
| `k` | kill a daemon (signal menu) · `f` peer or queue fault |
| `c` | arm a crash point · `a` lab attempt (`--lab`) |
| `h` `r` `R` `D` | hold / release / requeue / delete the selected message |
| `enter` | follow the selected message · `n` jump to its next event (replay) |
| `P` | pace: live → slow → step · `.` step one hop (replay: one event) |
| `,` | step back (replay) · `space` play/pause (live: freeze the log) |
| `+` `-` | replay speed · `/` filter (event log, tables) |
| `T` | theme: dark → light → projector · `w` / F12 screenshot (SVG) |
| `ctrl+p` | every action by name · `q` / `ctrl+q` quit |

Map: **☁ ╭─╮** the Internet (untrusted) · **⛓ ╔═╗** chroot jail (the queue
directory) · **◇ ┌─┐** unprivileged · **♛ ┏━┓** root · **⌂ ▛▀▜** users' Maildirs.
Dashed borders (╌ ┅ ╍) and the word SIMULATED mark boundaries simmta only
simulates because it is not running as root. `◆QID` is a message; `⟳` its retry.
"""


class Help(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss(None)", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog help"):
            yield Markdown(HELP)
