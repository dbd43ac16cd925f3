"""The ``simmta`` command: one sub-command per tool, each registered by its module.

With no sub-command, ``simmta`` starts a fresh MTA on free loopback ports and
opens the TUI on it (see simmta.tui.launch).
"""

import argparse
import importlib
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
    "simmta.tools.bench",
    "simmta.tui.launch",
    "simmta.lessons.cli",
)


def instance_parent() -> argparse.ArgumentParser:
    """The ``--instance DIR`` option every command shares."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--instance", metavar="DIR",
                   help="instance directory (default: $SIMMTA_INSTANCE or ~/.local/state/simmta/default)")
    return p


def build_parser() -> argparse.ArgumentParser:
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        if "tui" in parser._subparsers._group_actions[0].choices:  # type: ignore[union-attr]
            args = parser.parse_args(["tui", *(argv or sys.argv[1:])])
        else:
            args = parser.parse_args(["run", *(argv or sys.argv[1:])])
    try:
        return int(args.func(args) or 0)
    except SimmtaError as e:
        print(f"simmta: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
