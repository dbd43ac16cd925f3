"""Under the map: what the selected box holds (processes and privilege steps, or messages).

The diagram itself is widgets/diagram.py. Trust: model text, shown as Text.
"""

from __future__ import annotations

from rich.text import Text

from simmta.tui import fmt
from simmta.tui.model import Model
from simmta.tui.widgets.quiet import QuietStatic


class NodeDetail(QuietStatic):
    """What the selected map node holds: processes and privilege steps, or messages."""

    def show(self, model: Model, node: str | None, now: float) -> None:
        lines: list[Text] = []
        if node is None:
            lines = [Text("↑/↓ select a box · s sends a message · . , step its hops · ? help", style="dim")]
            for result in list(model.results)[-3:]:
                lines.append(Text(f"{result.service}: {result.what} → {result.outcome}", style="bold"))
            self.show_lines(lines)
            return
        summary = model.services.get(node, {}).get("summary")
        if summary:
            lines.append(Text(f"{node}: {fmt.text(summary)}", style="bold"))
        for p in model.processes_of(node):
            lines.append(
                Text(
                    f"pid {p.pid} {p.state:<8} uid/euid:gid {fmt.uid_text(p)} "
                    f"root {p.root} {p.mode} served {p.served}"
                )
            )
        steps = model.steps.get(node, ())
        if steps:
            line = Text("drop: ", style="dim")
            for step, target, outcome in steps:
                line.append(f"{step} {target} → ")
                line.append(outcome, style="bold" if outcome != "done" else "")
                line.append(" · ", style="dim")
            lines.append(line)
        for result in model.results:
            if result.service == node:
                lines.append(Text(f"{result.what} → {result.outcome}", style="bold"))
        for m in model.in_queue(node):
            line = Text(f"{m.qid} ", style="bold")
            line.append(f"{m.sender} → {', '.join(m.recipients)} {m.reason}")
            lines.append(line)
        if len(lines) <= 1:
            lines.append(Text(f"{node}: nothing here now", style="dim"))
        self.show_lines(lines[:8])
