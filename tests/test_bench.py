"""``simmta bench``: the statistics, the pieces it is built from, and smoke runs.

Figures are printed, never asserted: these tests check that the command works
and that what it reports is consistent (counts, matching of deliveries to
messages), not how fast anything is.
"""

import json
import math
import os
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from simmta.tools import bench, bench_load, bench_postfix, bench_stats, bench_syscalls, bench_watch

# --- statistics -----------------------------------------------------------------------------


def test_percentile_interpolates_between_ranks() -> None:
    values = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert bench_stats.percentile(values, 0) == 15.0
    assert bench_stats.percentile(values, 100) == 50.0
    assert bench_stats.percentile(values, 50) == 35.0
    assert bench_stats.percentile(values, 40) == pytest.approx(29.0)  # between 20 and 35
    assert bench_stats.percentile(list(reversed(values)), 40) == pytest.approx(29.0)


def test_percentile_agrees_with_statistics_quantiles() -> None:
    values = [float((i * 7919) % 1013) for i in range(1, 400)]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    for p in (1, 50, 95, 99):
        assert bench_stats.percentile(values, p) == pytest.approx(cuts[p - 1])


def test_percentile_edges() -> None:
    assert math.isnan(bench_stats.percentile([], 50))
    assert bench_stats.percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError):
        bench_stats.percentile([1.0], 101)


def test_summarize_and_median() -> None:
    lat = bench_stats.summarize([0.001 * i for i in range(1, 101)])
    assert lat.n == 100
    assert lat.p50 == pytest.approx(0.0505)
    assert lat.p99 == pytest.approx(0.09901)
    assert lat.max == pytest.approx(0.1)
    assert lat.as_ms()["p50"] == pytest.approx(50.5)
    empty = bench_stats.summarize([])
    assert empty.n == 0 and empty.as_ms()["p95"] is None
    assert bench_stats.median([1.0, math.nan, 3.0]) == 2.0
    assert math.isnan(bench_stats.median([math.nan]))


def test_rate_and_ratio() -> None:
    assert bench_stats.rate(100, 10.0, 12.0) == 50.0
    assert math.isnan(bench_stats.rate(0, 10.0, 12.0))
    assert math.isnan(bench_stats.rate(5, 10.0, 10.0))
    assert bench_stats.ratio(3.0, 2.0) == 1.5
    assert math.isnan(bench_stats.ratio(3.0, 0.0))
    assert math.isnan(bench_stats.ratio(math.nan, 2.0))


def test_ratios_pair_rounds_and_prefer_end_to_end() -> None:
    runs = []
    for n, (a, b, c) in enumerate([(100.0, 50.0, 200.0), (90.0, 60.0, 100.0)], start=1):
        for label, value in (("a", a), ("b", b), ("c", c)):
            r = bench.RunResult(label, n, 10, delivered=10, delivered_per_s=value)
            r.accepted_per_s = 1e6  # ignored: end to end was measured
            runs.append(r)
    pairs = {p["pair"]: p for p in bench.ratios(runs, ["a", "b", "c"])}
    assert pairs["a / b"]["by_round"] == [2.0, 1.5]
    assert pairs["a / b"]["median"] == 1.75
    assert pairs["a / c"]["by_round"] == [0.5, 0.9]
    assert pairs["b / c"]["by_round"] == [0.25, 0.6]


def test_widest_spread_of_the_rounds() -> None:
    runs = [
        bench.RunResult(label, n, 10, delivered=10, delivered_per_s=rate, cpu_ms_per_message=1.0)
        for n, (a, b) in enumerate([(100.0, 100.0), (130.0, 100.0), (90.0, 100.0)], start=1)
        for label, rate in (("a", a), ("b", b))
    ]
    assert bench.widest_spread(runs, ["a", "b"]) == pytest.approx(1.3 / 0.9)
    assert bench.widest_spread(runs[:2], ["a", "b"]) == 1.0


def test_cpu_ratio_counts_the_subscriber() -> None:
    a = bench.RunResult("a", 1, 10, cpu_ms_per_message=4.0, subscriber_cpu_ms_per_message=1.0)
    b = bench.RunResult("b", 1, 10, cpu_ms_per_message=2.0)
    [pair] = bench.ratios([a, b], ["a", "b"])
    assert pair["cpu_by_round"] == [2.5]


STRACE_SUMMARY = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 61.20    0.012000          60       200           fsync
 20.00    0.004000          20       200        10 unlinkat
  9.00    0.001800          18       100           renameat2
  5.00    0.001000          10       100           linkat
  4.80    0.000960           1       900           write
------ ----------- ----------- --------- --------- ----------------
100.00    0.019760          13      1500        10 total
"""


def test_strace_summary_per_message() -> None:
    calls = bench_syscalls.parse_summary(STRACE_SUMMARY)
    assert calls == {"fsync": 200, "unlinkat": 200, "renameat2": 100, "linkat": 100, "write": 900}
    per = bench_syscalls.per_message(calls, 100)
    assert per == {"fsync": 2.0, "rename": 1.0, "link": 1.0, "unlink": 2.0, "syscalls": 15.0}
    assert bench_syscalls.per_message(calls, 0) == {}


def test_postfix_recipe_moves_only_the_smtp_inet_line() -> None:
    master_cf = "# comment smtp inet\nsmtp      inet  n       -       y       -       -       smtpd\n"
    master_cf += "smtp      unix  -       -       y       -       -       smtp\n"
    moved = bench_postfix.SMTP_LINE.sub(f"{bench_postfix.HOST}:{bench_postfix.PORT} inet", master_cf, count=1)
    assert bench_postfix.BENCH_LINE.search(moved) and not bench_postfix.SMTP_LINE.search(moved)
    assert "smtp      unix" in moved and moved.startswith("# comment smtp inet\n")


# --- pieces ---------------------------------------------------------------------------------


def _spec(size: int = 2048, **kw: object) -> bench_load.LoadSpec:
    args: dict[str, object] = dict(
        host="127.0.0.1",
        port=1,
        messages=3,
        size=size,
        concurrency=1,
        per_connection=1,
        sender="a@localhost",
        recipient="b@localhost",
        run_id="bTEST",
    )
    args.update(kw)
    return bench_load.LoadSpec(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [300, 2048, 10_000])
def test_message_has_the_size_asked_and_needs_no_dot_stuffing(size: int) -> None:
    msg = bench_load.message_bytes(_spec(size), "bTEST.0000001")
    assert len(msg) == size
    assert msg.endswith(b"\r\n")
    lines = msg.split(b"\r\n")
    assert not any(line.startswith(b".") for line in lines)
    assert b"X-Bench-Id: bTEST.0000001\r\n" in msg


def test_maildir_watcher_matches_only_this_runs_files(tmp_path: Path) -> None:
    for sub in ("new", "cur", "tmp"):
        (tmp_path / sub).mkdir()
    (tmp_path / "new" / "old").write_bytes(b"X-Bench-Id: bTEST.0000009\r\n\r\nbody\r\n")
    watcher = bench_watch.MaildirWatcher(tmp_path, "bTEST", time.monotonic() + 30)
    spec = _spec()
    (tmp_path / "new" / "m1").write_bytes(b"Received: x\n" + bench_load.message_bytes(spec, "bTEST.0000001"))
    (tmp_path / "cur" / "m2:2,S").write_bytes(bench_load.message_bytes(spec, "bTEST.0000002"))
    (tmp_path / "new" / "other").write_bytes(bench_load.message_bytes(spec, "bOTHER.0000001"))
    (tmp_path / "new" / "plain").write_bytes(b"Subject: hi\r\n\r\nX-Bench-Id: bTEST.0000003\r\n")
    watcher.scan()
    assert watcher.delivered == {}  # only listed while the load runs
    watcher.start_matching()
    watcher.scan()
    assert sorted(watcher.delivered) == ["bTEST.0000001", "bTEST.0000002"]
    # The same message moving new/ -> cur/ is not a second delivery.
    os.rename(tmp_path / "new" / "m1", tmp_path / "cur" / "m1:2,S")
    watcher.scan()
    assert len(watcher.delivered) == 2 and watcher.duplicates == 0
    assert watcher.remove_delivered() == 1  # m1 moved after it was noted
    assert (tmp_path / "new" / "other").exists() and (tmp_path / "new" / "old").exists()


def test_proc_tree_counts_children(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        tree = bench_stats.ProcTree(os.getpid())
        assert child.pid in {st.pid for st in tree.members()}
        assert tree.cpu_seconds() > 0
        assert tree.memory_bytes() > 0
    finally:
        child.communicate(b"", timeout=30)
    assert bench_stats.ProcTree(child.pid).members() == []


@pytest.mark.parametrize("target", ["8.8.8.8:25", "10.0.0.1:2525", "127.0.0.1", "127.0.0.1:x"])
def test_target_must_be_a_loopback_host_and_port(target: str) -> None:
    with pytest.raises(Exception, match=r"loopback|HOST:PORT"):
        bench._loopback_target(target)


def test_loopback_targets_are_accepted() -> None:
    assert bench._loopback_target("127.0.0.1:2626") == ("127.0.0.1", 2626)
    assert bench._loopback_target("[::1]:25") == ("::1", 25)


# --- smoke runs -----------------------------------------------------------------------------


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the sink did not say its port in time"
    return proc.stdout.readline()


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """The aiosmtpd baseline server (bench_sink) in a child process, on a free port."""
    maildir = tmp_path / "Maildir"
    proc = subprocess.Popen(
        [sys.executable, "-m", "simmta.tools.bench_sink", "--maildir", str(maildir)],
        stdout=subprocess.PIPE,
    )
    try:
        port = int(_read_line(proc, 30))
        yield port, maildir
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def _bench(*argv: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "simmta", "bench", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    print(done.stdout, done.stderr)  # the figures, for whoever runs pytest -s
    return done


def test_bench_against_a_stand_in_server(sink: tuple[int, Path], tmp_path: Path) -> None:
    port, maildir = sink
    out = tmp_path / "bench.json"
    done = _bench(
        "--target",
        f"127.0.0.1:{port}",
        "--maildir",
        str(maildir),
        "-n",
        "60",
        "-c",
        "4",
        "-m",
        "3",
        "--label",
        "sink",
        "--rounds",
        "2",
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "each run" in done.stdout and "medians per configuration" in done.stdout
    figures = json.loads(out.read_text())
    assert [r["label"] for r in figures["runs"]] == ["sink", "sink"]
    for run in figures["runs"]:
        assert run["sent"] == run["accepted"] == run["delivered"] == 60
        assert run["errors"] == {} and run["duplicates"] == 0
        assert run["accept_latency_ms"]["n"] == run["delivery_latency_ms"]["n"] == 60
        assert run["cpu_ms_per_message"] is not None  # the sink's process was found
        assert run["peak_memory_mb"] is not None
    assert list((maildir / "new").iterdir()) == []  # the bench's messages were removed
    assert "sink" in figures["medians"]


@pytest.mark.skipif(not bench_syscalls.available(), reason="strace is not installed")
def test_bench_counts_the_servers_syscalls(sink: tuple[int, Path], tmp_path: Path) -> None:
    port, maildir = sink
    out = tmp_path / "bench.json"
    done = _bench(
        "--target",
        f"127.0.0.1:{port}",
        "--maildir",
        str(maildir),
        "-n",
        "20",
        "-c",
        "2",
        "--syscalls",
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    [run] = json.loads(out.read_text())["runs"]
    # The sink writes each message to tmp/, fsyncs it and renames it into new/.
    assert run["syscalls_per_message"]["fsync"] >= 1
    assert run["syscalls_per_message"]["rename"] >= 1
    assert "fsync" in done.stdout


def test_bench_counts_refusals_as_errors(sink: tuple[int, Path], tmp_path: Path) -> None:
    port, _ = sink
    out = tmp_path / "bench.json"
    done = _bench(
        "--target", f"127.0.0.1:{port}", "--to", "<broken", "-n", "5", "-c", "2", "--json", str(out)
    )
    assert done.returncode == 0, done.stderr
    run = json.loads(out.read_text())["runs"][0]
    assert run["accepted"] == 0 and sum(run["errors"].values()) == 5
    assert run["delivered"] is None  # no --maildir: end to end not measured


def test_bench_refuses_a_remote_target() -> None:
    done = _bench("--target", "192.0.2.1:25", "-n", "1")
    assert done.returncode != 0
    assert "loopback" in done.stderr


def _simmta_built() -> bool:
    return (Path(__file__).parents[1] / "simmta" / "tools" / "run.py").exists()


@pytest.mark.slow
@pytest.mark.skipif(not _simmta_built(), reason="'simmta run' is not built yet")
def test_bench_smoke_against_simmta(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = _bench("--compare", "--rounds", "1", "-n", "100", "-c", "5", "--json", str(out))
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    runs = {r["label"]: r for r in figures["runs"]}
    assert set(runs) == {bench.SIMMTA, bench.SIMMTA_NO_EVENTS}
    for run in runs.values():
        assert run["accepted"] == run["delivered"] == 100
        assert run["cold_start_s"] is not None
        assert run["cpu_ms_per_message"] is not None
    assert runs[bench.SIMMTA]["events_seen"]  # the subscriber read the bus
    if bench_syscalls.available():  # the untimed strace run: the durability simmta promises
        for run in runs.values():
            # the queue file and incoming/ before the 250, the Maildir file and new/ before "delivered"
            assert run["syscalls_per_message"]["fsync"] >= 4
            assert run["syscalls_per_message"]["link"] >= 1
    assert figures["ratios"][0]["pair"] == f"{bench.SIMMTA} / {bench.SIMMTA_NO_EVENTS}"


def test_bench_does_not_take_an_instance() -> None:
    done = _bench("--instance", "/nonexistent", "-n", "1")
    assert done.returncode == 2
    assert "--target" in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(not _simmta_built(), reason="'simmta run' is not built yet")
def test_bench_cold_start(tmp_path: Path) -> None:
    out = tmp_path / "cold.json"
    done = _bench("--cold-starts", "2", "--json", str(out))
    assert done.returncode == 0, done.stderr
    times = json.loads(out.read_text())["cold_start_s"]
    assert len(times) == 2 and all(t > 0 for t in times)


@pytest.mark.slow
@pytest.mark.skipif(not _simmta_built(), reason="'simmta run' is not built yet")
def test_bench_backlog(tmp_path: Path) -> None:
    out = tmp_path / "backlog.json"
    done = _bench("--backlog", "-n", "40", "-c", "4", "--json", str(out))
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())["backlog"]
    assert figures["accepted"] == figures["delivered"] == 40
    assert figures["lost"] == 0
    assert figures["queue_tool_listed"] == 40  # all of them were waiting in the queue


def test_the_subscriber_counts_the_cpu_of_reading_events_not_of_starting(tmp_path: Path) -> None:
    """Its imports (~0.15 s of CPU) come before the load and are no event's cost: over a
    500-message run they would read as 0.3 ms per message. It counts from "ready" on."""
    import resource
    import socket

    path = tmp_path / "bus.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)
        sub = subprocess.Popen(
            [sys.executable, "-m", "simmta.tools.bench_targets", str(path)], stdout=subprocess.PIPE
        )
        conn, _ = server.accept()
        assert sub.stdout is not None and sub.stdout.readline() == b"ready\n"
        conn.sendall(b"not an event\n" * 3)
        conn.close()  # the end of the stream: it says what it read
        seen, cpu = sub.stdout.read().split()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        assert sub.wait(30) == 0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # (it is the child reaped in between)
        sub.stdout.close()
    total = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    assert int(seen) == 3 and float(cpu) < total / 2  # its start-up is most of its CPU here
