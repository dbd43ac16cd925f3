"""The ``simmta serve`` command: the TUI for a classroom's browsers.

    simmta serve [--instance DIR] [--port N] [--bind ADDR] [--max-sessions N]

With ``--instance`` it serves an MTA that is already running; without, it
starts a fresh one on free loopback ports (as plain ``simmta`` does) and
stops it on exit. It prints two links: the presenter's (acts on the MTA) and
the viewers' (watch only). It listens on 127.0.0.1 unless ``--bind`` says
otherwise, and refuses to run as root.

Trust: runs as the invoking user, never root; browsers are untrusted (see
simmta.web.server). aiohttp and textual-serve are imported only here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from simmta.cli import plain
from simmta.core.errors import SimmtaError
from simmta.core.instance import Instance

START_TIMEOUT = 20.0


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "serve",
        parents=[parent],
        help="serve the TUI to browsers (presenter and viewers)",
        description=plain(__doc__, slice(2, 3)),
    )
    p.add_argument("--port", type=int, default=0, help="TCP port (default: a free one, printed)")
    p.add_argument(
        "--bind",
        default="127.0.0.1",
        metavar="ADDR",
        help="address to listen on (default 127.0.0.1; any other opens it to a network: a warning)",
    )
    p.add_argument(
        "--max-sessions",
        type=int,
        default=20,
        metavar="N",
        help="browser sessions at once (each is one app process, ~60 MB; default 20)",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name browsers use for this machine, besides its addresses and hostname",
    )
    p.add_argument("--theme", choices=("dark", "light", "projector"), default="projector")
    p.add_argument("--screenshots", metavar="DIR", help="folder for the presenter's screenshots (w / F12)")
    p.add_argument("--lab", action="store_true", help="(no --instance) start the MTA with --lab")
    p.set_defaults(func=main)


def check(args: argparse.Namespace) -> None:
    if os.geteuid() == 0:
        raise SimmtaError(
            "serve does not run as root (browsers would drive a root process): "
            "run it as an ordinary user, with --instance for an MTA that user owns"
        )
    try:
        address = ipaddress.ip_address(args.bind)
    except ValueError:
        raise SimmtaError(f"--bind {args.bind}: not an IP address") from None
    if not address.is_loopback:
        print(
            f"simmta serve: WARNING: listening on {args.bind}, not loopback, over plain HTTP: anyone on "
            "that network who sees a link can use it (the token is in it, unencrypted); the presenter "
            "link drives the MTA. Share the viewer link only, on a network you trust.",
            file=sys.stderr,
            flush=True,
        )
    if not 1 <= args.max_sessions <= 200:
        raise SimmtaError("--max-sessions: between 1 and 200")


async def subscribe(fanout: Any, give_up: Any) -> None:
    """The one bus subscription, retried while the MTA is starting."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            await fanout.start()
            return
        except OSError as e:
            why = give_up()
            if why or time.monotonic() > deadline:
                raise SimmtaError(why or str(e)) from None
            await asyncio.sleep(0.05)


def announce(links: dict[str, str], port: int, server: Any) -> None:
    print(
        f"simmta serve: presenter link (keep it to yourself): {links['presenter']}\n"
        f"simmta serve: viewer link (share this one):         {links['viewer']}\n"
        f"simmta serve: at most {server.settings.max_sessions} sessions; Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )


def main(args: argparse.Namespace) -> int:
    check(args)
    from simmta.tui import launch
    from simmta.web.fanout import Fanout
    from simmta.web.server import Settings, serve

    child = None
    if args.instance:
        instance = Instance(args.instance)
        instance.status()  # a clear error if nothing runs there
        give_up: Any = lambda: ""  # noqa: E731
    else:
        directory = Path(tempfile.mkdtemp(prefix="simmta-serve-"))
        child = launch.spawn_mta(directory, lab=args.lab)
        instance = Instance(directory / "instance")
        give_up = lambda: launch.last_words(child, directory)  # noqa: E731
    settings = Settings(
        instance=instance.path,
        host=args.bind,
        port=args.port,
        max_sessions=args.max_sessions,
        theme=args.theme,
        screenshots=Path(args.screenshots).absolute() if args.screenshots else None,
        allow_hosts=tuple(args.allow_host),
    )
    fanout = Fanout(instance.bus_socket)

    async def run() -> str:
        await subscribe(fanout, give_up)
        return await serve(settings, fanout, announce)

    try:
        asyncio.run(run())
    except OSError as e:
        raise SimmtaError(f"cannot listen on {args.bind}:{args.port}: {e.strerror or e}") from None
    finally:
        if child is not None:
            launch.stop_mta(child)
            with contextlib.suppress(NameError):
                print(f"simmta serve: stopped the MTA; its files stay in {directory}", file=sys.stderr)
    return 0
