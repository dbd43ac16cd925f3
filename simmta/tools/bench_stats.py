"""Figures for ``simmta bench``: percentiles, rates, and what a server process tree costs.

``summarize`` turns latencies into p50/p95/p99; ``ProcTree`` reads /proc to add
up the CPU seconds and the resident memory of a server's processes (its root
pid and every descendant, including children that came and went: a reaped
child's time lands in its parent's cutime/cstime); ``find_listener`` finds the
process that listens on a TCP port, so ``--target`` can account for any server.

Trust: the benchmark's own code; it only reads /proc and never signals anyone.
A process it may not read (another user's, without root) is left out and the
figure is marked as partial rather than guessed.
"""

import contextlib
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PROC = Path("/proc")


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100), interpolating linearly between ranks (numpy's default).

    ``values`` need not be sorted; an empty sequence gives NaN.
    """
    if not 0 <= p <= 100:
        raise ValueError("a percentile is between 0 and 100")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    """The median of the finite values; NaN when there are none."""
    finite = [v for v in values if not math.isnan(v)]
    return percentile(finite, 50) if finite else math.nan


@dataclass(frozen=True)
class Latency:
    """Percentiles of one latency sample, in seconds."""

    n: int
    p50: float
    p95: float
    p99: float
    max: float

    def as_ms(self) -> dict[str, float | int | None]:
        """The figures in milliseconds for JSON (NaN becomes null)."""
        return {"n": self.n, **{k: _ms(getattr(self, k)) for k in ("p50", "p95", "p99", "max")}}


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000, 3)


def summarize(values: Sequence[float]) -> Latency:
    return Latency(
        len(values),
        percentile(values, 50),
        percentile(values, 95),
        percentile(values, 99),
        max(values) if values else math.nan,
    )


def rate(count: int, start: float, end: float) -> float:
    """Events per second between two instants; NaN when nothing happened or no time passed."""
    if count <= 0 or end <= start:
        return math.nan
    return count / (end - start)


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


# --- processes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    own_ticks: int  # utime + stime
    cpu_ticks: int  # utime + stime + cutime + cstime (reaped children included)


def _read_stat(pid: int) -> ProcStat | None:
    try:
        raw = (PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    # fields[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17.
    own = int(fields[11]) + int(fields[12])
    return ProcStat(pid, int(fields[1]), own, own + int(fields[13]) + int(fields[14]))


def process_name(pid: int) -> str:
    """A short name for a server process: the module of ``python -m a.b.name``, else comm."""
    try:
        argv = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
        if b"-m" in argv[:-1]:
            module = argv[argv.index(b"-m") + 1].decode(errors="replace")
            return module.rsplit(".", 1)[-1] if module != "simmta" else "master"
        return (PROC / str(pid) / "comm").read_text().strip()
    except (OSError, IndexError):
        return "?"


def _all_stats() -> list[ProcStat]:
    stats = []
    for entry in os.scandir(PROC):
        if entry.name.isdigit() and (st := _read_stat(int(entry.name))) is not None:
            stats.append(st)
    return stats


def _memory_bytes(pid: int) -> int | None:
    """Proportional set size (shared pages divided among their sharers), else RSS."""
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    try:
        return int((PROC / str(pid) / "statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


class ProcTree:
    """A server's process tree: its root pid and every descendant alive at each reading."""

    def __init__(self, root_pid: int):
        self.root_pid = root_pid

    def members(self) -> list[ProcStat]:
        stats = _all_stats()
        children: dict[int, list[ProcStat]] = {}
        root = None
        for st in stats:
            children.setdefault(st.ppid, []).append(st)
            if st.pid == self.root_pid:
                root = st
        if root is None:
            return []
        tree, todo = [], [root]
        while todo:
            st = todo.pop()
            tree.append(st)
            todo.extend(children.get(st.pid, ()))
        return tree

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) used so far by the tree, reaped children included."""
        return sum(st.cpu_ticks for st in self.members()) / CLK_TCK

    def open_files(self, members: list[ProcStat] | None = None) -> int:
        """File descriptors held by the tree now (a leak shows as growth across runs)."""
        total = 0
        for st in self.members() if members is None else members:
            with contextlib.suppress(OSError):
                total += len(os.listdir(PROC / str(st.pid) / "fd"))
        return total

    def memory_bytes(self, members: list[ProcStat] | None = None) -> int:
        """Memory of the tree now: the sum of PSS, so pages shared by forked
        daemons count once (a sum of RSS would count them in every process)."""
        members = self.members() if members is None else members
        return sum(m for st in members if (m := _memory_bytes(st.pid)) is not None)


def find_listener(port: int) -> int | None:
    """The pid of the topmost process holding a TCP socket listening on the port.

    Postfix's master and its smtpd children all hold the listening socket: the
    one whose parent holds none of it is the server's root. None when the socket
    is not found or its holders cannot be read (another user's, without root).
    """
    inodes = set(_listening_inodes(port))
    if not inodes:
        return None
    holders: set[int] = set()
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.scandir(PROC / entry.name / "fd")
            for fd in fds:
                link = os.readlink(fd.path)
                if link.startswith("socket:[") and int(link[8:-1]) in inodes:
                    holders.add(int(entry.name))
                    break
        except OSError:
            continue
    parents = {pid: st.ppid for pid in holders if (st := _read_stat(pid)) is not None}
    roots = sorted(pid for pid, ppid in parents.items() if ppid not in holders)
    return roots[0] if roots else None


def _listening_inodes(port: int) -> Iterable[int]:
    """Inodes of sockets in state LISTEN on the port (IPv4 and IPv6 tables)."""
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local, state, inode = cols[1], cols[3], int(cols[9])
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                yield inode
