"""The model and the feeds, without Textual: what the viewer knows from the stream."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tuihelp import STORY, story

from simmta.core import events as ev
from simmta.core import services
from simmta.core.errors import SimmtaError
from simmta.core.records import SmtpReply
from simmta.tui import regions
from simmta.tui.feed import BATCH_LIMIT, CHUNK, LiveFeed, ReplayFeed, load_recording
from simmta.tui.model import LOG_SIZE, Model


def test_story_fixture_is_valid_schema_v1() -> None:
    for line in STORY.read_text().splitlines():
        assert ev.validate(json.loads(line)) == []
    recorded = [json.loads(line) for line in STORY.read_text().splitlines()]
    assert recorded == json.loads(json.dumps(story.story()))


def test_model_from_story() -> None:
    events, problem = load_recording(STORY)
    m = Model()
    m.apply_all(events)
    assert problem == ""
    assert m.counts["accepted"] == 3 and m.counts["delivered"] == 1
    assert list(m.queues["deferred"]) == ["5D6E7F"]
    assert m.retry_in(m.messages["5D6E7F"]) == pytest.approx(300, abs=6)
    assert m.delivered_to("mailboxes") == 1
    assert m.privilege_mode == "simulated" and m.faults["peer"] == "tempfail"
    assert m.restarts["smtpd"] == 1 and 1003 not in m.processes and 1008 in m.processes
    assert m.waiting == {"100201": ("8G9H0I", "qmgr", "local")}
    assert "⏸8G9H0I" in m.on_edge("qmgr", "local")


def test_model_keeps_hostile_text_inert() -> None:
    m = Model()
    m.apply_all(story.story())
    assert "\x1b" not in m.sessions["smtpd/S3"].helo and "\\x1b" in m.sessions["smtpd/S3"].helo
    assert "\x1b" not in m.messages["8G9H0I"].subject
    assert "[link=http://x]" in m.messages["8G9H0I"].subject  # kept as text, not markup


def test_multi_line_reply_is_one_event_and_several_transcript_lines() -> None:
    m = Model()
    reply = ev.reply_text(["250-mx.simmta.test", "250-SIZE 10240000", "250 HELP\x1b[2J"])
    m.apply(ev.make("smtpd", SmtpReply(line=reply), sid="S9"))
    assert list(m.sessions["smtpd/S9"].transcript) == [
        ("<", "250-mx.simmta.test"),
        ("<", "250-SIZE 10240000"),
        ("<", "250 HELP\\x1b[2J"),
    ]


def test_model_memory_is_bounded() -> None:
    m, events = Model(), story.story()
    m.apply(events[0])
    for i in range(LOG_SIZE * 3):
        m.apply({**events[1], "qid": f"Q{i}", "seq": i})
    assert len(m.log) == LOG_SIZE and len(m.messages) <= 1000


def test_regions_from_the_graph() -> None:
    g = services.load().graph()
    assert regions.region_of(g, "smtpd") == "jail"
    assert regions.region_of(g, "qmgr") == "unpriv"
    assert regions.region_of(g, "local") == "root"
    assert regions.region_of(g, "mailboxes") == "users"
    assert regions.region_of(g, "peer-mailbox") == "internet"
    rebuilt = regions.graph_from_services(services.load().as_list())
    assert set(rebuilt.edges) == set(g.edges)


def test_truncated_recording_names_the_line(tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    lines = STORY.read_text().splitlines()
    rec.write_text("\n".join(lines[:10]) + "\n" + lines[10][:25] + "\n")
    events, problem = load_recording(rec)
    assert len(events) == 10 and "line 11" in problem and "not valid JSON" in problem
    rec.write_text('{"v": 1}\n')
    with pytest.raises(SimmtaError, match="line 1"):
        load_recording(rec)


def test_replay_steps_forward_and_back() -> None:
    events, _ = load_recording(STORY)
    feed, m = ReplayFeed(events, playing=False), Model()
    feed.pump(m, 0.0)
    assert feed.position == 1 and m.counts["accepted"] == 0
    feed.seek_end()
    feed.pump(m, 0.0)
    assert m.counts["delivered"] == 1
    feed.step(-len(events))
    feed.pump(m, 0.0)
    assert feed.position == 1 and m.counts["delivered"] == 0
    feed.next_of("4A1B2C")
    feed.pump(m, 0.0)
    assert events[feed.position - 1]["qid"] == "4A1B2C"


def test_replay_plays_on_its_clock() -> None:
    events, _ = load_recording(STORY)
    feed, m = ReplayFeed(events, speed=1.0), Model()
    feed.pump(m, 100.0)
    feed.pump(m, 101.0)  # one second of the recording: four events at 0.25 s apart
    assert feed.position == 5
    feed.faster(True)
    assert feed.speed == 2.0


def test_live_feed_overflow_is_counted_not_fatal() -> None:
    feed, m = LiveFeed(Path("/nonexistent"), inbox_size=10), Model()
    for line in STORY.read_text().splitlines():
        feed.offer(line)
    feed.offer(b"{broken")
    assert feed.overflow == len(story.story()) - 10 and feed.bad_lines == 1
    assert feed.pump(m, 0.0) == 10
    assert "bad event" in feed.status()


def test_model_does_not_import_textual() -> None:
    code = (
        "import sys, simmta.tui.model, simmta.tui.feed, simmta.tui.regions, "
        "simmta.tui.maplayout, simmta.tui.mappaint, simmta.tui.playback, simmta.tui.launch; "
        "print(any(m.startswith('textual') "
        "for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert out.stdout.strip() == "False"


def test_live_feed_says_when_it_falls_behind() -> None:
    feed, m = LiveFeed(Path("/nonexistent")), Model()
    lines = STORY.read_text().splitlines()
    for i in range(BATCH_LIMIT + 100):
        feed.offer(lines[1 + i % (len(lines) - 1)])
    assert feed.pump(m, 0.0, budget=float("inf")) == BATCH_LIMIT
    assert feed.status().startswith("falling behind: 100 waiting")
    feed.pump(m, 0.0, budget=float("inf"))
    assert feed.backlog == 0


def test_live_feed_stops_when_its_time_is_spent() -> None:
    """A pump applies events for ``budget`` seconds at most (a chunk at a time), then leaves the
    rest waiting, so the app can handle a key before the next slice."""
    feed, m = LiveFeed(Path("/nonexistent")), Model()
    lines = STORY.read_text().splitlines()
    for i in range(CHUNK * 3):
        feed.offer(lines[1 + i % (len(lines) - 1)])
    assert feed.pump(m, 0.0, budget=0.0) == CHUNK
    assert feed.backlog == CHUNK * 2


def test_queue_series_drops_when_a_message_leaves() -> None:
    events, m = story.story(), Model()
    removed = next(i for i, e in enumerate(events) if e["type"] == "removed")
    m.apply_all(events[:removed])
    assert m.series["queued"][-1] == m.queued == 1
    m.apply(events[removed])
    assert m.series["queued"][-1] == m.queued == 0


def test_what_a_full_inbox_lets_go_is_a_drop_notice_naming_its_messages() -> None:
    feed, m = LiveFeed(Path("/nonexistent"), inbox_size=10), Model()
    lines = STORY.read_text().splitlines()
    for line in lines:
        feed.offer(line)
    lost = [ev.parse_line(line) for line in lines[:-10]]
    qids = {e["qid"] for e in lost if e.get("qid")}
    assert qids, "the story's first events are about a message"
    feed.pump(m, 0.0)
    assert m.dropped == len(lost)
    notice = next(e for e in m.log if e["kind"] == "bus" and e["type"] == "dropped")
    assert ev.validate(notice) == []
    assert set(m.state.drops[-1].qids) == qids
    assert all(m.state.messages[q].incomplete for q in qids)
    feed.pump(m, 0.0)
    assert m.dropped == len(lost)  # told once
