"""Messages the views post up to the app ("attributes down, messages up")."""

from __future__ import annotations

from typing import Any

from textual.message import Message


class NodeSelected(Message):
    """A node of the map was selected."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node


class MessageChosen(Message):
    """A queued message was chosen (to follow it and show its detail)."""

    def __init__(self, qid: str) -> None:
        super().__init__()
        self.qid = qid


class EventChosen(Message):
    """An event was clicked in the log (to go to its message, session or process)."""

    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__()
        self.event = event


class HopChosen(Message):
    """A hop was chosen in the hop list (follow its message, show that hop)."""

    def __init__(self, ident: str, index: int) -> None:
        super().__init__()
        self.ident = ident
        self.index = index


class MailChosen(Message):
    """A delivered letter was chosen in the Mailboxes view (replay its message's path)."""

    def __init__(self, qid: str, mailbox: str) -> None:
        super().__init__()
        self.qid = qid
        self.mailbox = mailbox
