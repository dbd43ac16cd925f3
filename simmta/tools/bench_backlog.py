"""The backlog scenario of ``simmta bench --backlog``: mail piles up while the peer is down.

A fresh simmta instance gets the peer's fault set to ``down`` over the control
socket, then N messages for a remote recipient over SMTP: each is accepted
(queued durably) and qmgr defers it. With all N in the queue the bench times
``simmta queue`` (does the queue tool stay usable?) until it lists all N as
deferred, clears the fault (master then triggers a flush) and waits until
every message is in the peer's Maildir.
It reports how fast the backlog drained, whether anything was lost, and the
server's peak memory and open files throughout (bounded, or not).

Trust: the benchmark's own code; it talks to its own instance only (control
socket, loopback SMTP) and stops it by the pid it started.
"""

import argparse
import asyncio
import json
import math
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from simmta.core import control, names
from simmta.core.instance import Instance
from simmta.tools.bench_load import LoadSpec, generate_load
from simmta.tools.bench_stats import ProcTree, rate
from simmta.tools.bench_targets import SimmtaTarget
from simmta.tools.bench_watch import MaildirWatcher, TreeSampler

REMOTE_RECIPIENT = "bench@remote.example"  # not a local domain: relayed to the peer
QUEUE_TOOL_TIMEOUT = 300.0
DRAIN_IDLE = 60.0  # no delivery for this long after the peer is back: give up


@dataclass
class BacklogResult:
    messages: int
    accepted: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    queued_per_s: float = math.nan  # accepted/s while the peer was down
    queue_tool_s: float | None = None  # wall time of 'simmta queue --json' with the backlog deferred
    queue_tool_listed: int | None = None
    delivered: int = 0
    drain_s: float = math.nan  # from clearing the fault to the last delivery
    drained_per_s: float = math.nan
    lost: int = 0  # accepted but never delivered (within the drain timeout)
    cpu_ms_per_message: float = math.nan
    peak_memory_mb: float = math.nan
    peak_open_files: int = 0
    peak_processes: int = 0
    cold_start_s: float | None = None


def run_backlog(args: argparse.Namespace, console: Console) -> BacklogResult:
    target = SimmtaTarget(
        events=args.events != "off",
        subscriber=args.events == "subscriber",
        keep=args.keep,
        recipient=REMOTE_RECIPIENT,
        label="simmta backlog",
        settings=args.set,
    )
    result = BacklogResult(args.messages)
    try:
        endpoint = target.start()
        assert target.dir is not None and endpoint.root_pid is not None
        result.cold_start_s = endpoint.cold_start
        _run(Instance(target.dir), endpoint.host, endpoint.port, endpoint.root_pid, args, result, console)
    finally:
        target.stop()
    return result


def _run(
    instance: Instance,
    host: str,
    port: int,
    root_pid: int,
    args: argparse.Namespace,
    result: BacklogResult,
    console: Console,
) -> None:
    run_id = f"b{uuid.uuid4().hex[:12]}"
    load_timeout = args.load_timeout or 600.0 + 0.1 * args.messages
    give_up = time.monotonic() + load_timeout + args.drain_timeout + QUEUE_TOOL_TIMEOUT
    tree = ProcTree(root_pid)
    sampler = TreeSampler(tree, give_up)
    watcher = MaildirWatcher(instance.peer_maildir, run_id, give_up)
    control.request(instance.control_socket, "fault", target="peer", value="down")
    cpu_before = tree.cpu_seconds()
    sampler.start()
    watcher.start()
    try:
        console.print(f"backlog: peer down, sending {args.messages} messages for {REMOTE_RECIPIENT}")
        spec = LoadSpec(
            host,
            port,
            args.messages,
            args.size,
            args.concurrency,
            args.per_connection,
            args.sender,
            REMOTE_RECIPIENT,
            run_id,
            deadline=load_timeout,
        )
        load = asyncio.run(generate_load(spec))
        accepted = load.accepted
        result.accepted, result.errors = len(accepted), load.errors
        if accepted:
            last = max(r.accepted or 0.0 for r in accepted)
            result.queued_per_s = rate(len(accepted), load.started, last)
        console.print(
            f"backlog: {result.accepted} queued ({result.queued_per_s:.0f}/s); "
            "waiting until all are deferred ('simmta queue --json', timed)"
        )
        result.queue_tool_s, result.queue_tool_listed = _wait_deferred(
            instance, result.accepted, time.monotonic() + QUEUE_TOOL_TIMEOUT
        )
        console.print("backlog: peer up again, waiting for the queue to drain")
        cleared = time.time()
        control.request(instance.control_socket, "fault", target="peer", value="none")
        watcher.wait_for(result.accepted, time.monotonic() + args.drain_timeout, idle=DRAIN_IDLE)
    finally:
        watcher.stop()
        sampler.stop()
    delivered = {i for i in watcher.delivered if i.startswith(run_id)}
    result.delivered = len(delivered)
    result.lost = len({r.bench_id for r in accepted} - delivered)
    if watcher.delivered:
        last_delivery = max(watcher.delivered.values())
        result.drain_s = last_delivery - cleared
        result.drained_per_s = rate(result.delivered, cleared, last_delivery)
    if result.delivered:
        result.cpu_ms_per_message = (tree.cpu_seconds() - cpu_before) / result.delivered * 1000
    result.peak_memory_mb = sampler.peak / 2**20
    result.peak_open_files = max((fds for _, _, fds, _ in sampler.timeline), default=0)
    result.peak_processes = max((n for _, _, _, n in sampler.timeline), default=0)


def _wait_deferred(instance: Instance, count: int, deadline: float) -> tuple[float | None, int | None]:
    """Poll ``simmta queue --json`` until ``count`` messages wait in deferred/ (the
    fresh instance holds nothing else); the wall time of the last call and how many
    it listed. Clearing the fault earlier would race with attempts still in flight:
    those are deferred after master's flush and wait for their retry time."""
    seconds, listed = None, None
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "simmta", "queue", "--json", "--instance", str(instance.path)],
                capture_output=True,
                timeout=QUEUE_TOOL_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            return None, None
        seconds = time.monotonic() - started
        if done.returncode != 0:
            return seconds, None
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        listed = len(lines)
        if sum(1 for m in lines if m.get("queue_name") == names.DEFERRED) >= count:
            break
        time.sleep(min(1.0, max(0.1, seconds)))  # poll, not a wait for a fixed time
    return seconds, listed


def report_backlog(console: Console, r: BacklogResult) -> dict[str, Any]:
    """Print the figures; return them for --json."""
    lines = [
        f"queued with the peer down: {r.accepted}/{r.messages} ({r.queued_per_s:.0f}/s)"
        + (f", errors {r.errors}" if r.errors else ""),
        "'simmta queue --json' with the backlog queued: "
        + (
            f"{r.queue_tool_s:.2f} s, {r.queue_tool_listed} messages listed"
            if r.queue_tool_s is not None
            else "did not answer in time"
        ),
        f"after the peer came back: {r.delivered} delivered in {r.drain_s:.1f} s "
        f"({r.drained_per_s:.0f}/s); lost: {r.lost}",
        f"server CPU {r.cpu_ms_per_message:.2f} ms/msg; peak memory {r.peak_memory_mb:.0f} MiB, "
        f"{r.peak_open_files} open files, {r.peak_processes} processes",
    ]
    for line in lines:
        console.print(f"backlog: {line}")
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in vars(r).items()}
