"""Watchers ``simmta bench`` runs beside the load: Maildir deliveries and server memory.

``MaildirWatcher`` polls DIR/new and DIR/cur, reads the header of each new file
for its ``X-Bench-Id`` and notes when it was delivered: the file's ctime, which
the move into new/ sets (link or rename: the moment the message became visible
to a reader), so the figure does not depend on how often the watcher polls. The kernel
stamps files from its coarse clock, so delivery latencies are good to one
clock tick (4 ms at HZ=250), in either direction.
``MemorySampler`` samples a process tree's memory and keeps the peak.

Both are threads that stop when asked or at their deadline, whichever is first.

Trust: reads files the server under test wrote; only the header block is read
and only one header is looked for.
"""

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from simmta.tools.bench_stats import CLK_TCK, ProcTree, process_name

HEADER_BYTES = 4096
BENCH_HEADER = b"\nx-bench-id:"


def bench_id_of(path: Path) -> str | None:
    """The X-Bench-Id of a delivered message, or None (not ours, or unreadable)."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError:
        return None
    head = head.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].replace(b"\r\n", b"\n")
    at = head.lower().find(BENCH_HEADER)
    if at < 0:
        return None
    value = head[at + len(BENCH_HEADER) :].split(b"\n", 1)[0]
    return value.strip().decode("ascii", "replace")


def _every(work: Callable[[], None], interval: float, deadline: float, halt: threading.Event) -> None:
    """Call ``work`` every ``interval`` seconds until halted or the deadline, but never
    spend more than a tenth of the time in it: listing a Maildir of 50,000 files or
    reading /proc on a busy machine must not take CPU from the server under test."""
    while not halt.is_set() and (start := time.monotonic()) < deadline:
        work()
        halt.wait(max(interval, 9 * (time.monotonic() - start)))


class MaildirWatcher(threading.Thread):
    """Notes deliveries of this run's messages (ids starting with ``run_id``) into a Maildir.

    While the load runs, the watcher only lists new file names (cheap), so as
    not to take CPU and the GIL from the load generator; once ``wait_for`` is
    called it reads their headers, then keeps matching as files arrive.
    """

    def __init__(
        self,
        maildir: Path,
        run_id: str,
        deadline: float,
        on_progress: Callable[[int], None] = lambda n: None,
        interval: float = 0.05,
    ):
        super().__init__(name="bench-maildir", daemon=True)
        self.maildir = maildir
        self.run_id = run_id
        self.deadline = deadline  # time.monotonic() after which the watcher gives up
        self.on_progress = on_progress
        self.interval = interval
        self.delivered: dict[str, float] = {}  # bench id -> wall-clock delivery time
        self.paths: list[Path] = []  # this run's files, to clean up after it
        self.duplicates = 0
        self._halt = threading.Event()
        self._matching = threading.Event()
        self._seen = self._names()  # files already there belong to earlier runs
        self._names_before = len(self._seen)
        self._pending: dict[str, Path] = {}  # listed, header not read yet

    def _names(self) -> set[str]:
        names: set[str] = set()
        for sub in ("new", "cur"):
            with contextlib.suppress(FileNotFoundError):
                names.update(e.name.split(":", 1)[0] for e in os.scandir(self.maildir / sub))
        return names

    def scan(self) -> None:
        """List new files; read their headers too once matching has started."""
        for sub in ("new", "cur"):
            try:
                entries = list(os.scandir(self.maildir / sub))
            except FileNotFoundError:
                continue
            for entry in entries:
                key = entry.name.split(":", 1)[0]  # the unique part: same in new/ and cur/
                if key not in self._seen:
                    self._seen.add(key)
                    self._pending[key] = Path(entry.path)
        if self._matching.is_set():
            self._match()
            self.on_progress(len(self.delivered))
        else:
            self.on_progress(len(self._seen) - self._names_before)

    def _match(self) -> None:
        for key, path in list(self._pending.items()):
            del self._pending[key]
            try:
                ctime = path.stat().st_ctime
            except FileNotFoundError:  # moved new/ -> cur/ meanwhile: listed again next scan
                self._seen.discard(key)
                continue
            ident = bench_id_of(path)
            if ident is None or not ident.startswith(self.run_id):
                continue
            if ident in self.delivered:
                self.duplicates += 1
                continue
            self.delivered[ident] = ctime
            self.paths.append(path)

    def start_matching(self) -> None:
        self._matching.set()

    def wait_for(self, count: int, deadline: float, idle: float) -> bool:
        """Wait until ``count`` deliveries, the deadline, or ``idle`` seconds without one."""
        self.start_matching()
        last_count, last_change = -1, time.monotonic()
        while (now := time.monotonic()) < deadline:
            n = len(self.delivered)
            if n >= count:
                return True
            if n != last_count:
                last_count, last_change = n, now
            elif now - last_change > idle:
                return False
            self._halt.wait(self.interval)
        return len(self.delivered) >= count

    def run(self) -> None:
        _every(self.scan, self.interval, self.deadline, self._halt)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)
        self.start_matching()
        self.scan()

    def remove_delivered(self) -> int:
        """Delete this run's messages (and only them) from the Maildir; how many went."""
        removed = 0
        for path in self.paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
        return removed


class TreeSampler(threading.Thread):
    """Samples a process tree: its memory (PSS sum), open files and processes over time,
    the peak of its memory, and CPU per process name.

    The per-name CPU is each process's own time (utime + stime) from the first
    to the last sample that saw it: a process's last interval before it exits
    is missed, so the breakdown is approximate and sums to a little less than
    the tree's total (which ``ProcTree.cpu_seconds`` measures exactly).
    """

    def __init__(self, tree: ProcTree, deadline: float, interval: float = 0.2):
        super().__init__(name="bench-sampler", daemon=True)
        self.tree = tree
        self.deadline = deadline
        self.interval = interval
        self.peak = 0
        self.timeline: list[tuple[float, int, int, int]] = []  # (time, memory, fds, processes)
        self._first: dict[int, int] = {}  # pid -> own ticks when first seen
        self._last: dict[int, int] = {}
        self._names: dict[int, str] = {}
        self._halt = threading.Event()
        for st in tree.members():  # processes already running: count from now on
            self._first[st.pid] = self._last[st.pid] = st.own_ticks

    def sample(self) -> None:
        members = self.tree.members()
        for st in members:
            self._first.setdefault(st.pid, 0)  # born since the start: all of its time
            self._last[st.pid] = st.own_ticks
            if st.pid not in self._names:
                self._names[st.pid] = process_name(st.pid)
        memory, fds = self.tree.memory_bytes(members), self.tree.open_files(members)
        self.timeline.append((time.time(), memory, fds, len(members)))
        self.peak = max(self.peak, memory)

    def cpu_by_name(self) -> dict[str, tuple[float, int]]:
        """name -> (CPU seconds, processes seen), largest first."""
        out: dict[str, tuple[float, int]] = {}
        for pid, last in self._last.items():
            name = self._names.get(pid, "?")
            seconds, count = out.get(name, (0.0, 0))
            out[name] = (seconds + (last - self._first[pid]) / CLK_TCK, count + 1)
        return dict(sorted(out.items(), key=lambda kv: -kv[1][0]))

    def run(self) -> None:
        _every(self.sample, self.interval, self.deadline, self._halt)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)
        self.sample()
