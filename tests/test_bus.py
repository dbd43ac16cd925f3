"""master's bus on its own: what a child's datagram becomes on the stream.

The bus writes a child's own JSON with pid, service and seq spliced in; the
line must read back as exactly the event the bus checked, and a child must
not be able to speak for another process or break the one-event-per-line
framing.
"""

import asyncio
import contextlib
import json
import os
import socket
from types import SimpleNamespace

from simmta.core import events
from simmta.core.records import (
    MAX_ITEMS,
    MAX_TEXT,
    ProcessReady,
    ProcessState,
    QueueCreated,
    QueueHeld,
    QueueMoved,
    SmtpCommand,
    SmtpReply,
)
from simmta.master.bus import Bus, Subscriber


class Transport:
    def __init__(self) -> None:
        self.data = b""

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.data += data


def stream_of(*datagrams: bytes) -> tuple[Bus, list[dict]]:
    """Feed datagrams from 'qmgr' pid 4242 through a bus; the lines a subscriber got."""
    bus, transport = Bus(), Transport()

    async def run() -> None:
        bus.add(Subscriber(SimpleNamespace(transport=transport), "test"), {"snapshot": True})
        for raw in datagrams:
            bus.from_child(raw, 4242, "qmgr")
        bus.flush()

    asyncio.run(run())
    lines = transport.data.split(b"\n")
    assert lines[-1] == b""
    return bus, [json.loads(line) for line in lines[1:-1]]


def datagram(**overrides) -> dict:
    event = events.make("qmgr", QueueMoved(from_="incoming", to="active"), "Q1")
    return {k: v for k, v in {**event, **overrides}.items() if k not in events.STAMPED}


def test_a_childs_event_is_its_own_json_stamped_by_the_bus() -> None:
    sent = datagram()
    bus, got = stream_of(json.dumps(sent).encode(), json.dumps(sent, indent=None).encode())
    assert got == [
        {**sent, "seq": 2, "pid": 4242, "service": "qmgr"},  # 1: the snapshot
        {**sent, "seq": 3, "pid": 4242, "service": "qmgr"},
    ]
    assert bus.invalid == 0


def test_the_bus_streams_in_the_order_published_and_holds_nothing_back() -> None:
    bus, transport = Bus(), Transport()

    async def run() -> None:
        bus.add(Subscriber(SimpleNamespace(transport=transport), "test"), {"snapshot": True})
        for qid in ("FIRST", "NEXT", "LAST"):  # mono says otherwise: it is not the bus's order
            bus.from_child(json.dumps(datagram(qid=qid, mono=1000.0 - len(qid))).encode(), 2, "qmgr")
        await asyncio.sleep(0)  # one loop turn: written, not held
        assert transport.data.count(b"\n") == 4

    asyncio.run(run())
    got = [json.loads(line) for line in transport.data.splitlines()[1:]]
    assert [e["qid"] for e in got] == ["FIRST", "NEXT", "LAST"]


class FullTransport(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.full = True

    def get_write_buffer_size(self) -> int:
        return 1 << 30 if self.full else 0


def test_a_slow_subscribers_drop_notice_names_the_messages_it_lost() -> None:
    bus, transport = Bus(), FullTransport()
    bus.add(Subscriber(SimpleNamespace(transport=transport), "slow"), {"snapshot": True})
    for qid in ("LOST1", "LOST2"):
        bus.from_child(json.dumps(datagram(qid=qid)).encode(), 2, "qmgr")
        bus.flush()
    transport.full = False
    bus.from_child(json.dumps(datagram(qid="KEPT")).encode(), 2, "qmgr")
    bus.flush()
    notice, kept = (json.loads(line) for line in transport.data.splitlines()[1:])
    assert (notice["kind"], notice["data"]["count"], notice["data"]["qids"]) == ("bus", 2, ["LOST1", "LOST2"])
    assert events.validate(notice) == [] and kept["qid"] == "KEPT"


def test_a_child_cannot_name_another_sender() -> None:
    for key, value in (("pid", 1), ("service", "master"), ("seq", 99)):
        bus, got = stream_of(json.dumps({**datagram(), key: value}).encode())
        assert got == [] and bus.invalid == 1, key


def test_one_datagram_carries_a_turns_events_one_per_line() -> None:
    first, second = datagram(), datagram(qid="Q2")
    bus, got = stream_of(b"\n".join(json.dumps(e).encode() for e in (first, second)))
    assert [(e["seq"], e["qid"]) for e in got] == [(2, "Q1"), (3, "Q2")] and bus.invalid == 0


def test_line_breaks_inside_a_childs_json_cannot_split_the_stream() -> None:
    indented = json.dumps(datagram(), indent=2).encode()  # valid JSON, but not one line
    bus, got = stream_of(indented, json.dumps(datagram()).encode() + b"\r")
    assert bus.invalid == indented.count(b"\n") + 1  # each line of it is garbage
    assert len(got) == 1 and got[0]["data"] == datagram()["data"]  # the CR is not passed on


def test_events_a_child_lost_are_announced_and_the_count_not_passed_on() -> None:
    _, got = stream_of(json.dumps(datagram(dropped_before=7, dropped_qids=["Q0", 5])).encode())
    notice, event = sorted(got, key=lambda e: e["kind"] != "bus")
    assert (notice["type"], notice["data"]["count"], event["type"]) == ("dropped", 7, "moved")
    assert notice["data"]["qids"] == ["Q0"]  # the messages the lost events were about (strings only)
    assert "dropped_before" not in event and "dropped_qids" not in event


def test_a_full_channel_drops_events_and_the_next_datagram_names_their_messages() -> None:
    """A cause lost in the daemon's channel must not look like an order: the notice says
    which messages lost events, so views and checks mark them incomplete."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        emitter = events.Emitter("qmgr", theirs)
        n = 0
        while emitter.emit(QueueMoved(from_="incoming", to="active"), f"Q{n}"):  # until the channel is full
            n += 1
        assert emitter.dropped == 1
        emitter.emit(QueueMoved(from_="incoming", to="active"), f"Q{n + 1}")  # still full
        while True:  # master reads the channel
            try:
                mine.recv(events.MAX_DATAGRAM, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
        assert emitter.emit(QueueHeld(via="test"), "LATER")
        _, last = mine.recv(events.MAX_DATAGRAM).split(b"\n", 1)
        _, got = stream_of(last)
    finally:
        mine.close()
        theirs.close()
    notice, event = sorted(got, key=lambda e: e["kind"] != "bus")
    assert notice["data"]["count"] == 2 and notice["data"]["qids"] == sorted([f"Q{n}", f"Q{n + 1}"])
    assert event["qid"] == "LATER"


def test_garbage_is_counted_not_published() -> None:
    bus, got = stream_of(b"not json", b"[1, 2]", b"{}", json.dumps(datagram(kind="nope")).encode())
    assert got == [] and bus.invalid == 4


def test_events_made_after_a_fork_carry_the_childs_pid() -> None:
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the zygote forks every daemon: pid() must follow
        os.write(write, str(events.make("x", ProcessReady())["pid"]).encode())
        os._exit(0)
    os.close(write)
    assert int(os.read(read, 32)) == child and os.waitpid(child, 0)[1] == 0
    assert events.pid() == os.getpid()
    os.close(read)


def test_a_child_that_cannot_send_counts_what_it_lost_and_says_so() -> None:
    theirs, mine = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with theirs, mine:
        lost_and_announced(events.Emitter("qmgr", theirs), mine)


def lost_and_announced(emitter: events.Emitter, mine: socket.socket) -> None:
    sent = 0
    while emitter.emit(QueueHeld(via="hold"), f"Q{sent}", now=True):
        sent += 1  # until the channel is full: master is not reading
        assert sent < 100_000
    for _ in range(3):
        emitter.emit(QueueHeld(via="hold"), "LOST", now=True)
    received = []
    mine.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            received.append(mine.recv(65536))
    assert len(received) == sent and emitter.dropped == 4
    assert emitter.emit(QueueHeld(via="hold"), "NEXT", now=True)
    header, _, datagram_ = mine.recv(65536).partition(b"\n")
    assert header == b"#%d" % (sent + 1)  # numbered, for its order token (master strips it)
    bus, got = stream_of(datagram_)
    notice, event = sorted(got, key=lambda e: e["kind"] != "bus")
    assert notice["data"]["count"] == 4 and event["qid"] == "NEXT" and bus.invalid == 0


def received(sock: socket.socket) -> list[list[str]]:
    """The event types of each datagram waiting on ``sock`` (non-blocking), in order."""
    got = []
    with contextlib.suppress(BlockingIOError):
        while True:
            lines = sock.recv(65536).split(b"\n")[1:]
            got.append([json.loads(line)["type"] for line in lines])
    return got


def test_transcript_events_wait_for_company_a_message_s_move_leaves_in_its_turn() -> None:
    """An SMTP session's commands and replies share datagrams (held up to EVENT_TICK);
    a queue event leaves in its loop turn and takes the held ones with it, in order."""
    theirs, mine = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    mine.setblocking(False)

    async def run() -> list[list[list[str]]]:
        emitter = events.Emitter("smtpd", theirs)
        seen = []
        emitter.emit(SmtpCommand(line="EHLO a"), sid="S1")
        await asyncio.sleep(0)
        emitter.emit(SmtpReply(line="250 ok"), sid="S1")
        await asyncio.sleep(0)
        seen.append(received(mine))  # held: nothing sent yet, two turns later
        await asyncio.sleep(events.EVENT_TICK * 3)
        seen.append(received(mine))  # one datagram for both
        emitter.emit(SmtpCommand(line="QUIT"), sid="S1")
        emitter.emit(QueueMoved(from_="incoming", to="active"), "Q1")
        await asyncio.sleep(0)
        seen.append(received(mine))  # the move did not wait, and the held command went first
        return seen

    with theirs, mine:
        held, together, moved = asyncio.run(run())
    assert held == [] and together == [["command", "reply"]] and moved == [["command", "moved"]]


def test_a_hand_off_s_flush_takes_the_held_events_and_their_timer() -> None:
    """After a hand-off's flush, events held later wait for a timer of their own (at most
    EVENT_TICK), not for the one that went with the flush, nor for the flush a queue event
    had asked for in its loop turn: a process's state after a connection can go with the
    next connection's first events (Issue 11: fewer datagrams and order tokens per message)."""
    theirs, mine = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    mine.setblocking(False)

    async def run() -> list[object]:
        emitter = events.Emitter("cleanup", theirs)
        seen: list[object] = []
        emitter.emit(ProcessState(state="busy"))  # held: its timer starts
        emitter.emit(
            QueueCreated(queue="incoming", size=1, sender="", recipients=[], origin="x", subject=""), "Q1"
        )
        first_timer = emitter.timer
        emitter.flush()  # the hand-off: both go, and the timer with them
        seen += [received(mine), first_timer is not None and first_timer.cancelled(), emitter.timer]
        emitter.emit(ProcessState(state="idle", served=1))
        await asyncio.sleep(0)  # the queue event's loop turn: it went already, the state waits
        seen += [received(mine), emitter.timer is not None and emitter.timer is not first_timer]
        later: list[list[str]] = []
        for _ in range(1000):  # until its own timer has sent it
            await asyncio.sleep(events.EVENT_TICK / 2)
            if later := received(mine):
                break
        seen.append(later)
        return seen

    with theirs, mine:
        flushed, cancelled, timer, turn, own_timer, later = asyncio.run(run())
    assert flushed == [["state", "created"]] and cancelled and timer is None
    assert turn == [] and own_timer and later == [["state"]]


def test_a_childs_text_past_the_cut_is_cut_on_the_stream_and_in_what_it_sends() -> None:
    """The cut holds for what a compromised child writes on its channel (the bus re-encodes
    the record) and for an honest emitter (it cuts where it encodes, as events.make does)."""
    long = {"line": "x" * 10000, "peer": True}
    bus, got = stream_of(json.dumps({**datagram(), "kind": "smtp", "type": "command", "data": long}).encode())
    assert got[0]["data"] == {"line": "x" * MAX_TEXT + "…", "peer": True} and bus.invalid == 0
    _, got = stream_of(json.dumps(datagram(qid="Q" * (MAX_TEXT + 1))).encode())
    assert got == []  # an ID is refused, not cut
    theirs, mine = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with theirs, mine:
        events.Emitter("smtpd", theirs).emit(SmtpCommand(line="y" * 10000), now=True)
        (sent,) = mine.recv(65536).split(b"\n")[1:]
    assert json.loads(sent)["data"]["line"] == "y" * MAX_TEXT + "…"
    made = events.make(
        "master",
        QueueCreated(queue="q", size=1, sender="s", recipients=["r"] * 300, origin="o", subject="z" * 600),
    )
    assert made["data"]["recipients"] == ["r"] * MAX_ITEMS and made["data"]["subject"] == "z" * MAX_TEXT + "…"


def test_every_line_the_bus_streams_parses_whatever_keys_a_child_adds() -> None:
    """A child's drop count said as null (or its queue IDs alone) is not spliced into the stream,
    where a subscriber would refuse the unknown key: the bus writes the event without it."""
    for extra in (
        {"dropped_before": None},
        {"dropped_qids": ["Q9"]},
        {"dropped_before": 0, "dropped_qids": None},
    ):
        bus, transport = Bus(), Transport()
        bus.add(Subscriber(SimpleNamespace(transport=transport), "test"), {"snapshot": True})
        bus.from_child(json.dumps({**datagram(), **extra}).encode(), 4242, "qmgr")
        bus.flush()
        (line,) = transport.data.splitlines()[1:]
        assert events.parse_line(line)["qid"] == "Q1", extra


def test_masters_listeners_hear_the_kinds_it_acts_on() -> None:
    """Master acts only on ESSENTIAL kinds (the only ones a muted daemon sends): the bus
    decodes those into events for its listeners; the rest it streams as they came."""
    bus, heard = Bus(), []
    bus.listeners.append(heard.append)
    pace = {**datagram(), "kind": "pace", "type": "wait", "data": {"hop": 3, "to": "qmgr", "what": "queue"}}
    for sent in (datagram(), pace):
        bus.from_child(json.dumps(sent).encode(), 4242, "cleanup")
    assert [(e["kind"], e["pid"], e["service"], e["data"]) for e in heard] == [
        ("pace", 4242, "cleanup", pace["data"])
    ]


def test_an_emitter_batches_in_each_running_loop_and_sends_at_once_outside_one() -> None:
    """emit remembers the loop it found running (asyncio's look-up costs a getpid system
    call per event); it must still know when no loop runs in its thread: then an event
    goes at once, in a loop it waits for the turn's batch."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    mine.setblocking(False)
    emitter = events.Emitter("qmgr", theirs)

    def received(mine) -> list[int]:  # events per datagram read
        got = []
        with contextlib.suppress(BlockingIOError):
            while True:
                got.append(mine.recv(events.MAX_DATAGRAM).count(b"\n"))
        return got

    async def turn() -> list[int]:
        emitter.emit(QueueMoved(from_="incoming", to="active"), "Q1")
        emitter.emit(QueueMoved(from_="active", to="deferred"), "Q1")
        await asyncio.sleep(0)
        return received(mine)

    try:
        assert asyncio.run(turn()) == [2]  # one datagram: "#N" and two lines
        emitter.emit(QueueHeld(via="test"), "Q1")  # that loop is closed: at once
        assert received(mine) == [1]

        def sent_at_once() -> list[int]:  # in a thread no loop runs in, while one runs in this one
            emitter.emit(QueueHeld(via="test"), "Q2")
            return received(mine)

        async def from_another_thread() -> list[int]:
            assert await turn() == [2]  # (this loop found)
            return await asyncio.to_thread(sent_at_once)

        assert asyncio.run(turn()) == [2]  # a new loop
        assert asyncio.run(from_another_thread()) == [1]
    finally:
        mine.close()
        theirs.close()
