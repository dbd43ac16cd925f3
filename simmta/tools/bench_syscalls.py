"""What a server asks of the kernel per message: ``strace -c -f`` on its whole process tree.

``Strace`` attaches strace to every process of a server's tree (``-p`` each,
``-f`` so that the children they fork later are counted too), and on ``stop``
detaches it and reads its summary: calls per system call. The bench divides
them by the messages delivered and prints the fsyncs, renames and links per
message beside the ratios, so a comparison says what each server does for
its durability. Tracing slows a server several times over, so these counts
come from an extra run that is never timed.

Trust: the bench's own code; strace runs as the bench's user and can trace
only what that user may (root: everything; otherwise ``--syscalls`` fails
with strace's own message).
"""

import contextlib
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

from simmta.core.errors import SimmtaError

ATTACH_TIMEOUT = 10.0
# The figures printed, each the sum of the calls that do it.
GROUPS = {
    "fsync": ("fsync", "fdatasync", "sync_file_range"),
    "rename": ("rename", "renameat", "renameat2"),
    "link": ("link", "linkat"),
    "unlink": ("unlink", "unlinkat"),
}


def available() -> bool:
    return shutil.which("strace") is not None


def parse_summary(text: str) -> dict[str, int]:
    """Calls per system call from ``strace -c`` output (the ``total`` line left out)."""
    calls: dict[str, int] = {}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) >= 5 and cols[3].isdigit() and cols[-1] != "total":
            calls[cols[-1]] = calls.get(cols[-1], 0) + int(cols[3])
    return calls


def per_message(calls: dict[str, int], messages: int) -> dict[str, float]:
    """The groups of ``GROUPS`` and all system calls together, per message."""
    if messages <= 0:
        return {}
    out = {name: sum(calls.get(c, 0) for c in members) / messages for name, members in GROUPS.items()}
    out["syscalls"] = sum(calls.values()) / messages
    return out


class Strace:
    """strace -c -f on a set of processes, from ``start`` to ``stop``."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.out = Path(tempfile.mkstemp(prefix="simmta-bench-strace-")[1])
        self.proc: subprocess.Popen[str] | None = None
        self._attached: set[int] = set()
        self._ready = threading.Event()
        self._errors: list[str] = []

    def start(self) -> None:
        argv = ["strace", "-c", "-f", "-o", str(self.out)]
        for pid in self.pids:
            argv += ["-p", str(pid)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read_stderr, name="bench-strace", daemon=True).start()
        if not self._ready.wait(ATTACH_TIMEOUT):
            self.stop()
            raise SimmtaError("strace did not attach: " + " ".join(self._errors[-3:]))

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            words = line.split()
            if len(words) >= 4 and words[:2] == ["strace:", "Process"] and words[3] == "attached":
                self._attached.add(int(words[2]))
                if self._attached >= set(self.pids):
                    self._ready.set()
            else:
                self._errors.append(line.strip())

    def stop(self) -> dict[str, int]:
        """Detach (SIGINT, as ^C would) and return the calls counted."""
        if self.proc is None:
            return {}
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        try:
            return parse_summary(self.out.read_text())
        finally:
            self.out.unlink(missing_ok=True)
