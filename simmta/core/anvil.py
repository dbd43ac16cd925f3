"""Per-client connection counts across smtpd processes, in place of Postfix's anvil(8).

Each smtpd process serves one session, so a count of a client's concurrent
sessions must be shared between processes. Postfix asks its anvil server;
simmta uses lock files instead: ``queue/anvil/<client>.<n>`` for n below
smtpd_client_connection_count_limit. A session takes the first slot whose
exclusive flock it can get and keeps the descriptor until it ends; the
kernel releases the lock when the process dies, so a killed smtpd never
leaks a slot. A client holding every slot gets ``421 4.7.0``. The count is
approximate in one race (a slot file unlinked while another process opens
it), as anvil's is approximate across restarts; what it bounds is one
client's share of the smtpd process limit, not memory (the process limit
does that).

Trust: the client's address comes from the kernel (getpeername), and only
its text form names a file: an IPv4 or IPv6 address, checked by ipaddress.
"""

import contextlib
import fcntl
import ipaddress
import os
from pathlib import Path


class Slot:
    """One held slot; ``release()`` frees it (idempotent)."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = path, fd

    def release(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # while locked: the directory does not grow with clients
            os.close(self.fd)
            self.fd = -1


def take(directory: Path, client: str, limit: int) -> Slot | None:
    """A slot for one more session of ``client``, or None if it has ``limit`` already."""
    name = str(ipaddress.ip_address(client))
    for n in range(limit):
        path = directory / f"{name}.{n}"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return Slot(path, fd)
    return None
