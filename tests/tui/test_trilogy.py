"""``simmta trilogy`` in tmux: three designs, one message delivered by each, the matrix on screen."""

import re
import sys
from pathlib import Path

import pytest
from mtakit import REPO, maildir_files, wait_for
from test_live_mta import Tmux

PROFILES = ("sendmail", "qmail", "postfix")


def trilogy(simmta_tmp: Path, size: tuple[int, int]) -> tuple[Path, Tmux]:
    """``simmta trilogy`` in a tmux of ``size``, its three instances under the returned directory."""
    base = simmta_tmp / "trilogy"
    command = f"PYTHONPATH={REPO} {sys.executable} -m simmta trilogy --dir {base}"
    return base, Tmux(simmta_tmp, command, size=size)


@pytest.mark.slow
def test_trilogy_delivers_one_message_in_all_three_and_shows_the_matrix(simmta_tmp: Path) -> None:
    base, term = trilogy(simmta_tmp, size=(200, 50))
    try:
        screen = term.shows("\nproc-fd ", timeout=90)  # the blast-radius matrix's last row
        for title in ("Sendmail 8", "qmail 1.03", "Postfix"):
            assert title in screen
        row = next(line for line in screen.splitlines() if line.startswith("read-secret"))
        assert row.split()[1:] == ["ok", "EACCES", "ENOENT"] or "predicted" in row, row
        term.keys("s")
        for p in PROFILES:
            wait_for(
                lambda p=p: maildir_files(base / p / "instance" / "mail" / "bob" / "Maildir"),
                30,
                f"the message delivered by {p}",
            )
        wait_for(lambda: term.screen().count("delivered 1") == 3, 30, "each design's count of mail delivered")
        term.keys("q")
        term.shows("SIMMTA-EXIT=0", timeout=60)
        for p in PROFILES:  # quitting stopped all three
            assert not (base / p / "instance" / "run" / "status.json").exists(), p
    finally:
        term.close()


@pytest.mark.slow
def test_a_hang_up_stops_the_three_mtas_and_the_view(simmta_tmp: Path) -> None:
    """tmux kill-session (SIGHUP): nothing of the trilogy may stay behind (the view once
    kept spinning on the dead terminal)."""
    base, term = trilogy(simmta_tmp, size=(200, 50))
    try:
        term.shows("\nproc-fd ", timeout=90)
    finally:
        term.close()

    def ours() -> list[str]:
        return [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _mentions(p, str(base))]

    wait_for(lambda: not ours(), 30, "every process of the trilogy to be gone")


def _mentions(proc: Path, text: str) -> bool:
    try:
        return text in (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


@pytest.mark.slow
def test_on_a_120_column_projector_one_map_at_a_time_and_every_designs_counts(simmta_tmp: Path) -> None:
    _, term = trilogy(simmta_tmp, size=(120, 40))
    try:
        screen = term.shows("\nproc-fd ", timeout=90)
        assert "Sendmail 8" in screen and "qmail 1.03" not in screen  # one map, not three squeezed
        for n, p in enumerate(PROFILES, 1):  # ... and every design's counts, a line each
            assert re.search(rf"^ *▶? *{n} {p} +processes \d+", screen, re.M), (p, screen)
        term.keys("3")
        wait_for(
            lambda: "Postfix" in term.screen() and "Sendmail 8" not in term.screen(), 30, "Postfix's map"
        )
        assert re.search(r"^▶ 3 postfix ", term.screen(), re.M)  # the summary marks the design shown
        term.keys("q")
        term.shows("SIMMTA-EXIT=0", timeout=60)
    finally:
        term.close()
