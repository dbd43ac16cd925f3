"""Where each message's token is drawn now: its hops played one after another at the view's pace.

The MTA moves a message through five hops in a few milliseconds; drawn as they
happen, the whole path would light at once. The view plays each journey
instead: hop i starts at ``max(its own time, the end of hop i-1)`` and lasts
``hop_seconds``. That is a pure function of the hops, the pace and the clock,
so stepping back, replays and frozen-clock snapshots draw the same frame, and
nothing here ever holds mail (the MTA's own hold is a separate, deliberate
presenter control: see tui/actions.py).

Pure Python. Trust: works on Journeys (already inert text).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from simmta.tui.journey import Hop

# View paces: seconds per hop on the map. "live" is still slow enough to see each hop.
PACES: tuple[tuple[str, float], ...] = (("live", 0.3), ("1 s/hop", 1.0), ("2 s/hop", 2.0), ("3 s/hop", 3.0))
LOOKBACK = 300.0  # journeys quiet for longer than this are not animated any more


@dataclass(frozen=True)
class Token:
    ident: str
    hop: int  # index into the journey
    src: str
    dst: str
    progress: float  # 0..1 along the edge


def shown_hop(hops: list[Hop], hop_seconds: float, now: float) -> tuple[int, float]:
    """(index of the hop being shown, progress along it); progress >= 1: arrived."""
    start = None
    index, progress = -1, 1.0
    for i, hop in enumerate(hops):
        start = hop.ts if start is None else max(hop.ts, start + hop_seconds)
        if start > now:
            break
        index, progress = i, (now - start) / hop_seconds
    return index, progress


def settled_hop(hops: list[Hop], hop_seconds: float, now: float) -> tuple[int, float]:
    """A paused replay: each message at its newest hop, midway, if that hop is recent."""
    if not hops:
        return -1, 1.0
    return len(hops) - 1, 0.5 if now - hops[-1].ts <= hop_seconds else 1.0


def tokens(
    journeys: Iterable[tuple[str, list[Hop]]], hop_seconds: float, now: float, settled: bool = False
) -> list[Token]:
    """The tokens on edges now (journeys most recent first; stops at the quiet ones)."""
    out = []
    where = settled_hop if settled else shown_hop
    for ident, hops in journeys:
        if not hops:
            continue
        if hops[-1].ts < now - LOOKBACK:
            break
        index, progress = where(hops, hop_seconds, now)
        if index >= 0 and progress < 1.0:
            hop = hops[index]
            out.append(Token(ident, index, hop.src, hop.dst, progress))
    return out
