"""Formatting helpers shared by the views: events, durations, privileges as Text.

Everything returns ``rich.text.Text`` built from ``safe_text`` strings, never
a markup string: network-derived text stays inert wherever it is shown.
Trust: input is untrusted event data; output is display-only.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text

from simmta.core.config import duration
from simmta.tui.model import Message, Process, text

__all__ = ["clock", "duration", "event_line", "inert", "message_card", "text", "uid_text"]

KIND_STYLE = {
    "smtp": "cyan",
    "queue": "yellow",
    "delivery": "green",
    "process": "magenta",
    "privilege": "bright_magenta",
    "ipc": "blue",
    "fault": "red",
    "pace": "bright_blue",
    "bus": "red",
    "lab": "bright_red",
    "master": "bold",
}


def inert(value: Any, style: str = "") -> Text:
    """Untrusted text as a Text object: control characters shown, no markup."""
    return Text(text(value, 512), style=style)


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def summary(event: dict[str, Any]) -> str:
    """The payload of an event in one short line (already safe)."""
    data = event.get("data") or {}
    if event["kind"] == "smtp" and "line" in data:
        arrow = "C:" if event["type"] == "command" else "S:"
        lines = str(data["line"]).split("\n")  # a multi-line reply is one event: show its lines, not \n
        return f"{arrow} " + " | ".join(text(line, 160) for line in lines[:8])
    if isinstance(data.get("next_retry"), int | float):
        data = {**data, "next_retry": "in " + duration(float(data["next_retry"]) - float(event["ts"]))}
    parts = [
        f"{k}={text(v, 60)}"
        for k, v in list(data.items())[:6]
        if k not in ("services", "processes", "queues", "config")
    ]
    return " ".join(parts)


def event_line(event: dict[str, Any]) -> Text:
    line = Text(clock(float(event["ts"])) + " ", style="dim", no_wrap=True, overflow="ellipsis")
    line.append(f"{text(event['service'], 10):<9}", style="bold")
    line.append(
        f"{event['kind']}/{event['type']:<10}"[:20].ljust(20),
        style=KIND_STYLE.get(event["kind"], ""),
    )
    if event.get("qid"):
        line.append(f"{text(event['qid'], 16)} ", style="reverse")
    line.append(summary(event))
    return line


def text_list(value: Any) -> str:
    return text(value) if isinstance(value, list) else ""


def uid_text(proc: Process) -> str:
    uid, gid = proc.privilege.get("uid"), proc.privilege.get("gid")
    if not isinstance(uid, list) or not isinstance(gid, list):
        return "?"

    def pair(ids: list[Any]) -> str:  # real/effective, once when they agree
        return str(ids[0]) if len(ids) < 2 or ids[0] == ids[1] else f"{ids[0]}/{ids[1]}"

    out = pair(uid[:2]) + ":" + pair(gid[:2])
    host = proc.privilege.get("host_uid")
    if isinstance(host, list) and len(host) > 1 and host[1] != uid[1]:
        out += f" host {host[1]}"  # rootless: the uid the host's kernel sees
    return out


def check_text(proc: Process) -> str:
    """A real mismatch, loudly; else what the mode only simulates, plainly (as ``simmta ps``)."""
    mismatch = proc.privilege.get("mismatch")
    if isinstance(mismatch, list) and mismatch:
        return "MISMATCH: " + text_list(mismatch)
    return text(proc.privilege.get("simulated") or "")


def message_card(msg: Message, now: float) -> list[Text]:
    """Envelope, headers and outcomes of one message (the message detail)."""
    lines = [Text(f"Queue ID {msg.qid}", style="bold")]
    rows = [
        ("where", msg.location),
        ("from", msg.sender),
        ("to", ", ".join(msg.recipients)),
        ("size", f"{msg.size} bytes" if msg.size else ""),
        ("subject", msg.subject),
        ("arrival", clock(msg.arrival) if msg.arrival else ""),
    ]
    if msg.next_retry is not None:
        rows.append(("retry in", duration(float(msg.next_retry) - now)))
    if msg.reason:
        rows.append(("reason", msg.reason))
    for key, value in rows:
        if value:
            line = Text(f"{key:>9}: ", style="dim")
            line.append(value)  # already safe_text'ed by the model
            lines.append(line)
    for header in msg.headers:
        lines.append(Text("   header: ", style="dim") + Text(header))
    for rcpt, outcome in msg.outcomes.items():
        lines.append(Text(f"{outcome:>9}: ", style="dim") + Text(rcpt))
    return lines
