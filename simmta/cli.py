"""The ``simmta`` command: one sub-command per tool, each registered by its module.

With no sub-command, ``simmta`` starts a fresh MTA on free loopback ports and
opens the TUI on it (see simmta.tui.launch).
"""

import argparse
import importlib
import os
import re
import signal
import sys
from collections.abc import Sequence

from simmta.core.errors import SimmtaError

# Each module defines register(subparsers); order is the order of ``--help``.
TOOL_MODULES = (
    "simmta.tools.run",
    "simmta.tools.queuetools",
    "simmta.tools.send",
    "simmta.tools.sendmail",
    "simmta.tools.ps",
    "simmta.tools.eventtools",
    "simmta.tools.ctl",
    "simmta.tools.lab",
    "simmta.tools.trilogy",
    "simmta.tools.bench",
    "simmta.tui.launch",
    "simmta.tui.bench",
    "simmta.web.cli",
    "simmta.lessons.cli",
)


def instance_parent() -> argparse.ArgumentParser:
    """The ``--instance DIR`` option every command shares."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--instance",
        metavar="DIR",
        help="instance directory (default: $SIMMTA_INSTANCE or ~/.local/state/simmta/default)",
    )
    return p


def add_profile_option(p: argparse.ArgumentParser) -> None:
    """``--profile``: which architecture (services table) a new MTA runs."""
    from simmta.core.services import DEFAULT_PROFILE, PROFILES

    p.add_argument(
        "--profile",
        choices=tuple(PROFILES),
        default=DEFAULT_PROFILE,
        help="the architecture to run: postfix (default), qmail or sendmail",
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; given the command about to run, only the modules up to the one that
    defines it are imported (``simmta run`` is master: it loads no other tool's imports)."""
    parser = argparse.ArgumentParser(
        prog="simmta",
        description="A real Postfix-style MTA, instrumented, for teaching MTA architecture.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in TOOL_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):
                continue  # a tool not built yet
            raise
        module.register(sub, instance_parent())
        if command is not None and command in sub.choices:
            break
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["tui", *argv]  # plain `simmta [options]`: the TUI on a fresh MTA
    args = build_parser(argv[0]).parse_args(argv)
    try:
        if getattr(args, "in_namespace", False):  # reads the queue: rootless files are the range's
            from simmta.core import privilege
            from simmta.core.instance import Instance

            privilege.enter_instance(Instance(args.instance))
        return int(args.func(args) or 0)
    except SimmtaError as e:
        print(f"simmta: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (simmta config | head): stop quietly, as a C tool dies of SIGPIPE.
        # stdout now points nowhere so that the interpreter's last flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def plain(doc: str | None, paragraphs: slice = slice(None)) -> str | None:
    """A module docstring's paragraphs as ``--help`` text: reST literals shown as plain words."""
    if not doc:
        return None
    return re.sub(r"``(.+?)``", r"\1", "\n\n".join(doc.split("\n\n")[paragraphs]))
