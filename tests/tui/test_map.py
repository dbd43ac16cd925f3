"""The map as a class uses it: hop list, stepping over hops, results on boxes, notices.

Pilot tests on replays of the scripted story (clock frozen) and on the fake
master's live feed. Trust: test code.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from tuihelp import STORY, replay_app, screen_text, sync, until

from simmta.core import services
from simmta.tui import mapfacts, maplayout, mappaint, regions
from simmta.tui.app import SimmtaApp
from simmta.tui.journey import Hop
from simmta.tui.model import Model
from simmta.tui.playback import PACES, shown_hop
from simmta.tui.widgets.diagram import Diagram
from simmta.tui.widgets.hoplist import HopList


def with_events(tmp_path: Path, *extra: dict[str, Any]) -> Path:
    """The story with events appended (same envelope as its last event, later)."""
    events = [json.loads(line) for line in STORY.read_text().splitlines()]
    last = events[-1]
    for i, e in enumerate(extra, 1):
        later = {"seq": last["seq"] + i, "ts": last["ts"] + i / 10, "qid": None, "sid": None}
        events.append({**last, **later, **e})
    path = tmp_path / "story-plus.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


@sync
async def test_hop_list_row_follows_its_message_and_shows_that_hop() -> None:
    app = replay_app()
    async with app.run_test(size=(120, 40)) as pilot:
        hop_list = app.query_one(HopList)
        await until(pilot, lambda: hop_list.rows, what="the hop list")
        row = next(i for i, (ident, index, _) in enumerate(hop_list.rows) if ident == "5D6E7F" and index == 1)
        hop_list.focus()
        hop_list.highlighted = row
        await pilot.press("enter")
        diagram = app.query_one(Diagram)
        await until(pilot, lambda: diagram.pinned == 1, what="the chosen hop")
        assert diagram.followed == app.followed == "5D6E7F"
        sentence = app.model.journeys.of("5D6E7F")[1].told(app.model.who)
        await until(pilot, lambda: "5D6E7F hop 2/" in screen_text(app), what="the narration")
        assert sentence.split(" (")[0] in screen_text(app)


@sync
async def test_step_back_and_forward_over_the_followed_message_live(live_app: SimmtaApp) -> None:
    async with live_app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: len(live_app.model.journeys.of("5D6E7F")) > 3, what="the story")
        live_app.follow("5D6E7F")
        await pilot.pause()  # the queue table answers with the row it now shows
        diagram = live_app.query_one(Diagram)
        hops = live_app.model.journeys.of("5D6E7F")
        await pilot.press("comma")
        first = diagram.pinned
        assert first is not None and first < len(hops)
        await pilot.press("comma", "comma")
        assert diagram.pinned == max(0, first - 2)
        await until(pilot, lambda: f"hop {diagram.pinned + 1}/{len(hops)}" in screen_text(live_app))
        await pilot.press("full_stop")
        assert diagram.pinned == max(0, first - 2) + 1
        assert hops[diagram.pinned].told(live_app.model.who).split(" (")[0] in screen_text(live_app)


@sync
async def test_results_show_on_the_box_they_hit(tmp_path: Path) -> None:
    lab = {
        "service": "smtpd",
        "kind": "lab",
        "type": "attempt",
        "data": {
            "action": "read-secret",
            "target": "/etc/shadow",
            "outcome": "refused (ENOENT)",
            "detail": "not there: outside the chroot jail (or missing)",
        },
    }
    kill = {
        "service": "master",
        "kind": "fault",
        "type": "set",
        "data": {"fault": "kill", "value": "SIGKILL to qmgr[1002]", "child_service": "qmgr", "child_pid": 1},
    }
    app = replay_app(recording=with_events(tmp_path, lab, kill))
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        lay = app.query_one(Diagram).ensure_layout()
        lines = screen_text(app).splitlines()
        top = app.query_one(Diagram).region.y

        def box_text(node: str) -> str:
            b = lay.boxes[node]
            return "\n".join(lines[top + y][b.x : b.x1 + 1] for y in range(b.y, b.y1 + 1))

        assert "read-secret→ENOENT" in box_text("smtpd")
        assert "kill→SIGKILL" in box_text("qmgr")
        text = screen_text(app)
        assert "smtpd: read-secret → ENOENT (outside the jail)" in text  # the results pane, plain words
        assert "'" not in text.split("read-secret")[1].splitlines()[0]  # no Python repr


@sync
async def test_box_facts_are_painted_again_only_when_an_event_is_folded(monkeypatch: Any) -> None:
    from simmta.tui.widgets import diagram as diagram_module

    computed: list[str] = []
    real = diagram_module.facts
    monkeypatch.setattr(diagram_module, "facts", lambda *a: computed.append(a[2]) or real(*a))
    app = replay_app()
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        diagram = app.query_one(Diagram)
        frozen = diagram.clock()
        diagram.clock = lambda: frozen  # no countdown's second passes between the ticks
        diagram.tick()
        computed.clear()
        diagram.tick()
        diagram.tick()
        assert computed == []  # nothing folded since: the boxes' layer is reused
        last = app.model.log[-1]
        attempt = {"outcome": "refused (ENOENT)", "action": "read-secret", "target": "/etc/shadow"}
        app.model.apply(
            {**last, "seq": last["seq"] + 1, "service": "smtpd", "kind": "lab", "type": "attempt",
             "qid": None, "sid": None, "data": {**attempt, "detail": "outside the chroot jail"}}
        )  # fmt: skip
        diagram.tick()
        assert "smtpd" in computed
        await pilot.pause()
        box = diagram.ensure_layout().boxes["smtpd"]
        lines = screen_text(app).splitlines()
        top = diagram.region.y
        shown = "\n".join(lines[top + y][box.x : box.x1 + 1] for y in range(box.y, box.y1 + 1))
        assert "read-secret→ENOENT" in shown


@sync
async def test_notices_replace_each_other() -> None:
    app = replay_app()
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(10):
            await pilot.press("minus")
        await pilot.pause()
        assert app.feed.speed == 0.1
        assert len(app._notifications) == 1
        assert "x0.1" in screen_text(app)


def test_playback_plays_hops_one_after_another() -> None:
    """A journey the MTA made in 5 ms is shown hop by hop at the map's pace, then arrives."""
    hops = [Hop(100.0 + i * 0.001, i, f"n{i}", f"n{i + 1}", {}) for i in range(5)]
    pace = PACES[0][1]
    assert shown_hop(hops, pace, 100.0)[0] == 0
    assert shown_hop(hops, pace, 100.0 + pace * 2.5)[0] == 2
    index, progress = shown_hop(hops, pace, 100.0 + pace * 5)
    assert index == 4 and progress >= 1.0
    slow = PACES[-1][1]
    assert slow == 3.0 and shown_hop(hops, slow, 100.0 + pace * 2.5)[0] == 0


@pytest.mark.parametrize("profile", ["sendmail", "qmail"])
def test_a_design_without_chroot_draws_no_jail(profile: str) -> None:
    """The map draws what the profile's table says: no jail where nothing is chrooted, the SMTP
    server in the root region where it runs as root, boxes titled with the design's programs."""
    table = services.load(profile=profile)
    graph = regions.graph_from_services(table.as_list())
    lay = maplayout.layout(graph, 160, 48)
    assert "jail" not in lay.frames
    smtpd = table["smtpd"]
    assert lay.region["smtpd"] == ("root" if smtpd.account == "root" else "unpriv")
    for node, box in lay.boxes.items():
        frame = lay.frames[lay.region[node]]
        assert frame.x <= box.x and box.x + box.w <= frame.x + frame.w, (node, lay.region[node])
    titles = {n: mapfacts.display_name(graph, n) for n, d in graph.nodes(data=True) if d.get("service")}
    assert len(set(titles.values())) == len(titles), titles  # Sendmail's six sendmails told apart
    program, _, role = (smtpd.program or "").partition(" (")
    assert titles["smtpd"] in (program, role.rstrip(")"))


# The map widget's size in the app at 80x24, 120x40 and 200x50 (header, tabs, narration, footer,
# event pane taken off).
MAP_SIZES = [(80, 13), (90, 29), (160, 41)]
PROFILES = ["postfix", "sendmail", "qmail"]


@pytest.mark.parametrize("mode", ["real", "partial", "rootless", "simulated"])
@pytest.mark.parametrize("size", MAP_SIZES)
@pytest.mark.parametrize("profile", PROFILES)
def test_region_titles_and_tags_stay_readable(profile: str, size: tuple[int, int], mode: str) -> None:
    """Every region's title and tag (SIMULATED, 'uid SIMULATED') is drawn whole: no line runs
    through it and no box sits on it (partial mode's jail tag was crossed by the queue edges,
    the jail's title hidden under the boxes at 80x24)."""
    lay = maplayout.layout(regions.graph_from_services(services.load(profile=profile).as_list()), *size, mode)
    grid = mappaint.static(lay).grid
    covered = {(x, y) for b in lay.boxes.values() for x in range(b.x, b.x1 + 1) for y in range(b.y, b.y1 + 1)}
    for key, f in lay.frames.items():
        title, tag = maplayout.frame_texts(lay, key)
        assert title.strip() and len(title) <= f.w - 2
        at = [(f.x + 1 + i, f.y) for i in range(len(title))]
        if tag:
            at += [(f.x1 - len(tag) + i, f.y1) for i in range(len(tag))]
        drawn = "".join(grid[y][x][0] for x, y in at)
        assert drawn == title + tag, (key, drawn)
        assert not covered & set(at), key
        if mappaint.simulated_region(key, mode):
            assert "SIMULATED" in tag


@pytest.mark.parametrize("size", MAP_SIZES)
@pytest.mark.parametrize("profile", PROFILES)
def test_boxes_sit_inside_their_frames_and_the_screen(profile: str, size: tuple[int, int]) -> None:
    """Each box is inside its region's frame, clear of the frame's lines, and on the screen; no
    two boxes overlap (at 80x24 boxes sat on the frames' top lines; Sendmail's thirteen root
    boxes were stacked in one column, running off the bottom)."""
    lay = maplayout.layout(regions.graph_from_services(services.load(profile=profile).as_list()), *size)
    for node, b in lay.boxes.items():
        f = lay.frames[lay.region[node]]
        assert f.x < b.x and b.x1 < f.x1 and f.y < b.y and b.y1 < f.y1, (node, b, f)
        assert b.y1 < lay.height and b.x1 < lay.width
    for (m, a), (n, b) in itertools.combinations(lay.boxes.items(), 2):
        assert a.x1 < b.x or b.x1 < a.x or a.y1 < b.y or b.y1 < a.y, (m, n)


@pytest.mark.parametrize("size", MAP_SIZES)
def test_a_table_with_a_service_removed_still_draws_every_edge(size: tuple[int, int]) -> None:
    """Each postfix service left out in turn (qmgr's going empties unprivileged, whose cells go
    to the jail): the rest keep boxes inside their frames and every edge between them a line."""
    table = services.load(profile="postfix").as_list()
    for gone in (s["name"] for s in table):
        graph = regions.graph_from_services([s for s in table if s["name"] != gone])
        lay = maplayout.layout(graph, *size)
        assert gone not in lay.boxes
        for node, b in lay.boxes.items():
            f = lay.frames[lay.region[node]]
            assert f.x < b.x and b.x1 < f.x1 and f.y < b.y and b.y1 < f.y1, (gone, node)
        drawn = {(r.src, r.dst) for r in lay.routes} | {(r.dst, r.src) for r in lay.routes if r.both}
        assert {(u, v) for u, v in lay.graph.edges if u in lay.boxes and v in lay.boxes} <= drawn, gone


def test_sendmail_root_region_takes_the_middle_of_the_map() -> None:
    """Where everything runs as root, root gets the cells the jail and unprivileged would have."""
    graph = regions.graph_from_services(services.load(profile="sendmail").as_list())
    for size in MAP_SIZES:
        lay = maplayout.layout(graph, *size)
        assert lay.frames["root"].w > lay.width // 2, size
        rows = {b.y for n, b in lay.boxes.items() if lay.region[n] == "root"}
        assert len(rows) <= 3, size


@sync
async def test_labels_are_whole_at_80x24() -> None:
    """At 80x24 the map's one-line boxes keep their names (it showed cleanu, incomin, maste)."""
    app = replay_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = screen_text(app)
        for word in ("JAIL", "ROOT", "UNPRIV", "cleanup", "incoming", "deferred", "maildrop", "master"):
            assert word in text, word
        assert "…" not in text.split("\n", 1)[1]


@pytest.mark.parametrize("size", MAP_SIZES)
@pytest.mark.parametrize("profile", PROFILES)
def test_box_names_are_whole_and_unique_in_every_profile(profile: str, size: tuple[int, int]) -> None:
    """Each box shows its name or its table's short name, never cut, and no two the same
    (Sendmail's roles showed as 'SMTP chi…', 'queue wri…' at 80x24; qmail's 'rspawn/re…' at 120x40)."""
    graph = regions.graph_from_services(services.load(profile=profile).as_list())
    lay = maplayout.layout(graph, *size)
    box_facts = {n: mapfacts.facts(Model(), lay.graph, n, 0.0) for n in lay.boxes}
    out: mappaint.Overlay = {}
    mappaint.overlay_boxes(lay, box_facts, None, out)
    shown = {}
    for node, b in lay.boxes.items():
        text = "\n".join("".join(out[y][x][0] for x in range(b.x, b.x1 + 1)) for y in range(b.y, b.y1 + 1))
        assert "…" not in text, (node, text)
        f = box_facts[node]
        chips = [c.removeprefix(f.marker).rstrip("0123456789 ·⛓") for c in f.chips]  # without counts
        shown[node] = next((n for n in (f.name, f.compact, *chips) if n and n in text), None)
        assert shown[node], (node, text)
    assert len(set(shown.values())) == len(shown), shown


@pytest.mark.parametrize("profile", PROFILES)
def test_the_size_class_is_one_whose_names_fit(profile: str) -> None:
    """From the compact map's least width on, no box is cut at any width: where a class's names
    do not fit, the next smaller is drawn (at 70-86 columns the framed titles read 'peer …',
    'maildro…'; at 100-110 'peer m…'; compact at 72-78 'maildrop…', '♛mail.loc…')."""
    graph = regions.graph_from_services(services.load(profile=profile).as_list())
    least = maplayout.least_width(graph)
    assert least <= 74
    for width, height in itertools.product(range(least, 171, 5), (13, 29, 41)):
        lay = maplayout.layout(graph, width, height)
        box_facts = {n: mapfacts.facts(Model(), lay.graph, n, 0.0) for n in lay.boxes}
        out: mappaint.Overlay = {}
        mappaint.overlay_boxes(lay, box_facts, None, out)
        for node, b in lay.boxes.items():
            text = "".join(out[y][x][0] for y in range(b.y, b.y1 + 1) for x in range(b.x, b.x1 + 1))
            assert "…" not in text, (width, height, lay.size_class, node, text)
        for (m, a), (n, b) in itertools.combinations(lay.boxes.items(), 2):
            assert a.x1 < b.x or b.x1 < a.x or a.y1 < b.y or b.y1 < a.y, (width, height, m, n)


def test_postfix_keeps_its_jail() -> None:
    table = services.load(profile="postfix")
    lay = maplayout.layout(regions.graph_from_services(table.as_list()), 160, 48)
    assert lay.region["smtpd"] == "jail" and lay.region["incoming"] == "jail"


@sync
async def test_showing_the_map_again_keeps_its_rows_and_a_theme_switch_redraws_them() -> None:
    app = replay_app()
    async with app.run_test(size=(160, 45)) as pilot:
        diagram = app.query_one(Diagram)
        seen: list[int] = []

        def settled() -> bool:  # the snapshot's services drawn, and no row again for 0.3 s
            seen.append(diagram.rows_rendered)
            drawn_from_snapshot = diagram._graph_key == tuple(app.model.services) != ()
            return drawn_from_snapshot and len(seen) >= 15 and len(set(seen[-15:])) == 1

        await until(pilot, settled, what="the map drawn and still")
        drawn = diagram.rows_rendered
        for key in "pm":  # away to the processes and back: the same size, the same colours
            await pilot.press(key)
            await pilot.pause()
        assert diagram.rows_rendered == drawn  # every row redrawn each time, before
        app.theme = "simmta-light"
        await pilot.pause()
        await until(pilot, lambda: diagram.rows_rendered >= drawn + diagram.size.height // 2, what="redrawn")
