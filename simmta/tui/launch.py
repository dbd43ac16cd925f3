"""The ``simmta tui`` command, and plain ``simmta``: start an MTA and watch it.

- ``simmta`` (no arguments): a fresh instance in a temporary directory,
  ``simmta run`` started as a child process on free loopback ports, the TUI
  attached live; quitting stops that child (SIGTERM to its pid, nothing else).
- ``simmta tui --instance DIR``: attach to an MTA that is already running.
- ``simmta tui --replay FILE [--speed X]``: play a recording, no MTA at all.

Trust: runs as the invoking user; starts only its own child and signals only
that pid. Textual is imported only when the TUI actually opens.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simmta.cli import add_profile_option, plain
from simmta.core.errors import SimmtaError
from simmta.core.instance import Instance
from simmta.core.pyexec import python_module
from simmta.core.services import DEFAULT_PROFILE

START_TIMEOUT = 20.0


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "tui",
        parents=[parent],
        help="open the TUI (live, attached, or a replay)",
        description=plain(__doc__, slice(1, 2)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--replay", metavar="FILE", help="play a recording made by 'simmta record'")
    p.add_argument("--speed", type=float, default=1.0, help="replay speed (default 1.0)")
    p.add_argument(
        "--theme",
        choices=("dark", "light", "projector"),
        help="dark, light or projector (default: the remembered one, else dark)",
    )
    p.add_argument("--remember", action="store_true", help="make --theme the default from now on")
    p.add_argument("--screenshots", metavar="DIR", help="folder for screenshots (w / F12)")
    p.add_argument("--lab", action="store_true", help="(no --instance) start the MTA with --lab")
    p.add_argument(
        "--smtp-port",
        type=int,
        default=0,
        metavar="N",
        help="(no --instance) a fixed SMTP port; by default any free one, so that "
        "several users can each run simmta on one machine",
    )
    add_profile_option(p)
    p.set_defaults(func=main)


def spawn_mta(
    directory: Path, lab: bool = False, smtp_port: int = 0, profile: str = DEFAULT_PROFILE
) -> subprocess.Popen[bytes]:
    """Start ``simmta run`` for a fresh instance; the TUI opens while it starts."""
    log = open(directory / "simmta-run.out", "wb")  # noqa: SIM115 (the child's, kept open)
    options = [
        "--instance",
        str(directory / "instance"),
        "--smtp-port",
        str(smtp_port),
        *(["--lab"] if lab else []),
        "--profile",
        profile,
    ]
    cmd = python_module("simmta", "run", *options)
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def last_words(child: subprocess.Popen[bytes], directory: Path) -> str:
    """Why the MTA we started is gone, in one sentence ("" while it runs): the last line it
    wrote (its error message, or a traceback's last line)."""
    if child.poll() is None:
        return ""
    tail = (directory / "simmta-run.out").read_text(errors="replace").strip().splitlines()
    last = tail[-1].removeprefix("simmta: ") if tail else "no output"
    return f"simmta run exited with status {child.returncode}: {last}"


def stop_mta(child: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM to our child only (master then stops its own daemons)."""
    if child.poll() is not None:
        return
    os.kill(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()


def banner(instance: Instance) -> str:
    status = instance.status()
    smtp, mode = status.get("smtp") or {}, status.get("privilege_mode", "?")
    return (
        f"simmta: MTA in {instance.path}; smtpd on {smtp.get('host')}:{smtp.get('port')}; "
        f"privilege separation {str(mode).upper()}"
    )


def run_app(
    feed: Any, args: argparse.Namespace, instance: Path | None, on_hangup: Callable[[], None] | None = None
) -> int:
    """Run the TUI until it quits; its return code (1: the MTA it waited for never started)."""
    from simmta.tui.app import SimmtaApp  # Textual only when the UI opens

    shots = Path(args.screenshots) if args.screenshots else None
    app = SimmtaApp(feed, instance=instance, theme=args.theme, screenshot_dir=shots)

    def hang_up(signum: int, frame: Any) -> None:
        # The terminal went away (tmux kill-session, ssh drop) or someone asked us to stop.
        # The MTA we started must not outlive us: stop it first, then go.
        if on_hangup is not None:
            on_hangup()
        if signum == signal.SIGHUP:
            # No terminal to restore; Textual's writer thread can hang on the dead tty.
            os._exit(128 + signum)
        if app.is_running:
            app.exit()
        else:
            raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, hang_up) for sig in (signal.SIGHUP, signal.SIGTERM)}
    try:
        app.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return app.return_code or 0


def main(args: argparse.Namespace) -> int:
    from simmta.tui import settings
    from simmta.tui.feed import LiveFeed, ReplayFeed, load_recording

    if args.theme and args.remember:
        print(
            f"simmta: {args.theme} is now the default theme ({settings.remember_theme(args.theme)})",
            file=sys.stderr,
        )
    args.theme = args.theme or settings.default_theme()
    if args.replay:
        events, problem = load_recording(Path(args.replay))
        if problem:
            print(f"simmta: {problem}; replaying the {len(events)} events before it", file=sys.stderr)
        run_app(ReplayFeed(events, speed=args.speed, problem=problem), args, None)
        return 0
    if args.instance or os.environ.get("SIMMTA_INSTANCE"):  # attach: never a new MTA behind one's back
        instance = Instance(args.instance)
        instance.status()  # a clear error if nothing runs there
        run_app(LiveFeed(instance.bus_socket).start(), args, instance.path)
        return 0
    directory = Path(tempfile.mkdtemp(prefix="simmta-tui-"))
    directory.chmod(0o711)  # run as root, mail_owner must reach the queue directory below
    child = spawn_mta(directory, lab=args.lab, smtp_port=args.smtp_port, profile=args.profile)
    instance = Instance(directory / "instance")
    feed = LiveFeed(instance.bus_socket, wait=START_TIMEOUT, starting=lambda: last_words(child, directory))
    try:
        code = run_app(feed.start(), args, instance.path, on_hangup=lambda: stop_mta(child))
        if child.poll() is None:
            with contextlib.suppress(SimmtaError):
                print(banner(instance), file=sys.stderr)
    finally:
        stop_mta(child)
    if feed.fatal:
        print(
            f"simmta: the MTA did not start ({last_words(child, directory)}); "
            f"its output is in {directory / 'simmta-run.out'}",
            file=sys.stderr,
        )
        return code
    if problem := last_words(child, directory) if child.returncode not in (0, -15) else "":
        print(f"simmta: {problem}", file=sys.stderr)
    print(
        f"simmta: stopped the MTA; its files stay in {directory} (remove the instance with "
        f"'simmta clean --instance {directory / 'instance'}')",
        file=sys.stderr,
    )
    return 0
