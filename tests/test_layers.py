"""The tiers (the MTA never loads Textual) and the static checks (ruff, mypy) over the tree."""

import subprocess
import sys

import pytest

MTA_MODULES = [
    "simmta.core.config",
    "simmta.core.services",
    "simmta.core.queue",
    "simmta.core.ipc",
    "simmta.core.events",
    "simmta.core.privilege",
    "simmta.core.skeleton",
    "simmta.core.busclient",
    "simmta.master.main",
    "simmta.master.zygote",
    *(
        f"simmta.daemons.{d}"
        for d in ("smtpd", "cleanup", "qmgr", "local", "smtp", "bounce", "pickup", "peer")
    ),
    "simmta.tools.run",
    "simmta.tools.queuetools",
    "simmta.tools.sendmail",
    "simmta.tools.ps",
]


def test_the_mta_never_imports_textual() -> None:
    code = (
        "import importlib, sys\n"
        f"for m in {MTA_MODULES!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'networkx'))\n"
        "print(bad)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"the MTA loaded UI or drawing modules: {r.stdout}"


def test_master_loads_only_the_run_command() -> None:
    """``simmta run`` (master) registers only its own command: no other tool's imports
    (rich, smtplib, the TUI launcher) take memory in master for the life of the MTA."""
    code = (
        "import sys\n"
        "from simmta import cli\n"
        "parser = cli.build_parser('run')\n"
        "import simmta.master.main\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'smtplib', 'textual'))"
        " or 'none', 'bench' in parser.format_help())"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["none", "False"], r.stdout


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_is_clean(command: list[str]) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "simmta", "tests", "assets"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=__file__.rsplit("/tests/", 1)[0],
    )
    assert r.returncode == 0, r.stdout[-3000:]


def test_type_hints_check() -> None:
    """mypy over simmta/ with the configuration in pyproject.toml."""
    r = subprocess.run(
        [sys.executable, "-m", "mypy"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=__file__.rsplit("/tests/", 1)[0],
    )
    assert r.returncode == 0, r.stdout[-3000:]
