"""The status line: where the MTA listens, privilege mode, pace, faults, feed state.

Always visible above the tabs: the teacher's first question ("is this real
root separation or simulated?") is answered on the first screen.
Trust: values from the snapshot, shown as Text.
"""

from __future__ import annotations

from rich.text import Text

from simmta.tui.feed import Feed
from simmta.tui.model import Model, text
from simmta.tui.widgets.quiet import QuietStatic


class StatusLine(QuietStatic):
    def show(self, model: Model, feed: Feed, followed: str | None, view: str = "live") -> None:
        """``view``: the map's own pace (a view control, unlike the MTA's hold)."""
        line = Text()
        line.append(feed.status() + "  ", style="bold reverse" if feed.problem else "bold")

        def part(label: str, value: str, style: str = "bold") -> None:
            line.append(f"{label} ", style="dim")
            line.append(f"{value}  ", style=style)

        if followed:
            part("following", followed, "bold reverse")
        smtp = model.smtp
        if smtp:
            part("smtp", f"{text(smtp.get('host'))}:{text(smtp.get('port'))}")
        if model.peer:
            part("peer", f":{text(model.peer.get('port'))}")
        mode = model.privilege_mode.upper()
        # Reverse video where a boundary is only simulated (partial: the uid one).
        part("privilege", mode, "bold reverse" if mode in ("SIMULATED", "PARTIAL") else "bold")
        pace = text(model.pace.get("mode", "live"))
        if pace == "step":  # the presenter's hold on the MTA itself, never the default: say so loudly
            held = f", {len(model.waiting)} waiting" if model.waiting else ""
            part("MTA", f"HOLDS EACH HAND-OFF{held} (G lets one go, P lifts)", "bold reverse")
        elif pace != "live":
            part("MTA pace", pace, "bold reverse")
        part("map", view)
        faults = [f"{k}={v}" for k, v in model.faults.items() if v not in ("none", "")]
        if faults:
            part("fault", " ".join(faults), "bold reverse")
        if model.stopping:
            part("MTA", model.stopping, "bold reverse")
        self.show_lines([line])
