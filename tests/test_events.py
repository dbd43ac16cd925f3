"""The event stream: complete chains, schema, drops, recording, access, pacing."""

import ctypes
import json
import os
import socket
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import pytest
from mtakit import AS_NOBODY, EventLog, Mta, maildir_files, wait_for

from simmta.core import events
from simmta.core.errors import SimmtaError
from simmta.core.events import read_recording
from simmta.core.records import MAX_ITEMS, MAX_TEXT, QueueCreated, QueueHeld, SmtpCommand


def chain(log: EventLog, qid: str, sid: str | None = None) -> list[tuple[str, str, str]]:
    """(service, kind/type, detail) of one message's events, in bus order."""
    out = []
    for e in sorted(log.events, key=lambda e: e["seq"]):
        if e.get("qid") == qid or (sid and e.get("sid") == sid):
            d = e["data"]
            detail = d.get("to") or d.get("queue") or d.get("line", "")[:4] or d.get("via", "")
            if e["kind"] == "queue" and e["type"] == "moved":
                detail = f"{d['from']}->{d['to']}"
            out.append((e["service"], f"{e['kind']}/{e['type']}", detail))
    return out


def assert_in_order(seq: list[tuple[str, str, str]], expected: list[tuple[str, str, str]]) -> None:
    pos = 0
    for item in seq:
        if pos < len(expected) and item == expected[pos]:
            pos += 1
    assert pos == len(expected), f"missing {expected[pos]} in order; got {seq}"


def test_one_message_tells_the_whole_story_in_order(mta: Mta) -> None:
    log = mta.subscribe()
    qid = mta.send("bob@simmta.test")
    wait_for(lambda: log.find(kind="queue", type="removed", qid=qid), what="the removal event")
    sid = next(e["sid"] for e in log.find(kind="queue", type="created", qid=qid))
    story = chain(log, qid, sid)
    # The hand-offs, in causal order ...
    assert_in_order(
        story,
        [
            ("smtpd", "smtp/open", ""),
            ("smtpd", "smtp/command", "EHLO"),
            ("smtpd", "smtp/reply", "250-"),
            ("smtpd", "smtp/command", "MAIL"),
            ("smtpd", "smtp/command", "DATA"),
            ("smtpd", "ipc/request", "cleanup"),
            ("cleanup", "queue/created", "incoming"),
            ("cleanup", "ipc/request", "qmgr"),
            ("qmgr", "queue/moved", "incoming->active"),
            ("qmgr", "ipc/request", "local"),
            ("local", "delivery/delivered", "local"),
            ("qmgr", "queue/removed", "active"),
        ],
    )
    # ... and the 250 only once the queue file exists (qmgr may already be at work by then).
    assert_in_order(
        story,
        [
            ("cleanup", "queue/created", "incoming"),
            ("smtpd", "ipc/response", "cleanup"),
            ("smtpd", "smtp/reply", "250 "),
        ],
    )
    for e in log.events:
        assert events.validate(e) == [], e
    seqs = [e["seq"] for e in log.events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert log.events[0]["kind"] == "snapshot"
    log.close()


def in_flight_peak(log: EventLog, transport: str, qids: set[str]) -> int:
    """The most qmgr requests to ``transport`` that were open at once, from the stream."""
    peak = open_ = 0
    for e in sorted(log.events, key=lambda e: e["seq"]):
        if e["service"] == "qmgr" and e["qid"] in qids and e["data"].get("to") == transport:
            open_ += 1 if e["type"] == "request" else -1
            peak = max(peak, open_)
    return peak


def test_local_gets_one_request_per_recipient_and_at_most_two_per_mailbox(mta: Mta) -> None:
    log = mta.subscribe()
    qid = mta.send(["alice@simmta.test", "bob@simmta.test", "carol@simmta.test"])
    with ThreadPoolExecutor(8) as pool:  # a burst to one mailbox
        qids = {qid, *pool.map(lambda _: mta.send("bob@simmta.test"), range(24))}
    wait_for(
        lambda: all(log.find(kind="queue", type="removed", qid=q) for q in qids),
        what="every message delivered",
    )
    asked = [e["data"]["what"] for e in log.find(service="qmgr", kind="ipc", type="request", qid=qid)]
    assert asked == ["deliver to 1 recipient(s)"] * 3  # local_destination_recipient_limit = 1
    assert in_flight_peak(log, "local", qids - {qid}) <= 2  # local_destination_concurrency_limit
    assert in_flight_peak(log, "local", qids) >= 2  # the burst did overlap: the limit was tested


def test_under_load_every_message_is_created_before_qmgr_touches_it(mta: Mta) -> None:
    """qmgr can find a new file by scanning incoming/, not only by cleanup's trigger:
    cleanup's "created" must still reach the stream before qmgr's "moved"."""
    log = mta.subscribe()
    with ThreadPoolExecutor(8) as pool:
        qids = set(pool.map(lambda _: mta.send("bob@simmta.test"), range(80)))
    wait_for(
        lambda: all(log.find(kind="queue", type="removed", qid=q) for q in qids),
        what="every message delivered",
    )
    order: dict[str, list[str]] = {q: [] for q in qids}
    for e in sorted(log.events, key=lambda e: e["seq"]):
        if e["kind"] == "queue" and e["qid"] in order:
            order[e["qid"]].append(e["type"])
    late = {q: types for q, types in order.items() if types != ["created", "moved", "removed"]}
    assert not late, late


def test_relay_defer_retry_and_bounce_chains(mta: Mta) -> None:
    log = mta.subscribe()
    mta.simmta("peer", "fault", "tempfail")
    qid = mta.send("someone@example.net")
    wait_for(lambda: log.find(kind="queue", type="deferred", qid=qid), what="deferral")
    mta.simmta("peer", "fault", "none")
    wait_for(lambda: log.find(kind="queue", type="removed", qid=qid), what="delivery on retry")
    assert_in_order(
        chain(log, qid),
        [
            ("qmgr", "ipc/request", "smtp"),
            ("smtp", "delivery/deferred", "smtp"),
            ("qmgr", "queue/deferred", ""),
            ("qmgr", "queue/moved", "deferred->active"),
            ("smtp", "delivery/delivered", "smtp"),
            ("qmgr", "queue/removed", "active"),
        ],
    )
    assert log.find(kind="fault", type="set", data_value="tempfail")
    mta.simmta("peer", "fault", "permfail")
    qid2 = mta.send("other@example.net")
    wait_for(lambda: log.find(kind="queue", type="removed", qid=qid2), what="the bounce")
    assert_in_order(
        chain(log, qid2),
        [
            ("smtp", "delivery/bounced", "smtp"),
            ("qmgr", "ipc/request", "bounce"),
            ("bounce", "ipc/request", "cleanup"),
            ("bounce", "delivery/bounce", ""),
            ("qmgr", "queue/removed", "active"),
        ],
    )
    log.close()


def test_sendmail_chain_through_maildrop_and_pickup(mta: Mta) -> None:
    log = mta.subscribe()
    mta.simmta("sendmail", "bob@simmta.test", input=b"Subject: s\n\nx\n")
    created = wait_for(
        lambda: log.find(kind="queue", type="created", service="cleanup"), what="cleanup to queue it"
    )
    qid = created[0]["qid"]
    wait_for(lambda: log.find(kind="queue", type="removed", qid=qid), what="delivery")
    assert log.find(kind="queue", type="removed", service="pickup", data_queue="maildrop")
    assert log.find(kind="ipc", type="request", service="pickup", data_to="cleanup")
    assert_in_order(
        chain(log, qid), [("cleanup", "queue/created", "incoming"), ("local", "delivery/delivered", "local")]
    )
    log.close()


def _master_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _burst(mta: Mta, n: int) -> float:
    start = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda i: mta.send("bob@simmta.test"), range(n)))
    wait_for(
        lambda: len(maildir_files(mta.maildir("bob"))) >= burst_total[0] + n, 120, what=f"{n} deliveries"
    )
    burst_total[0] += n
    return time.monotonic() - start


burst_total = [0]


@pytest.mark.slow
def test_a_stuck_subscriber_loses_events_not_mail(mta: Mta) -> None:
    burst_total[0] = 0
    baseline = _burst(mta, 300)  # no subscriber
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(str(mta.instance / "run" / "bus.sock"))
    rss_before = _master_rss_kb(mta.pid)
    with_stuck = _burst(mta, 1000)
    rss_after = _master_rss_kb(mta.pid)
    st = mta.live_status()["events"]
    [sub] = st["subscribers"]
    offered = st["published"] - sub["joined_at"]
    assert sub["dropped"] > 0, "the stuck subscriber must have lost events"
    assert sub["sent"] + sub["dropped"] == offered, "every event is either sent or counted dropped"
    ratio = with_stuck / (baseline * 1000 / 300)
    print(
        f"\nstuck subscriber: {with_stuck:.2f}s for 1000 vs {baseline:.2f}s for 300 without "
        f"(time per message ratio {ratio:.2f}); dropped {sub['dropped']}; "
        f"master RSS {rss_before} -> {rss_after} kB"
    )
    assert ratio < 2.5, "a stuck viewer must not slow mail down much"
    assert rss_after - rss_before < 20_000, "master's memory stays bounded"
    # When it reads again, it first gets its backlog, then a notice of how many it lost.
    stuck.setblocking(True)
    stuck.settimeout(10)
    buf = b""
    mta.send("bob@simmta.test")
    deadline = time.monotonic() + 20
    while b'"kind":"bus","type":"dropped"' not in buf and time.monotonic() < deadline:
        buf += stuck.recv(1 << 20)
    notice = next(json.loads(line) for line in buf.split(b"\n") if b'"kind":"bus","type":"dropped"' in line)
    [after] = mta.live_status()["events"]["subscribers"]
    assert notice["data"]["count"] == after["dropped"] >= sub["dropped"]
    stuck.close()


def test_recording_replays_the_same_sequence(mta: Mta, tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl"
    rec = subprocess.Popen(
        [sys.executable, "-m", "simmta", "record", "--instance", str(mta.instance), "-o", str(out)],
        stderr=subprocess.PIPE,
    )
    log = mta.subscribe()
    wait_for(lambda: len(mta.live_status()["events"]["subscribers"]) == 2, what="both subscribers")
    qid = mta.send()
    wait_for(lambda: log.find(kind="queue", type="removed", qid=qid), what="delivery")
    wait_for(lambda: out.exists() and b'"type":"removed"' in out.read_bytes(), what="the recording")
    rec.terminate()
    rec.wait(10)
    rec.stderr.close()
    replayed = [(e["seq"], e["kind"], e["type"], e["qid"]) for e in read_recording(out)]
    assert replayed[0][1] == "snapshot"
    body = replayed[1:]
    # Both subscribers saw the same stream: same sequence numbers, same events, same order.
    live = {e["seq"]: (e["seq"], e["kind"], e["type"], e["qid"]) for e in log.events}
    window = [live[n] for n in sorted(live) if body[0][0] <= n <= body[-1][0] and live[n][1] != "snapshot"]
    assert body == window and len(body) > 10
    log.close()
    # A damaged recording is refused with the line number.
    lines = out.read_bytes().splitlines(keepends=True)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"".join(lines[:3]) + b'{"v":1,"oops"\n' + b"".join(lines[3:]))
    with pytest.raises(SimmtaError, match=r"line 4: not valid JSON"):
        list(read_recording(bad))
    trunc = tmp_path / "trunc.jsonl"
    trunc.write_bytes(b"".join(lines[:5]) + lines[5][:20])
    with pytest.raises(SimmtaError, match=r"line 6: truncated"):
        list(read_recording(trunc))


def test_snapshot_on_connect_is_complete(mta: Mta) -> None:
    mta.simmta("peer", "fault", "tempfail")
    qid = mta.send("someone@example.net")
    wait_for(lambda: qid in mta.queue_files("deferred"), what="deferred")
    log = mta.subscribe()
    snap = wait_for(lambda: log.events and log.events[0], what="the snapshot")
    data = snap["data"]
    assert snap["kind"] == "snapshot"
    assert [s["name"] for s in data["services"]][:3] == ["smtpd", "pickup", "cleanup"]
    assert {p["service"] for p in data["processes"]} >= {"master", "qmgr", "pickup"}
    assert all(p["privilege"] for p in data["processes"])
    assert [m["qid"] for m in data["queues"]["deferred"]] == [qid]
    assert data["faults"]["peer"] == "tempfail" and data["privilege_mode"] == "real"
    log.close()


def test_another_uid_cannot_subscribe_or_control(mta: Mta) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another uid")
    probe = (
        "import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
        "try:\n s.connect(sys.argv[1]); s.settimeout(5); print('data:', s.recv(100))\n"
        "except OSError as e: print('refused:', e.__class__.__name__)\n"
    )

    def connect_as_nobody(sock: Path) -> subprocess.CompletedProcess[str]:
        command = [*AS_NOBODY, sys.executable, "-c", probe, str(sock)]
        return subprocess.run(command, capture_output=True, text=True)

    run = mta.instance / "run"
    for name in ("bus.sock", "control.sock"):
        r = connect_as_nobody(run / name)
        assert "refused: PermissionError" in r.stdout, r
    # Second wall: even with the directory and socket opened up, SO_PEERCRED says no.
    os.chmod(run, 0o755)
    for name in ("bus.sock", "control.sock"):
        os.chmod(run / name, 0o666)
        r = connect_as_nobody(run / name)
        assert "data: b''" in r.stdout, r
    os.chmod(run, 0o700)


def test_step_pacing_advances_one_hop_per_step(mta: Mta) -> None:
    log = mta.subscribe()
    mta.simmta("ctl", "pace", "step")
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(mta.send, "bob@simmta.test")
        hops = []
        for expected_to in ("cleanup", "qmgr", "local"):
            n = len(hops)
            wait_for(
                lambda n=n: len(log.find(kind="pace", type="wait")) == n + 1,
                what=f"a hop to {expected_to} waiting",
            )
            before = len(log.find(kind="ipc", type="request"))
            waiting = [
                p
                for p in json.loads(mta.simmta("ps", "--json").stdout)["processes"]
                if p["state"] == "waiting"
            ]
            assert len(waiting) == 1, "simmta ps shows the process that waits"
            assert json.loads(mta.simmta("ctl", "step", "--json").stdout)["released"] == 1
            wait_for(
                lambda b=before: len(log.find(kind="ipc", type="request")) == b + 1, what="exactly one hop"
            )
            hops.append(log.find(kind="ipc", type="request")[-1]["data"]["to"])
            if expected_to == "cleanup":
                fut.result(timeout=20)
        assert hops == ["cleanup", "qmgr", "local"]
    wait_for(lambda: maildir_files(mta.maildir("bob")), what="delivery after the last step")
    mta.simmta("ctl", "pace", "live")
    log.close()


def test_no_events_flow_without_subscribers_but_mail_does(mta: Mta) -> None:
    mta.send()
    wait_for(lambda: maildir_files(mta.maildir("bob")), what="delivery")
    assert mta.live_status()["events"]["published"] == 0


def test_disk_events_report_the_real_calls_for_a_message(tmp_path: Path) -> None:
    """With disk_events on, each fsync, rename and link a daemon makes for a message is an
    event naming it; the files they name are the message's (lesson 9 counts them)."""
    from mtakit import FAST_CONFIG, searchable

    searchable(tmp_path)
    for on in (True, False):
        mta = Mta(tmp_path / f"disk-{on}", config=FAST_CONFIG + f"disk_events = {str(on).lower()}\n")
        try:
            log = mta.subscribe()
            wait_for(lambda log=log: log.find(kind="snapshot"), 10, "the snapshot")
            qid = mta.send(to="bob@simmta.test")

            def delivered(log: EventLog = log, qid: str = qid) -> list[dict]:
                return log.find(kind="delivery", type="delivered", qid=qid)

            # local emits "delivered" after its calls: the bus streams a process's events in order
            where = wait_for(delivered, 20, "the delivery")[0]["data"]["where"]
            mine = [e for e in log.find(kind="disk") if e["qid"] == qid]
            if not on:
                assert not log.find(kind="disk")
                continue
            calls = [(e["service"], e["type"]) for e in mine]
            assert ("cleanup", "rename") in calls and ("qmgr", "rename") in calls
            renames = {e["data"]["dst"] for e in mine if e["type"] == "rename"}
            assert {f"incoming/{qid}", f"active/{qid}"} <= renames
            fsynced = [e["data"] for e in mine if e["type"] == "fsync"]
            assert {"path": f"incoming/{qid}", "directory": False} in fsynced
            assert {"path": "incoming", "directory": True} in fsynced
            (link,) = [e["data"] for e in mine if e["type"] == "link"]
            name = link["dst"].removeprefix("new/")
            assert where.endswith(name)
            assert name in {p.name for p in maildir_files(mta.maildir("bob"))}
            assert {"path": "Maildir/new", "directory": True} in fsynced
        finally:
            mta.stop()


def test_safe_text_returns_printable_text_as_it_is_and_rewrites_the_rest() -> None:
    """The fast path (printable, short) gives what the rewriting path gives."""
    from simmta.core.events import _CTRL, safe_text

    def rewritten(s: str) -> str:
        return _CTRL.sub(lambda m: f"\\x{ord(m.group()):02x}", s).replace("\r", "\\r").replace("\n", "\\n")

    for s in (
        "plain",
        "tab\there",
        "é ü 漢字",
        "zero\u200bwidth",
        "nel\x85",
        "esc\x1b[2J",
        "cr\r\nlf",
        "del\x7f",
        "",
    ):
        assert safe_text(s) == rewritten(s), s
    assert safe_text("x" * 10, 4) == "xxxx…"


def over_the_cut(event: dict) -> list[str]:
    """The event's text and lists longer than the cut (512 characters and "…", 256 items)."""
    out = [f"{k}: {len(event[k])} chars" for k in ("qid", "sid") if len(event[k] or "") > MAX_TEXT]
    for name, value in event["data"].items():
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list) and len(value) > MAX_ITEMS:
            out.append(f"{name}: {len(value)} items")
        out += [f"{name}: {len(v)} chars" for v in items if isinstance(v, str) and len(v) > MAX_TEXT + 1]
    return out


def steal_event_channel(pid: int) -> socket.socket:
    """A daemon's event channel (its one unnamed datagram socket), as code that took the daemon
    over holds it: a copy of its descriptor through pidfd_getfd (root may)."""
    getfd = ctypes.CDLL(None, use_errno=True).syscall
    pidfd = os.pidfd_open(pid)
    try:
        for fd in sorted(map(int, os.listdir(f"/proc/{pid}/fd"))):
            mine = getfd(438, pidfd, fd, 0)  # SYS_pidfd_getfd
            if mine < 0:
                continue
            if not stat.S_ISSOCK(os.fstat(mine).st_mode):
                os.close(mine)
                continue
            sock = socket.socket(fileno=mine)
            if (sock.family, sock.type, sock.getsockname()) == (socket.AF_UNIX, socket.SOCK_DGRAM, ""):
                return sock
            sock.close()
    finally:
        os.close(pidfd)
    raise AssertionError(f"no event channel in process {pid}")


def test_no_text_on_the_stream_is_longer_than_the_cut(mta: Mta) -> None:
    """A hostile client's 10 KB command, a 5 KB subject, and a compromised daemon writing
    over-long fields on its own event channel: every event on the stream is cut (text at
    512 characters and "…", lists at 256 items); a queue ID longer than that is refused."""
    if os.geteuid() != 0:
        pytest.skip("needs root to take a daemon's event channel (pidfd_getfd)")
    log = mta.subscribe()
    with socket.create_connection((mta.host, mta.port), timeout=30) as s, s.makefile("rb") as replies:
        replies.readline()
        for line in (b"EHLO " + b"h" * 10000, b"NOOP " + b"n" * 10000, b"QUIT"):
            s.sendall(line + b"\r\n")
            replies.readline()
    (qmgr,) = mta.pids("qmgr")
    record = QueueCreated(queue="incoming", size=1, sender="s", recipients=[], origin="smtpd", subject="s")
    forged = [
        {**events.make("qmgr", SmtpCommand(line="x")), "data": {"line": "x" * 10000}},
        {**events.make("qmgr", QueueHeld(via="x")), "qid": "Q" * 10000},
        {
            **events.make("qmgr", record, "FORGED"),
            "data": {
                **msgspec.to_builtins(record),
                "sender": "a" * 3000,
                "recipients": ["r" * 1000 + "@x", *["r@x"] * 299],
                "subject": "s" * 5000,
            },
        },
    ]
    lines = [json.dumps({k: v for k, v in e.items() if k not in events.STAMPED}).encode() for e in forged]
    invalid = mta.live_status()["events"]["invalid_from_children"]
    with steal_event_channel(qmgr) as channel:
        for line in lines:  # each within a datagram's 16 KB, streamed with qmgr's next one
            channel.send(b"#1\n" + line)
    mta.send(subject="\r\n ".join(["s" * 900] * 6))  # a 5 KB subject; qmgr's events for it come after
    wait_for(lambda: maildir_files(mta.maildir("bob")), what="delivery")
    command = wait_for(lambda: log.find(kind="smtp", type="command", pid=qmgr), what="the forged command")
    (created,) = log.find(kind="queue", type="created", qid="FORGED")
    assert command[0]["data"]["line"] == "x" * MAX_TEXT + "…"
    assert created["data"]["subject"] == "s" * MAX_TEXT + "…"
    assert created["data"]["recipients"] == ["r" * MAX_TEXT + "…", *["r@x"] * (MAX_ITEMS - 1)]
    assert not log.find(kind="queue", type="held")
    assert mta.live_status()["events"]["invalid_from_children"] == invalid + 1
    assert log.find(kind="smtp", type="reply", data_line="500 5.5.0 Command line too long")
    assert [(e["kind"], e["type"], over) for e in log.events if (over := over_the_cut(e))] == []
