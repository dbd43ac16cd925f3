"""``simmta trilogy``: Sendmail-, qmail- and Postfix-style MTAs at once, side by side.

Starts one instance per profile (with the compromise lab on, loopback control
only) on free loopback ports, opens the trilogy view (simmta.tui.trilogy),
and stops all three when it closes, or when the terminal goes away.

Trust: runs as the invoking user; starts and stops only its own masters.
"""

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from simmta.core.errors import SimmtaError
from simmta.core.instance import Instance
from simmta.core.services import PROFILES

START_TIMEOUT = 60.0
ORDER = ("sendmail", "qmail", "postfix")  # the order of the trilogy


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "trilogy",
        parents=[parent],
        help="the three architectures side by side, the same mail, the blast radius",
    )
    p.add_argument("--dir", metavar="DIR", help="where the three instances go (default: a new temp dir)")
    p.set_defaults(func=cmd_trilogy)


def cmd_trilogy(args: argparse.Namespace) -> int:
    from simmta.tui.launch import last_words, spawn_mta, stop_mta

    assert set(ORDER) == set(PROFILES)
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="simmta-trilogy-"))
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o711)  # as root, each profile's uids must reach its queue below
    children = {}
    for p in ORDER:
        (base / p).mkdir(exist_ok=True)
        (base / p).chmod(0o711)
        children[p] = spawn_mta(base / p, lab=True, profile=p)

    def stop_all() -> None:
        for child in children.values():
            stop_mta(child)

    def hang_up(signum: int, frame: Any) -> None:  # the terminal went away: the MTAs go too
        stop_all()
        # No terminal to restore, and Textual's writer can hang on the dead tty (see
        # simmta.tui.launch): leave at once rather than raise into the running app.
        os._exit(128 + signum)

    previous = {s: signal.signal(s, hang_up) for s in (signal.SIGHUP, signal.SIGTERM)}
    try:
        deadline = time.monotonic() + START_TIMEOUT
        for p, child in children.items():
            while True:
                try:
                    Instance(base / p / "instance").status()
                    break
                except SimmtaError:
                    if child.poll() is not None or time.monotonic() > deadline:
                        raise SimmtaError(
                            f"the {p} MTA did not start: {last_words(child, base / p) or 'timed out'}"
                        ) from None
                    time.sleep(0.05)
        from simmta.tui.trilogy import TrilogyApp, members

        TrilogyApp(members({p: base / p / "instance" for p in ORDER})).run()
    finally:
        stop_all()
        for s, h in previous.items():
            signal.signal(s, h)
    print(f"simmta: stopped the three MTAs; their files stay in {base}", file=sys.stderr)
    return 0
