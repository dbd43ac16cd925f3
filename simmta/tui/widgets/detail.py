"""Message detail: envelope, headers, outcomes and full event history of one message.

In a live session the queue file's records (``simmta cat``, like postcat) follow.
The history spans every process that touched the message (smtpd, cleanup,
qmgr, local ...): the queue ID is the thread that joins their events.
Trust: all text from the model, rendered as Text.
"""

from __future__ import annotations

from rich.text import Text

from simmta.tui import fmt
from simmta.tui.model import Model
from simmta.tui.widgets.quiet import QuietStatic


class MessageDetail(QuietStatic):
    def show(self, model: Model, qid: str | None, now: float, records: list[str] | None = None) -> None:
        msg = model.messages.get(qid or "")
        if msg is None:
            self.show_lines([Text("select a message (enter follows it on the map)", style="dim")])
            return
        lines = fmt.message_card(msg, now)
        lines.append(Text(f"history ({len(msg.history)} events)", style="bold"))
        lines.extend(fmt.event_line(e) for e in msg.history)
        if records:
            lines.append(Text("queue file (simmta cat)", style="bold"))
            lines.extend(fmt.inert(line) for line in records)
        self.show_lines(lines)
