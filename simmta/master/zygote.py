"""master's spawner: forks daemons from a process that has already loaded them.

Python needs about 100 ms of CPU to start and import a daemon; a Postfix daemon
starts in about a millisecond, and Postfix replaces each one after max_use
requests. To keep that design affordable, master starts this helper once. It
imports every daemon module and then, per request, forks twice: the grandchild
becomes the daemon and, because master is a child subreaper
(PR_SET_CHILD_SUBREAPER), it is re-parented to master at once. So every daemon
is master's child, as in Postfix: master reaps it and ``ps`` shows it there.
The daemon's process title says which daemon it is.

Protocol, over a SOCK_SEQPACKET socketpair: master sends one packet, JSON
``{"command": NAME, "spec": {...}}`` with SCM_RIGHTS descriptors (listen,
status, log, event/control channel); the answer is
``{"pid": N}`` or ``{"error": TEXT}``.

Trust: talks to master only, over an inherited socketpair.
"""

import contextlib
import ctypes
import gc
import importlib
import json
import os
import signal
import socket
import sys
from typing import Any

from simmta.core import names, skeleton

TITLE_ROOM = 120  # master starts us with this much argv space for process titles
_PR_SET_NAME = 15


def set_title(title: str) -> None:
    """Rewrite /proc/self/cmdline (argv memory) and comm, as Postfix's set_proctitle does."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_NAME, title.split()[0].rsplit(".", 1)[-1].encode()[:15], 0, 0, 0)
    # The kernel shows the argv area (arg_start..arg_end, fields 48-49 of
    # /proc/self/stat) as cmdline; overwrite it in place, NUL-padded.
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])
    room = end - start
    if room <= 1:
        return
    data = title.encode()[: room - 1]
    ctypes.memmove(start, data + b"\0" * (room - len(data)), room)


def become_daemon(req: dict[str, Any], fds: list[int]) -> None:
    """In the grandchild: wire the descriptors and run the daemon (never returns)."""
    try:
        spec = req["spec"]
        listen, status, log = fds[0], fds[1], fds[2]
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        spec["fds"] = {"listen": listen, "status": status, "channel": fds[3], "order": fds[4]}
        command = req["command"]
        set_title(f"simmta.daemons.{command} {spec['service']['name']} (forked for master)")
        module = importlib.import_module(f"simmta.daemons.{command}")
        skeleton.run(module.DAEMON, spec)
    finally:
        os._exit(1)


def serve(sock: socket.socket) -> None:
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, 8)
        except InterruptedError:
            continue
        if not msg:
            os._exit(0)  # master has gone
        try:
            req = json.loads(msg)
            if req.get("command") not in names.DAEMONS or len(fds) != 5:
                raise ValueError("bad spawn request")
        except ValueError as e:
            for fd in fds:
                os.close(fd)
            sock.send(json.dumps({"error": str(e)}).encode())
            continue
        r, w = os.pipe()
        first = os.fork()
        if first == 0:
            os.close(r)
            second = os.fork()
            if second == 0:
                os.close(w)
                sock.close()
                become_daemon(req, fds)
            os.write(w, str(second).encode())
            os._exit(0)  # orphan the daemon: the subreaper (master) adopts it
        os.close(w)
        answer = os.read(r, 32)
        os.close(r)
        os.waitpid(first, 0)
        for fd in fds:
            os.close(fd)
        sock.send(json.dumps({"pid": int(answer)} if answer else {"error": "fork failed"}).encode())


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for command in names.DAEMONS:  # everything a daemon needs, loaded once, shared copy-on-write
        importlib.import_module(f"simmta.daemons.{command}")
    gc.freeze()  # out of the collector's sight: a daemon's collections do not copy these pages
    sock = socket.socket(fileno=int(sys.argv[1]))
    with contextlib.suppress(KeyboardInterrupt):
        serve(sock)


if __name__ == "__main__":
    main()
