"""Configuration as data: main.toml and services.toml errors name file, line and key."""

import subprocess
import sys
from pathlib import Path

import pytest

from simmta.core import config, services
from simmta.core.errors import ConfigError


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text,line,key,what",
    [
        ('myhostname = "mx.example"\nmessage_sise_limit = 5\n', 2, "message_sise_limit", "unknown parameter"),
        ('\n\nmessage_size_limit = "big"\n', 3, "message_size_limit", "expected a whole number"),
        ('queue_run_delay = "5 fortnights"\n', 1, "queue_run_delay", "expected a time"),
        ('inet_interfaces = "10.0.0.1"\n', 1, "inet_interfaces", "loopback only"),
        ('mynetworks = ["127.0.0.1/33"]\n', 1, "mynetworks", "127.0.0.1/33"),
        ('smtpd_forbid_bare_newline = "maybe"\n', 1, "smtpd_forbid_bare_newline", "expected one of"),
    ],
)
def test_main_toml_errors_name_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, what: str
) -> None:
    p = write(tmp_path, "main.toml", text)
    with pytest.raises(ConfigError) as e:
        config.load(p)
    assert (e.value.path, e.value.line, e.value.key) == (p, line, key)
    assert what in str(e.value) and f"line {line}" in str(e.value)


def test_toml_syntax_error_has_its_line(tmp_path: Path) -> None:
    p = write(tmp_path, "main.toml", 'myhostname = "a"\nbroken = = 1\n')
    with pytest.raises(ConfigError, match=r"line 2.*TOML syntax error"):
        config.load(p)


def test_no_file_means_defaults_and_times_take_units(tmp_path: Path) -> None:
    assert config.load(tmp_path / "absent.toml") == config.defaults()
    cfg = config.load(write(tmp_path, "main.toml", 'maximal_queue_lifetime = "5d"\n'))
    assert cfg.maximal_queue_lifetime == 5 * 86400


def test_services_table_errors(tmp_path: Path) -> None:
    good = services.load().services
    assert {s.name for s in good if s.chroot} == {"smtpd", "pickup", "cleanup", "bounce", "smtp"}
    assert {s.name for s in good if not s.unpriv} == {"local"}
    p = write(
        tmp_path,
        "services.toml",
        '[[service]]\nname = "smtpd"\ntype = "inet"\ncommand = "smtpd"\nchroot = "yes"\n',
    )
    with pytest.raises(ConfigError) as e:
        services.load(p)
    assert e.value.line == 5 and e.value.key == "service.chroot" and "expected bool" in str(e.value)
    p = write(tmp_path, "services.toml", '[[service]]\nname = "x"\ntype = "fifo"\ncommand = "smtpd"\n')
    with pytest.raises(ConfigError, match=r"line 3.*expected 'inet' or 'unix'"):
        services.load(p)


def test_a_short_name_is_short_and_unique(tmp_path: Path) -> None:
    """The map's small boxes show ``short``: longer than they hold, or taken twice, is refused."""
    row = '[[service]]\nname = "{0}"\ntype = "unix"\ncommand = "{0}"\nshort = "{1}"\n'
    p = write(tmp_path, "services.toml", row.format("smtpd", "the SMTP server"))
    with pytest.raises(ConfigError, match=r"line 5.*at most 10 characters"):
        services.load(p)
    p = write(tmp_path, "services.toml", row.format("smtpd", "in") + row.format("cleanup", "in"))
    with pytest.raises(ConfigError, match=r"short name 'in' taken"):
        services.load(p)


def test_graph_is_built_from_the_table() -> None:
    g = services.load().graph()
    assert g.has_edge("smtpd", "cleanup") and g.has_edge("qmgr", "local")
    assert g.nodes["incoming"]["kind"] == "queue" and g.nodes["internet"]["kind"] == "internet"


def test_simmta_config_prints_effective_values_and_refuses_bad_files(tmp_path: Path) -> None:
    write(tmp_path, "main.toml", "message_size_limit = 2048\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "simmta",
            "config",
            "--instance",
            str(tmp_path),
            "message_size_limit",
            "queue_run_delay",
        ],
        capture_output=True,
        text=True,
    )
    assert r.stdout == "message_size_limit = 2048\nqueue_run_delay = 300s\n"
    write(tmp_path, "main.toml", "message_size_limit = -1\n")
    r = subprocess.run(
        [sys.executable, "-m", "simmta", "config", "--instance", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "line 1, key 'message_size_limit': must be at least" in r.stderr
    assert "Traceback" not in r.stderr
