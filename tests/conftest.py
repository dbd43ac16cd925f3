"""Fixtures for the MTA tests; the helpers they use live in mtakit.py.

(Tests import helpers from ``mtakit``, never from ``conftest``: tests/tui has
a conftest of its own, and the two would shadow each other.)
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from mtakit import NOBODY, Mta, nobody_can_run_python
from reachable import python_reachable


@pytest.fixture
def simmta_tmp() -> Iterator[Path]:
    """A temp dir other users can walk into (not under pytest's 0700 basetemp,
    whose mode any concurrent pytest run resets)."""
    path = Path(tempfile.mkdtemp(prefix="simmta-test-"))
    os.chmod(path, 0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def instance_dir(simmta_tmp: Path) -> Path:
    return simmta_tmp / "inst"


@pytest.fixture
def mta(request: pytest.FixtureRequest, instance_dir: Path) -> Iterator[Mta]:
    """A running MTA; a test parametrized indirectly on ``mta`` names the profile."""
    m = Mta(instance_dir, profile=getattr(request, "param", "postfix"))
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture
def nobody_mta(simmta_tmp: Path) -> Iterator[Mta]:
    """The same MTA run by an unprivileged user, in simulated privilege mode (asked
    for: on a machine with user namespaces uid 65534 would get the partial mode)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to the unprivileged test user")
    assert nobody_can_run_python(), "uid 65534 cannot run this Python (see tests/reachable.py)"
    base = simmta_tmp / "nobody"
    base.mkdir()
    os.chown(base, NOBODY, NOBODY)
    m = Mta(base / "inst", user=NOBODY, privilege="simulated")
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture(scope="session", autouse=True)
def _python_reachable_for_nobody() -> Iterator[None]:
    """Several suites run simmta as uid 65534: let it execute this interpreter (modes restored)."""
    with python_reachable():
        yield
