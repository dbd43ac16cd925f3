"""The simmta TUI application: tabs over one model, fed by one event feed.

The app is handed a feed (live bus or recording) and a clock; a timer pumps
the feed into the model in batches and refreshes only the visible view, so a
burst of events costs one render per tick. Actions on the MTA live in
``controls.ControlActions``; views in ``widgets/``; styles in ``app.tcss``.

Trust: shows untrusted event data, always as Text; acts on the MTA only
through the control socket and SMTP, like any other client.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import networkx as nx
from textual import events
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Header, Input, TabbedContent, TabPane

from simmta.core.errors import SimmtaError
from simmta.core.instance import Instance
from simmta.tui import playback
from simmta.tui.controls import COMMANDS, ControlActions
from simmta.tui.dialogs import Help
from simmta.tui.feed import Feed
from simmta.tui.model import Model
from simmta.tui.partial import PartialUpdates
from simmta.tui.themes import ALL, DEFAULT_VARIABLES, THEMES
from simmta.tui.widgets.detail import MessageDetail
from simmta.tui.widgets.diagram import FPS, Diagram
from simmta.tui.widgets.eventlog import EventLog
from simmta.tui.widgets.figures import Figures
from simmta.tui.widgets.hoplist import HopList, Narration
from simmta.tui.widgets.mailboxes import MailboxesView
from simmta.tui.widgets.mapview import NodeDetail
from simmta.tui.widgets.messages import EventChosen, HopChosen, MailChosen, MessageChosen, NodeSelected
from simmta.tui.widgets.quiet import QuietFooter
from simmta.tui.widgets.sessions import SessionsView
from simmta.tui.widgets.status import StatusLine
from simmta.tui.widgets.tables import ProcessTable, QueueTable

TICK = 0.1  # seconds between batches
CATCH_UP = 0.005  # seconds between slices of a backlog (input is handled in between)
HOPS_FROM_WIDTH = 120  # the hop list is beside the map from this terminal width on
IDLE_REFRESH = 5  # with no events, redraw every this many ticks
VIEWS = (
    ("map", "Map", "f1", "m"),
    ("procs", "Processes", "f2", "p"),
    ("queue", "Queue", "f3", "u"),
    ("sessions", "SMTP sessions", "f4", "t"),
    ("events", "Events", "f5", "e"),
    ("figures", "Figures", "f6", "g"),
    ("mail", "Mailboxes", "f7", "i"),
)


def default_screenshot_dir() -> Path:
    """~/Pictures/simmta (or $XDG_PICTURES_DIR/simmta) if there is such a folder, else the
    user's state directory: never the current directory, which may be anyone's."""
    pictures = Path(os.environ.get("XDG_PICTURES_DIR") or Path.home() / "Pictures")
    if pictures.is_dir():
        return pictures / "simmta"
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "simmta" / "screenshots"


class SimmtaApp(PartialUpdates, ControlActions):
    CSS_PATH = "app.tcss"
    TITLE = "simmta"
    BINDINGS = [
        *(
            Binding(f"{fkey},{letter}", f"view('{vid}')", label, show=fkey in ("f1", "f5"))
            for vid, label, fkey, letter in VIEWS
        ),
        Binding("question_mark", "help", "Help"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("q", "quit", "Quit", show=False),
        Binding("slash", "filter", "Filter", show=False),
        Binding("space", "pause", "Pause", show=False),
        Binding("T", "next_theme", "Theme", show=False),
        Binding("v", "toggle_hops", "Hop list", show=False),
        Binding("left_square_bracket", "view_pace(False)", "Slower map", show=False),
        Binding("right_square_bracket", "view_pace(True)", "Faster map", show=False),
        Binding("w,f12", "snap", "Screenshot", show=False),
        *(Binding(key, action, label, show=show) for key, action, label, show, _ in COMMANDS),
    ]

    def __init__(
        self,
        feed: Feed,
        *,
        instance: Path | None = None,
        clock: Callable[[], float] = time.time,
        theme: str = "dark",
        screenshot_dir: Path | None = None,
        tick: float = TICK,
        watch_only: bool = False,
    ) -> None:
        """``watch_only``: a viewer of ``simmta serve``; every action that would change the
        MTA or write a file is refused (see ``ControlActions.refused``)."""
        super().__init__()
        self.watch_only = watch_only
        self.feed, self.instance, self.clock, self.tick = feed, instance, clock, tick
        self.model = Model()
        self.hops_chosen = False  # the user toggled the hop list (v): the width no longer decides
        self.followed: str | None = None
        self.screenshot_dir = screenshot_dir or default_screenshot_dir()
        for t in ALL:
            self.register_theme(t)
        self.theme = THEMES.get(theme, theme)
        self.pace_index = 0  # the map's own pace (playback.PACES): never holds mail
        self.pumped = 0  # events applied, for tests and the burst figures
        self.privilege_told = ""  # the privilege note last shown (once per MTA)
        self.ticks = 0
        self.records: dict[str, list[str]] = {}  # queue ID -> its queue file, as simmta cat shows it
        self.max_batch_seconds = 0.0
        self.catching_up: Timer | None = None  # the next slice of a backlog
        self.replaying: Timer | None = None  # a letter's path, replayed hop by hop on the map

    # Layout ----------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield StatusLine(id="status")
        with TabbedContent(id="tabs"):
            with TabPane("Map", id="map"), Horizontal(id="map-row"):
                with Vertical(id="map-col"):
                    yield Diagram(self.model, self.map_clock, self.initial_graph(), id="archmap")
                    yield Narration(id="narration")
                    yield NodeDetail(id="node-detail")
                yield HopList(self.model.journeys, id="hop-list")
            with TabPane("Processes", id="procs"):
                yield ProcessTable(self.model, self.now, id="proc-table")
            with TabPane("Queue", id="queue"), Horizontal():
                yield QueueTable(self.model, self.now, id="queue-table")
                with VerticalScroll(id="detail-box"):
                    yield MessageDetail(id="message-detail")
            with TabPane("SMTP sessions", id="sessions"):
                yield SessionsView(self.model, self.now, id="sessions-view")
            with TabPane("Events", id="events"):
                yield EventLog(self.model, id="event-log")
            with TabPane("Figures", id="figures"):
                yield Figures(self.model, id="figures-view")
            with TabPane("Mailboxes", id="mail"):
                yield MailboxesView(self.instance, id="mailboxes-view")
        yield Input(placeholder="filter (enter applies, escape cancels)", id="filter")
        yield QuietFooter()

    @property
    def base(self) -> Screen:
        """The main screen (queries must not land on a dialog pushed above it)."""
        return self.screen_stack[0] if self.screen_stack else self.screen

    def on_mount(self) -> None:
        self.sub_title = "live" if self.feed.live else "replay"
        if self.watch_only:
            self.sub_title += " (viewer: watch only)"
        self.base.query_one("#filter", Input).display = False
        self.place_hop_list(self.size.width)
        self.pump()
        self.base.query_one(Diagram).focus()
        self.set_interval(self.tick, self.pump)
        self.set_interval(1 / FPS, self.animate_map)
        self.call_after_refresh(self.freeze_startup)

    def freeze_startup(self) -> None:
        """What it took to start (Textual's widgets and styles, the map's layout, some 100,000
        objects) lives as long as the app: out of the collector's sight from now on. A full
        collection during a burst of events had to scan all of it: 160-190 ms each, the
        worst key latencies (``simmta bench-tui``). Undone when the app stops
        (``on_unmount``), so that its widgets, which hold cycles, can be collected."""
        gc.collect()
        gc.freeze()

    def initial_graph(self) -> nx.DiGraph | None:
        """The instance's services graph, drawn until the MTA's snapshot arrives."""
        if self.instance is None:
            return None
        try:
            return Instance(self.instance).services().graph()
        except SimmtaError:
            return None

    def now(self) -> float:
        """The time countdowns are measured against: wall clock live, recording's in replay."""
        return self.clock() if self.feed.live else self.model.now

    def map_clock(self) -> float:
        """The clock tokens move by: wall clock live, the recording's virtual clock in replay."""
        return self.clock() if self.feed.live else float(getattr(self.feed, "virtual", self.model.now))

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(DEFAULT_VARIABLES)

    def animate_map(self) -> None:
        """20 times a second while tokens move: redraw the rows they touch."""
        if not self.screen_stack:  # shutting down
            return
        with contextlib.suppress(NoMatches):
            if self.base.query_one(TabbedContent).active == "map":
                diagram = self.base.query_one(Diagram)
                tokens = diagram.tokens()
                if tokens or diagram.frames == 0:
                    diagram.tick(tokens)
                    self.show_narration()

    # The batch loop ----------------------------------------------------------
    def pump(self) -> None:
        if self.feed.fatal:  # nothing to show: say why once, outside the TUI
            self.exit(return_code=1)
            return
        applied = self.pump_slice()
        if self.feed.live:  # the sparklines move on while nothing happens
            self.model.advance_to(self.clock())
        self.ticks += 1
        if applied or self.ticks % IDLE_REFRESH == 0:  # countdowns and lingering tokens
            self.refresh_views()
        note = self.model.privilege_note
        if note and note != self.privilege_told and self.model.privilege_mode != "real":
            self.privilege_told = note  # once: what is simulated, and the command that would help
            self.tell_privilege(note)

    def tell_privilege(self, note: str) -> None:
        """The privilege note (once per MTA): a notification that, like every other, replaces
        the last one. A host with a place of its own for it (the lesson panel) overrides this."""
        self.say(note, title=f"privilege {self.model.privilege_mode}", timeout=20)

    def pump_slice(self) -> int:
        """Apply events for at most feed.SLICE seconds; if more wait, pump again after
        CATCH_UP seconds (keys and redraws go first), views refreshed only on the tick."""
        started = time.perf_counter()
        applied = self.feed.pump(self.model, self.clock())
        self.pumped += applied
        self.max_batch_seconds = max(self.max_batch_seconds, time.perf_counter() - started)
        if self.feed.backlog and self.catching_up is None:
            self.catching_up = self.set_timer(CATCH_UP, self.catch_up)
        return applied

    def catch_up(self) -> None:
        self.catching_up = None
        if self.screen_stack:
            self.pump_slice()

    def refresh_views(self) -> None:
        if not self.screen_stack:  # shutting down
            return
        with contextlib.suppress(NoMatches):  # shutting down: the widgets are gone
            self._refresh_views()

    def _refresh_views(self) -> None:
        view = playback.PACES[self.pace_index][0]
        self.base.query_one(StatusLine).show(self.model, self.feed, self.followed, view)
        active = self.base.query_one(TabbedContent).active
        if active == "map":
            diagram = self.base.query_one(Diagram)
            diagram.settled = not self.feed.live and not getattr(self.feed, "playing", True)
            if self.followed is None:  # nobody chosen: follow the newest message that moved
                diagram.followed = next((i for i, _ in self.model.journeys.recent()), None)
            diagram.tick()
            self.show_narration()
            hop_list = self.base.query_one(HopList)
            if hop_list.display:
                hop_list.update_from(self.model.journeys, diagram.followed)
            self.base.query_one(NodeDetail).show(self.model, diagram.selected, self.now())
        elif active == "procs":
            self.base.query_one(ProcessTable).update_from_model()
        elif active == "queue":
            self.base.query_one(QueueTable).update_from_model()
            self.base.query_one(MessageDetail).show(
                self.model, self.followed, self.now(), self.records.get(self.followed or "")
            )
        elif active == "sessions":
            self.base.query_one(SessionsView).update_from_model()
        elif active == "events":
            self.base.query_one(EventLog).refresh()
        elif active == "figures":
            self.base.query_one(Figures).update_from_model()
        elif active == "mail":
            self.base.query_one(MailboxesView).update_from_instance(self.model.counts["delivered"])

    # Views and selection -----------------------------------------------------
    def action_view(self, view: str) -> None:
        self.base.query_one(TabbedContent).active = view
        self.refresh_views()
        focus = {
            "map": "#archmap",
            "procs": "#proc-table",
            "queue": "#queue-table",
            "sessions": "#session-table",
            "mail": "#mail-table",
        }.get(view)
        self.set_focus(self.base.query_one(focus) if focus else None)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_views()

    def selected_box(self) -> str | None:
        with contextlib.suppress(NoMatches):
            return self.base.query_one(Diagram).selected
        return None

    def on_node_selected(self, event: NodeSelected) -> None:
        self.refresh_views()

    def on_event_chosen(self, chosen: EventChosen) -> None:
        event = chosen.event
        if event.get("qid") and event["qid"] in self.model.messages:
            self.follow(event["qid"])
            self.action_view("queue")
        elif event.get("sid"):
            self.action_view("sessions")
            self.base.query_one(SessionsView).select(f"{event['service']}/{event['sid']}")
        else:
            table = self.base.query_one(ProcessTable)
            table.filter = str(event["data"].get("child_pid") or event["pid"])
            self.action_view("procs")

    def on_message_chosen(self, event: MessageChosen) -> None:
        self.follow(event.qid)

    def on_mail_chosen(self, chosen: MailChosen) -> None:
        """A delivered letter: replay its message's path on the map, one hop per map pace."""
        hops = self.model.journeys.of(chosen.qid)
        if not hops:
            self.base.query_one(MailboxesView).tell(
                f"{chosen.qid}: its path is not in the events this TUI saw (delivered before it "
                "attached, or long ago): no path to replay"
                if chosen.qid
                else "this letter has no simmta Received: line: no path to replay"
            )
            return
        self.follow(chosen.qid)
        self.action_view("map")
        self.base.query_one(Diagram).pinned = 0
        self.stop_replay()
        seconds = playback.PACES[self.pace_index][1]
        self.replaying = self.set_interval(seconds, self.replay_next)
        self.say(f"replaying the path of {chosen.qid} (delivered to {chosen.mailbox}): {len(hops)} hops")
        self.refresh_views()

    def replay_next(self) -> None:
        diagram = self.base.query_one(Diagram)
        hops = self.model.journeys.of(diagram.followed)
        if diagram.pinned is None or diagram.pinned >= len(hops) - 1:
            self.stop_replay()
            return
        diagram.pinned += 1
        self.refresh_views()

    def stop_replay(self) -> None:
        if self.replaying is not None:
            self.replaying.stop()
            self.replaying = None

    def follow(self, qid: str | None) -> None:
        if not self.screen_stack:  # a late message while the app shuts down
            return
        self.followed = qid
        diagram = self.base.query_one(Diagram)
        if diagram.followed != qid:  # a new message: its hops play from where they are
            diagram.followed, diagram.pinned = qid, None
            self.stop_replay()
        if qid and self.feed.live and self.instance is not None:
            self.read_queue_file(qid)
        table = self.base.query_one(QueueTable)
        table.update_from_model()
        table.show_key(qid)
        self.refresh_views()

    def action_help(self) -> None:
        self.push_screen(Help())

    def action_filter(self) -> None:
        box = self.base.query_one("#filter", Input)
        box.display = True
        target = self.filter_target()
        box.value = target.filter if target else ""
        box.focus()

    def filter_target(self) -> EventLog | ProcessTable | QueueTable | None:
        active = self.base.query_one(TabbedContent).active
        views: dict[str, EventLog | ProcessTable | QueueTable] = {
            "events": self.base.query_one(EventLog),
            "procs": self.base.query_one(ProcessTable),
            "queue": self.base.query_one(QueueTable),
        }
        return views.get(active)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        target = self.filter_target()
        if target is not None:
            target.filter = event.value.strip()
        event.input.display = False
        self.refresh_views()
        self.set_focus(None)

    def on_key(self, event: object) -> None:
        box = self.base.query_one("#filter", Input)
        if box.display and getattr(event, "key", "") == "escape":
            box.display = False

    def action_pause(self) -> None:
        if self.feed.live:
            log = self.base.query_one(EventLog)
            log.set_paused(not log.paused)
        else:
            self.feed.toggle()
        self.refresh_views()

    def action_next_theme(self) -> None:
        names = list(THEMES.values())
        self.theme = names[(names.index(self.theme) + 1) % len(names)] if self.theme in names else names[0]

    # The map's own controls (they act on the view, never on the MTA) ---------------
    def show_narration(self) -> None:
        diagram = self.base.query_one(Diagram)
        hops = self.model.journeys.of(diagram.followed)
        index, _ = diagram.followed_hop()
        how = "chosen hop" if diagram.pinned is not None else f"map pace {playback.PACES[self.pace_index][0]}"
        self.base.query_one(Narration).show(diagram.followed, hops, index, how, self.model.who)

    def view_step(self, delta: int) -> None:
        """Live: show the followed message's next or previous hop (the MTA is not touched)."""
        diagram = self.base.query_one(Diagram)
        hops = self.model.journeys.of(diagram.followed)
        if not hops:
            self.say("no message to step through yet: s sends one")
            return
        self.stop_replay()
        current = diagram.pinned if diagram.pinned is not None else diagram.followed_hop()[0]
        diagram.pinned = max(0, min(len(hops) - 1, current + delta))
        self.refresh_views()

    def on_hop_chosen(self, chosen: HopChosen) -> None:
        self.stop_replay()
        self.follow(chosen.ident)
        self.base.query_one(Diagram).pinned = chosen.index
        self.refresh_views()

    def place_hop_list(self, width: int) -> None:
        """Beside the map from HOPS_FROM_WIDTH columns on, as the width changes, until ``v``
        says otherwise (a window shrunk to 80 columns gives the map its width back)."""
        hop_list = self.base.query_one(HopList)
        if not self.hops_chosen:
            hop_list.display = width >= HOPS_FROM_WIDTH
        hop_list.set_class(width >= 160, "wide")

    def on_resize(self, event: events.Resize) -> None:
        if self.screen_stack:
            self.place_hop_list(event.size.width)

    def action_toggle_hops(self) -> None:
        hop_list = self.base.query_one(HopList)
        hop_list.display = not hop_list.display
        self.hops_chosen = True
        self.refresh_views()

    def action_view_pace(self, faster: bool) -> None:
        step = -1 if faster else 1
        self.pace_index = max(0, min(len(playback.PACES) - 1, self.pace_index + step))
        label, seconds = playback.PACES[self.pace_index]
        self.base.query_one(Diagram).hop_seconds = seconds
        self.say(f"map pace: {label} (the view only; the MTA runs at its own speed)")
        self.refresh_views()

    def action_snap(self) -> None:
        if self.refused("save a screenshot"):
            return
        # (a viewer of simmta serve never gets here, nor sees the palette entry below)
        self.screenshot_dir.mkdir(parents=True, exist_ok=True)
        path = self.save_screenshot(path=str(self.screenshot_dir))
        self.say(f"screenshot saved: {path}")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for command in super().get_system_commands(screen):
            # Textual's own Screenshot writes to the current directory and duplicates ours (w).
            if "screenshot" not in command.title.lower():
                yield command
        for vid, label, fkey, _ in VIEWS:
            yield SystemCommand(
                f"View: {label}",
                f"show the {label.lower()} ({fkey.upper()})",
                lambda v=vid: self.action_view(v),
            )
        yield SystemCommand("Help", "keys and the map legend", self.action_help)
        yield SystemCommand(
            "Pause / play", "replay: play/pause; live: freeze the event log", self.action_pause
        )
        if not self.watch_only:
            yield SystemCommand("Screenshot", "save an SVG of the screen", self.action_snap)
        yield SystemCommand("Next theme", "dark, light, projector", self.action_next_theme)
        for _, action, label, _, help_text in COMMANDS if not self.watch_only else ():
            yield SystemCommand(label, help_text, lambda a=action: self.run_action(a))

    def on_unmount(self) -> None:
        self.feed.stop()
        gc.unfreeze()
