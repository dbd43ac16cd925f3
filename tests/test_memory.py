"""Memory bounded by design: what a client sends never makes simmta grow.

The whole process tree (master and every daemon) is sampled while a client
from outside mynetworks sends a 100 MiB line in DATA, 100 MiB of DATA, a
100 MiB command line, and while 200 clients from 200 addresses in
127.0.0.0/8 sit idle. The bound asserted is a fixed number of MiB above the
tree's memory before the test, never a ratio of the input.
"""

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from mtakit import FAST_CONFIG, Mta, wait_for
from test_limits import Raw, healthy, running

from simmta.tools.bench_stats import ProcTree

MIB = 1 << 20
INPUT = 100 * MIB
GROWTH_BOUND = 48 * MIB  # over the tree's size before; message_size_limit (10 MB) fits in it
CHUNK = b"y" * MIB


@pytest.fixture(scope="module")
def mta() -> Iterator[Mta]:
    with running("memory", FAST_CONFIG + "smtpd_timeout = 60\n") as m:
        yield m


def peak_growth(mta: Mta, action: Callable[[], object]) -> int:
    """Run ``action`` while sampling the tree's PSS; the peak minus the size before."""
    tree = ProcTree(mta.pid)
    before = tree.memory_bytes()
    peak, done = before, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree.memory_bytes())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        action()
    finally:
        done.set()
        sampler.join(10)
    print(f"\ntree PSS {before / MIB:.1f} MiB before, peak +{(peak - before) / MIB:.1f} MiB")
    return peak - before


def in_data(s: Raw) -> None:
    assert s.cmd("EHLO outsider.example")[0] == 250
    assert s.cmd("MAIL FROM:<someone@example.org>")[0] == 250
    assert s.cmd("RCPT TO:<bob@simmta.test>")[0] == 250
    assert s.cmd("DATA")[0] == 354


@pytest.mark.slow
def test_a_100_mib_line_in_data(mta: Mta) -> None:
    def send() -> None:
        with Raw(mta, source="127.0.0.2", timeout=120) as s:
            in_data(s)
            s.send(b"Subject: long line\r\n\r\n")
            for _ in range(INPUT // MIB):
                s.send(CHUNK)
            code, text = s.cmd(b"\r\n.\r\n")
            assert (code, text) == (554, "5.6.0 Error: message line too long")
            assert s.cmd("NOOP")[0] == 250

    assert peak_growth(mta, send) < GROWTH_BOUND
    healthy(mta, "after a 100 MiB line")


@pytest.mark.slow
def test_100_mib_of_data(mta: Mta) -> None:
    line = b"z" * 998 + b"\r\n"
    block = line * (MIB // len(line))

    def send() -> None:
        with Raw(mta, source="127.0.0.2", timeout=120) as s:
            in_data(s)
            for _ in range(INPUT // len(block)):
                s.send(block)
            code, text = s.cmd(b".\r\n")
            assert code == 552 and text.startswith("5.3.4 "), (code, text)

    assert peak_growth(mta, send) < GROWTH_BOUND


@pytest.mark.slow
def test_a_100_mib_command_line(mta: Mta) -> None:
    def send() -> None:
        with Raw(mta, source="127.0.0.2", timeout=120) as s:
            s.send(b"NOOP ")
            for _ in range(INPUT // MIB):
                s.send(CHUNK)
            code, _ = s.cmd(b"\r\n")
            assert code == 500
            assert s.cmd("NOOP")[0] == 250

    assert peak_growth(mta, send) < GROWTH_BOUND


IDLE_CLIENTS = 200
PROCESS_LIMIT = 50
PER_SESSION_BOUND = 8 * MIB  # one smtpd process per session: about 5 MiB of PSS each (measured)


@pytest.mark.slow
def test_200_idle_clients_from_200_addresses() -> None:
    """Past the smtpd process limit, master says 421 at once; memory stays bounded."""
    config = FAST_CONFIG + f"default_process_limit = {PROCESS_LIMIT}\nsmtpd_timeout = 120\n"
    greetings: list[bytes] = []
    with running("idle", config) as m, contextlib.ExitStack() as stack:

        def connect_all() -> None:
            for i in range(IDLE_CLIENTS):
                c = stack.enter_context(
                    socket.create_connection(
                        (m.host, m.port),
                        timeout=60,
                        source_address=(f"127.0.{1 + i // 250}.{2 + i % 250}", 0),
                    )
                )
                greetings.append(c.recv(512))
            # every smtpd that got a client is busy with it; hold them while memory is sampled
            wait_for(lambda: len(m.children_of("smtpd")) >= PROCESS_LIMIT, 60, "smtpd at its limit")

        growth = peak_growth(m, connect_all)
        served = [g for g in greetings if g.startswith(b"220 ")]
        refused = [g for g in greetings if g == b"421 4.3.2 All server ports are busy\r\n"]
        assert len(served) == PROCESS_LIMIT and len(refused) == IDLE_CLIENTS - PROCESS_LIMIT, greetings[-3:]
        assert growth < PROCESS_LIMIT * PER_SESSION_BOUND, "an idle smtpd costs a few MiB of PSS, no more"
    with running("idle-after", FAST_CONFIG) as m2:
        healthy(m2, "fresh")
