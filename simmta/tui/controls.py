"""The app's actions on the MTA and on the replay timeline (a mixin of SimmtaApp).

Every action that talks to the MTA runs in a worker thread (``actions``) and
reports back with a notification; the model changes only when the resulting
events arrive, so the screen always shows what the MTA says happened.
In a replay, MTA actions explain that there is no MTA; timeline keys work.

Trust: the user's own actions; master checks the control socket's peer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App

from simmta.core import control, names
from simmta.core.errors import SimmtaError
from simmta.core.instance import Instance
from simmta.tui import actions
from simmta.tui.dialogs import Choose
from simmta.tui.model import Model

# key, action, label, shown in footer, help (also the command palette entries)
COMMANDS: tuple[tuple[str, str, str, bool, str], ...] = (
    ("s", "send_one", "Send", True, "send one message alice -> bob over SMTP"),
    ("S", "send_to", "Send to…", False, "send one message to a chosen local or remote user"),
    ("b", "burst", "Burst", False, "send a burst of messages"),
    ("l", "submit_local", "Local submit", False, "submit through sendmail (maildrop, pickup)"),
    ("k", "kill", "Kill", True, "kill a daemon with a chosen signal"),
    ("f", "fault", "Fault", False, "set a peer or queue fault"),
    ("c", "crash", "Crash point", False, "arm a one-shot crash point in a daemon"),
    ("h", "queue_op('hold')", "Hold", False, "hold the selected message"),
    ("r", "queue_op('release')", "Release", False, "release the selected message"),
    ("R", "queue_op('requeue')", "Requeue", False, "requeue the selected message"),
    ("D", "queue_op('delete')", "Delete", False, "delete the selected message"),
    ("F", "flush", "Flush", False, "deliver deferred mail now, release throttled services (postqueue -f)"),
    ("a", "lab", "Lab attempt", False, "try an attack from a daemon (with --lab)"),
    ("x", "compromise", "Compromise", False, "the selected box runs the lab's attacker script (with --lab)"),
    ("P", "pace", "Hold MTA", True, "presenter: the MTA holds each hand-off until G (acts on the MTA)"),
    ("G", "release_hop", "Let one go", False, "presenter: let one held hand-off go (acts on the MTA)"),
    ("full_stop", "step", "Step", True, "view: the followed message's next hop (replay: next event)"),
    ("comma", "step_back", "Back", True, "view: the previous hop (replay: previous event)"),
    ("plus", "speed(True)", "Faster", False, "replay: faster (view)"),
    ("minus", "speed(False)", "Slower", False, "replay: slower, down to x0.1 (view)"),
    ("n", "next_event", "Next event", False, "replay: jump to the followed message's next event"),
)


LAB_TITLE = "Lab attempt (needs an MTA started with --lab: simmta tui --lab)"


class ControlActions(App[None]):
    """Action handlers on the app's feed, model, instance and followed message."""

    feed: Any
    model: Model
    instance: Path | None
    followed: str | None
    records: dict[str, list[str]]
    watch_only: bool

    _said: tuple[str, str, str, float | None] | None = None  # the notice to show next

    def say(
        self, text: str, severity: str = "information", *, title: str = "", timeout: float | None = None
    ) -> None:
        """One notification at a time: a new one replaces the last instead of piling over the map
        (``timeout``: seconds shown, Textual's default when None). Several said in one turn of
        the loop (keys that arrive together, as tmux sends them): only the last is shown."""
        first = self._said is None
        self._said = (text, severity, title, timeout)
        if first:
            self.call_later(self._say_last)

    def _say_last(self) -> None:
        if self._said is None:
            return
        (text, severity, title, timeout), self._said = self._said, None
        self.clear_notifications()
        # Textual 8 removes a replaced Toast but leaves its holder (an empty box stays stacked
        # over the map): remove the holders too.
        for holder in self.screen.query("#textual-toastrack > *"):
            holder.remove()
        self.notify(text, title=title, severity=severity, timeout=timeout, markup=False)  # type: ignore[arg-type]

    def view_step(self, delta: int) -> None:
        raise NotImplementedError

    def refused(self, what: str) -> bool:
        """A viewer of ``simmta serve`` watches: it may not act on the MTA or write files."""
        if self.watch_only:
            self.say(f"viewer: you cannot {what} (watch only; the presenter drives)", severity="warning")
        return self.watch_only

    def action_pause(self) -> None:
        raise NotImplementedError

    def _replay_only(self) -> bool:
        if self.feed.live:
            self.say("that works on a replay; live, . and , step over the followed message's hops")
            return False
        return True

    def _needs_mta(self) -> Path | None:
        if self.refused("act on the MTA"):
            return None
        if not self.feed.live or self.instance is None:
            self.say("replay: there is no MTA to act on", severity="warning")
            return None
        return Instance(self.instance).control_socket

    @work(thread=True, exclusive=False)
    def _run(self, label: str, fn: Callable[..., str], *args: Any, **kw: Any) -> None:
        try:
            result = fn(*args, **kw)
        except SimmtaError as e:
            self.call_from_thread(self.say, f"{label}: {e}", "error")
        else:
            self.call_from_thread(self.say, result)

    def _control(self, op: str, **args: Any) -> None:
        if (sock := self._needs_mta()) is not None:
            self._run(op, actions.request, sock, op, **args)

    def _choose(self, title: str, choices: list[tuple[str, str]], then: Callable[[str], None]) -> None:
        """A dialog before an action on the MTA (not opened where no action could follow)."""
        if self._needs_mta() is None:
            return
        self.push_screen(Choose(title, choices), lambda v: then(v) if v else None)

    @work(thread=True, exclusive=True, group="cat")
    def read_queue_file(self, qid: str) -> None:
        """The queue file's records, read by ``simmta cat`` (it may need the owner's rights)."""
        lines = actions.cat(self.instance, qid) if self.instance else []
        self.call_from_thread(self._got_records, qid, lines)

    def _got_records(self, qid: str, lines: list[str]) -> None:
        self.records[qid] = lines
        while len(self.records) > 20:
            del self.records[next(iter(self.records))]
        self.refresh_views()

    def refresh_views(self) -> None:
        raise NotImplementedError

    # Mail -----------------------------------------------------------------
    def _send(self, rcpt: str, count: int = 1) -> None:
        if self._needs_mta() is None:
            return
        smtp = self.model.smtp
        host, port = smtp.get("host", "127.0.0.1"), smtp.get("port")
        if not isinstance(port, int):
            self.say("the MTA has not said where smtpd listens yet", severity="error")
            return
        self._run("send", actions.send_mail, str(host), port, rcpt, count)

    def action_send_one(self) -> None:
        self._send(actions.DEFAULT_RCPT)

    def _recipients(self) -> list[tuple[str, str]]:
        domain = str(self.model.config.get("mydomain", "simmta.test"))
        users = self.model.config.get("local_users") or {"alice": 0, "bob": 0}
        local = [(f"{u}@{domain}", f"{u}@{domain} (local)") for u in users]
        return [*local, (actions.REMOTE_RCPT, f"{actions.REMOTE_RCPT} (remote: the peer)")]

    def action_send_to(self) -> None:
        self._choose("Send one message to", self._recipients(), self._send)

    def action_burst(self) -> None:
        self._choose(
            "Burst of messages to bob",
            [(str(n), f"{n} messages") for n in (10, 100, 1000)],
            lambda n: self._send(actions.DEFAULT_RCPT, int(n)),
        )

    def action_submit_local(self) -> None:
        if self._needs_mta() is not None:
            self._run("sendmail", actions.submit_local, self.instance, actions.DEFAULT_RCPT)

    # Control --------------------------------------------------------------
    def action_kill(self) -> None:
        services = sorted({p.service for p in self.model.processes.values()} - {names.MASTER})
        self._choose(
            "Kill which daemon?",
            [(s, f"{s} ({len(self.model.processes_of(s))} process(es))") for s in services],
            lambda svc: self._choose(
                f"Signal for {svc}",
                [(sig, f"SIG{sig}") for sig in control.SIGNALS],
                lambda sig: self._control("kill", service=svc, signal=sig),
            ),
        )

    def action_flush(self) -> None:
        self._control("flush")

    def action_fault(self) -> None:
        choices = [(f"peer={v}", f"peer: {v}") for v in names.PEER_FAULTS]
        choices += [("queue=none", "queue: none"), ("queue=full", "queue: full (disk full)")]
        self._choose(
            "Set a fault",
            choices,
            lambda c: self._control("fault", target=c.split("=")[0], value=c.split("=")[1]),
        )

    def action_crash(self) -> None:
        choices = [(f"{s}:{p}", f"{s}: crash {p}") for s, pts in names.CRASH_POINTS.items() for p in pts]
        self._choose(
            "Arm a crash point (one shot)",
            choices,
            lambda c: self._control("crash", service=c.split(":")[0], point=c.split(":")[1]),
        )

    def action_lab(self) -> None:
        services = [s for s in self.model.services if s != names.PEER]
        choices = [(f"{a}:{s}", f"{s}: {a}") for a in control.LAB_ACTIONS for s in services]
        self._choose(
            LAB_TITLE,
            choices,
            lambda c: self._control("lab", action=c.split(":")[0], service=c.split(":")[1]),
        )

    def selected_box(self) -> str | None:
        """The node selected on the map (the app knows its map)."""
        return None

    def action_compromise(self) -> None:
        """The compromise lab on the daemon whose box is selected on the map."""
        if (sock := self._needs_mta()) is None:
            return
        selected = self.selected_box()
        if selected is None or selected not in self.model.services or selected == names.PEER:
            self.say("select a daemon's box on the map first (arrows), then x", severity="warning")
            return
        self._run("compromise", actions.compromise, sock, selected)

    def action_queue_op(self, action: str) -> None:
        if not self.followed:
            self.say("select a message first (queue view, or enter on the map)")
            return
        self._control("queue", action=action, qid=self.followed)

    def action_pace(self) -> None:
        """The presenter's hold: the MTA waits at each hand-off (only while someone watches)."""
        if not self.feed.live:
            self.action_pause()
            return
        holding = self.model.pace.get("mode") == "step"
        self._control("pace", mode="live" if holding else "step", delay_ms=500)

    def action_release_hop(self) -> None:
        self._control("step")

    # Timeline (the view: never holds mail) ------------------------------------------
    def action_step(self) -> None:
        if self.feed.live:
            self.view_step(1)
        else:
            self.feed.step(1)

    def action_step_back(self) -> None:
        if self.feed.live:
            self.view_step(-1)
        else:
            self.feed.step(-1)

    def action_speed(self, up: bool) -> None:
        if self._replay_only():
            self.say(f"replay speed x{self.feed.faster(up):g}")

    def action_next_event(self) -> None:
        if self._replay_only():
            if not self.followed:
                self.say("follow a message first (enter in the queue view)")
                return
            self.feed.next_of(self.followed)
