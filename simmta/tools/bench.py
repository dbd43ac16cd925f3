"""``simmta bench``: throughput and latency of the real MTA, side by side with any SMTP server.

By default it starts a fresh simmta instance in a temporary directory, sends it
N messages of S bytes over C concurrent SMTP sessions (M per connection) for
bob@simmta.test, waits until they are all in bob's Maildir, and stops it.
``--target HOST:PORT`` measures any SMTP server on loopback instead (with
``--maildir`` to count end-to-end delivery); ``--compare`` runs configurations
alternately (A B A B ...) and reports ratios round by round.

Figures: accepted/s (250 after DATA), delivered/s end to end (until the
Maildir has them: the move into new/), p50/p95/p99 latency of the 250 and of
the delivery, counted from the start of each message's transaction (the
connect for a session's first message, MAIL FROM for the others), CPU seconds
per message of the server's whole process tree (/proc, reaped children
included), peak memory of that tree (sum of PSS), and for simmta the cold start
(spawn of ``simmta run`` until the SMTP greeting). Figures are printed, never
asserted: see the README's performance section for how to read them.

The modules beside this one do the parts: bench_load (asyncio load generator),
bench_watch (the Maildir watcher, the process-tree sampler), bench_stats (percentiles, /proc),
bench_targets (starting simmta, the event subscriber), bench_backlog (the
peer-down scenario), bench_sink (an aiosmtpd baseline server).

Trust: a tool run by the instance owner; it talks to loopback only (a target
elsewhere is refused), and starts and stops only its own child processes.
"""

import argparse
import asyncio
import ipaddress
import json
import math
import os
import platform
import resource
import socket
import sys
import time
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from simmta.cli import plain
from simmta.core import config
from simmta.core.errors import SimmtaError
from simmta.core.services import PROFILES
from simmta.tools import bench_postfix, bench_syscalls
from simmta.tools.bench_backlog import report_backlog, run_backlog
from simmta.tools.bench_load import LoadSpec, generate_load
from simmta.tools.bench_stats import Latency, ProcTree, median, rate, ratio, summarize
from simmta.tools.bench_targets import Endpoint, ExternalTarget, SimmtaTarget, Target
from simmta.tools.bench_watch import MaildirWatcher, TreeSampler

SIMMTA = "simmta"  # events on, a subscriber reading the bus (instrumented, as with the TUI)
SIMMTA_NO_EVENTS = "simmta-no-events"
DRAIN_IDLE = 30.0  # give up on end-to-end delivery after this long without one
TRACED_MESSAGES = 500  # at most this many in the untimed strace run of each configuration
WIDE_SPREAD = 1.3  # highest / lowest ratio of the rounds past which --compare takes 2 more rounds
MORE_ROUNDS = 5

Configuration = tuple[str, Callable[[], Target]]  # a label, and how to get a fresh target


@dataclass
class RunResult:
    """One measurement of one configuration."""

    label: str
    round: int
    messages: int
    sent: int = 0
    accepted: int = 0
    delivered: int | None = None  # None: end-to-end delivery not measured
    duplicates: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    accepted_per_s: float = math.nan
    delivered_per_s: float = math.nan
    accept_latency: Latency | None = None
    delivery_latency: Latency | None = None
    cpu_ms_per_message: float = math.nan
    client_cpu_ms_per_message: float = math.nan  # the bench's own, for context
    # process name -> CPU ms per message and how many such processes were seen (approximate)
    cpu_by_process: dict[str, dict[str, float]] = field(default_factory=dict)
    processes_per_message: float = math.nan  # server processes seen during the load / messages
    peak_memory_mb: float = math.nan
    # the server tree sampled during the load: [seconds since start, MiB, open files, processes];
    # growth from early in a long run (-n 50000) to its end is what a leak looks like
    timeline: list[tuple[float, float, int, int]] = field(default_factory=list)
    cold_start_s: float | None = None
    events_seen: int | None = None
    subscriber_cpu_ms_per_message: float = math.nan  # the event subscriber's (not the server's)
    # strace -c -f on the server's tree (a separate, untimed run): calls per message
    syscalls_per_message: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    load_average: float = math.nan  # 1-minute load average when the run began

    @property
    def completed(self) -> int:
        """Messages that made it: delivered if end to end was measured, else accepted."""
        return self.delivered if self.delivered is not None else self.accepted

    @property
    def cpu_with_subscriber(self) -> float:
        """CPU per message of the server's tree and of the event subscriber, if any."""
        extra = self.subscriber_cpu_ms_per_message
        return self.cpu_ms_per_message + (0.0 if math.isnan(extra) else extra)

    @property
    def headline(self) -> float:
        """The rate compared between configurations: end to end if measured, else accepted."""
        return self.delivered_per_s if self.delivered is not None else self.accepted_per_s

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("accept_latency", "delivery_latency"):
            value = getattr(self, key)
            out[key + "_ms"] = value.as_ms() if value else None
            del out[key]
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


# --- command line --------------------------------------------------------------------------


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "bench",
        parents=[parent],
        help="measure throughput and latency (simmta, or any SMTP server on loopback)",
        description=plain(__doc__, slice(1, 2)),
    )
    p.add_argument("-n", "--messages", type=_positive, default=1000, metavar="N")
    p.add_argument(
        "-s",
        "--size",
        type=_positive,
        default=2048,
        metavar="BYTES",
        help="message size, headers included (default 2048)",
    )
    p.add_argument(
        "-c",
        "--concurrency",
        type=_positive,
        default=10,
        metavar="C",
        help="concurrent SMTP sessions (default 10)",
    )
    p.add_argument(
        "-m",
        "--per-connection",
        type=_positive,
        default=1,
        metavar="M",
        help="messages per connection (default 1)",
    )
    p.add_argument(
        "--target",
        metavar="HOST:PORT",
        type=_loopback_target,
        help="measure this SMTP server (loopback only) instead of a fresh simmta",
    )
    p.add_argument(
        "--maildir",
        type=Path,
        metavar="DIR",
        help="the target's Maildir for --to: count end-to-end delivery there",
    )
    p.add_argument(
        "--to",
        default="bench@localhost",
        metavar="ADDR",
        help="recipient at the target (default bench@localhost); simmta's is bob",
    )
    p.add_argument("--from", dest="sender", default="bench@localhost", metavar="ADDR")
    p.add_argument("--label", help="name of the target in the report (default target, or postfix)")
    p.add_argument(
        "--profile",
        action="append",
        choices=tuple(PROFILES),
        help="simmta running this architecture (repeat to compare designs, measured alternately)",
    )
    p.add_argument(
        "--postfix",
        action="store_true",
        help=f"the target is the README's loopback Postfix ({bench_postfix.HOST}:{bench_postfix.PORT}, "
        f"{bench_postfix.RECIPIENT}): installed, configured and started first as far as needed "
        "(Debian, root), stopped after if this run started it",
    )
    p.add_argument(
        "--syscalls",
        action=argparse.BooleanOptionalAction,
        help="after the timed rounds, one untimed run of each configuration under strace -c -f "
        f"(at most {TRACED_MESSAGES} messages): fsyncs, renames, links per message "
        "(default: on with --compare when strace is installed)",
    )
    p.add_argument(
        "--server-pid",
        type=_positive,
        metavar="PID",
        help="the target's root process (default: whoever listens on its port)",
    )
    p.add_argument(
        "--events",
        choices=("subscriber", "on", "off"),
        default="subscriber",
        help="simmta's events: on with a subscriber reading them (default), on with nobody listening, or off",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        type=_setting,
        metavar="KEY=VALUE",
        help="a main.toml line for the simmta instances, e.g. --set 'max_use=1000' "
        "(repeatable; the figures are then not simmta's defaults)",
    )
    p.add_argument(
        "--compare",
        action="store_true",
        help="alternate simmta with events+subscriber, simmta with events off, "
        "and the --target if given; report ratios round by round",
    )
    p.add_argument(
        "--rounds",
        type=_positive,
        metavar="R",
        help="measurements per configuration (default with --compare: 3, and 5 when the "
        f"rounds' ratios spread wider than {WIDE_SPREAD:.2f} from lowest to highest; else 1)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="longest wait for end-to-end delivery after the load (default 300)",
    )
    p.add_argument(
        "--backlog",
        action="store_true",
        help="the peer down while N messages for a remote address are queued, then up: "
        "how fast the backlog drains, nothing lost, memory bounded, queue tool timed",
    )
    p.add_argument(
        "--cold-starts",
        type=_positive,
        metavar="K",
        help="only measure simmta's cold start (spawn to SMTP greeting), K times; send no mail",
    )
    p.add_argument(
        "--load-timeout",
        type=float,
        metavar="SECONDS",
        help="longest time for sending all messages (default 600 + 0.1 per message)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep simmta's temporary instance dirs, and the messages delivered "
        "into --maildir (by default the bench's own messages are removed)",
    )
    p.set_defaults(func=cmd_bench)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _setting(text: str) -> str:
    """KEY=VALUE with a TOML value, checked by simmta's own config validation."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError("expected KEY=VALUE")
    line = f"{key.strip()} = {value.strip()}"
    try:
        config.apply(config.defaults(), tomllib.loads(line))
    except (tomllib.TOMLDecodeError, SimmtaError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return line


def _loopback_target(text: str) -> tuple[str, int]:
    """HOST:PORT ([::1]:PORT for IPv6) resolving to loopback addresses only."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError("expected HOST:PORT")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot resolve {host}: {e}") from None
    addresses = {str(info[4][0]) for info in infos}
    if not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise argparse.ArgumentTypeError(
            f"{host} is not a loopback address: simmta bench measures local servers only"
        )
    return sorted(addresses)[0], int(port)


def configurations(args: argparse.Namespace) -> list[Configuration]:
    """The configurations measured, in the order each round runs them: (label, factory)."""

    def simmta(events: str, profile: str = "postfix", label: str = "") -> Callable[[], Target]:
        return lambda: SimmtaTarget(
            events=events != "off",
            subscriber=events == "subscriber",
            keep=args.keep,
            label=label or (SIMMTA if events != "off" else SIMMTA_NO_EVENTS),
            settings=args.set,
            profile=profile,
        )

    def target() -> Callable[[], Target]:
        host, port = args.target
        return lambda: ExternalTarget(host, port, args.maildir, args.to, args.server_pid, args.label)

    if args.profile:  # the designs alternately, round after round (interleaved: the noise is shared)
        return [
            (f"simmta --profile {p}", simmta(args.events, p, f"simmta --profile {p}")) for p in args.profile
        ]
    if args.compare:
        configs = [(SIMMTA, simmta("subscriber")), (SIMMTA_NO_EVENTS, simmta("off"))]
        if args.target:
            configs.append((args.label, target()))
        return configs
    if args.target:
        return [(args.label, target())]
    return [(SIMMTA if args.events != "off" else SIMMTA_NO_EVENTS, simmta(args.events))]


def cmd_bench(args: argparse.Namespace) -> int:
    if getattr(args, "instance", None):
        raise SimmtaError(
            "bench starts fresh temporary instances of its own; to measure a running simmta "
            "use --target HOST:PORT --maildir DIR/mail/bob/Maildir --to bob@simmta.test"
        )
    if args.maildir and not args.target:
        raise SimmtaError("--maildir goes with --target (simmta's own Maildir is found by itself)")
    rounds = args.rounds or (3 if args.compare else 1)
    if args.postfix:
        if args.target:
            raise SimmtaError("--postfix is a --target of its own: give one or the other")
        args.target = (bench_postfix.HOST, bench_postfix.PORT)
        args.maildir, args.to = bench_postfix.MAILDIR, bench_postfix.RECIPIENT
    args.label = args.label or ("postfix" if args.postfix else "target")
    console = Console()
    if not console.is_terminal:  # a log file or a pipe: keep the tables whole
        console = Console(width=160)
    if args.cold_starts:
        return cold_starts(args, console)
    if args.backlog:
        if args.target or args.compare:
            raise SimmtaError("--backlog measures simmta alone (no --target, no --compare)")
        figures = report_backlog(console, run_backlog(args, console))
        if args.json:
            args.json.write_text(
                json.dumps({"schema": "simmta-bench/1", "backlog": figures}, indent=2) + "\n"
            )
        return 0
    postfix = bench_postfix.ensure_postfix(console.print) if args.postfix else None
    try:
        if args.postfix and args.compare and args.syscalls is not False and not bench_syscalls.available():
            bench_postfix.apt_install("strace", console.print)  # the one command counts fsyncs too
        if args.syscalls is None:
            args.syscalls = args.compare and bench_syscalls.available()
        elif args.syscalls and not bench_syscalls.available():
            raise SimmtaError("--syscalls needs strace (apt-get install strace)")
        return _bench_all(args, rounds, console)
    finally:
        if postfix:
            postfix.stop()


def _bench_all(args: argparse.Namespace, rounds: int, console: Console) -> int:
    configs = configurations(args)
    console.print(
        f"simmta bench: {args.messages} messages of {args.size} bytes, "
        f"{args.concurrency} sessions, {args.per_connection} per connection; "
        f"{rounds} round(s) of {', '.join(label for label, _ in configs)}"
    )
    runs: list[RunResult] = []
    r = 0
    while r < rounds:
        r += 1
        for _, factory in configs:
            result = measure(factory(), args, r, console)
            runs.append(result)
            console.print(_one_line(result))
        if r == rounds and args.compare and not args.rounds and rounds < MORE_ROUNDS:
            spread = widest_spread(runs, [label for label, _ in configs])
            if spread > WIDE_SPREAD:
                console.print(f"the rounds' ratios spread {spread:.2f}x: {MORE_ROUNDS - rounds} more rounds")
                rounds = MORE_ROUNDS
    if args.syscalls:
        traced = min(args.messages, TRACED_MESSAGES)
        console.print(f"strace -c -f on each server's tree: one untimed run of {traced} messages each")
        for label, factory in configs:
            result = measure(factory(), args, 0, console, traced)
            calls = result.syscalls_per_message
            for run in runs:
                if run.label == label:
                    run.syscalls_per_message = calls
            console.print(
                f"{label} under strace: "
                + ", ".join(f"{k} {v:.2f}" for k, v in calls.items())
                + " per message"
            )
    report(console, runs, configs)
    if args.json:
        args.json.write_text(json.dumps(as_json(args, runs, configs), indent=2) + "\n")
        console.print(f"figures written to {args.json}")
    return 0


def cold_starts(args: argparse.Namespace, console: Console) -> int:
    """Start and stop fresh simmta instances; report spawn-to-greeting times."""
    times = []
    for n in range(1, args.cold_starts + 1):
        target = SimmtaTarget(events=args.events != "off", subscriber=False, settings=args.set)
        try:
            endpoint = target.start()
        finally:
            target.stop()
        assert endpoint.cold_start is not None
        times.append(endpoint.cold_start)
        console.print(f"cold start {n}: {endpoint.cold_start:.3f} s")
    console.print(
        f"simmta cold start (spawn of 'simmta run' until the SMTP greeting), {len(times)} "
        f"starts: median {median(times):.3f} s, min {min(times):.3f} s, max {max(times):.3f} s"
    )
    if args.json:
        figures = {"schema": "simmta-bench/1", "machine": machine(), "cold_start_s": times}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


# --- one measurement ------------------------------------------------------------------------


def measure(
    target: Target, args: argparse.Namespace, round_: int, console: Console, traced: int = 0
) -> RunResult:
    """One run; with ``traced`` messages (round 0) under strace, for its counts only."""
    messages = traced or args.messages
    result = RunResult(target.label, round_, messages, load_average=os.getloadavg()[0])
    try:
        endpoint = target.start()
        _measure_started(endpoint, args, result, console, traced > 0)
    finally:
        target.stop()
    result.cold_start_s = endpoint.cold_start
    result.events_seen = getattr(target, "events_seen", None)
    subscriber_cpu = getattr(target, "subscriber_cpu_s", None)
    if subscriber_cpu is not None and result.completed:
        result.subscriber_cpu_ms_per_message = subscriber_cpu / result.completed * 1000
    return result


def _measure_started(
    endpoint: Endpoint, args: argparse.Namespace, result: RunResult, console: Console, traced: bool
) -> None:
    run_id = f"b{uuid.uuid4().hex[:12]}"
    spec = LoadSpec(
        endpoint.host,
        endpoint.port,
        result.messages,
        args.size,
        args.concurrency,
        args.per_connection,
        args.sender,
        endpoint.recipient,
        run_id,
        deadline=args.load_timeout or 600.0 + 0.1 * args.messages,
    )
    give_up = time.monotonic() + spec.deadline + args.drain_timeout
    tree = ProcTree(endpoint.root_pid) if endpoint.root_pid else None
    cpu_before = tree.cpu_seconds() if tree else math.nan
    client_before = _own_cpu_seconds()
    sampler = TreeSampler(tree, give_up) if tree else None
    strace = bench_syscalls.Strace([st.pid for st in tree.members()]) if tree and traced else None
    if strace:
        strace.start()
    with _progress(console) as progress:
        label = f"[bold]{result.label}[/] round {result.round}"
        sent_task = progress.add_task(f"{label} accepted", total=result.messages)
        delivered_task = (
            progress.add_task(f"{label} delivered", total=result.messages) if endpoint.maildir else None
        )
        watcher = None
        if endpoint.maildir and delivered_task is not None:
            watcher = MaildirWatcher(
                endpoint.maildir,
                run_id,
                give_up,
                lambda n: progress.update(delivered_task, completed=n),
            )
            watcher.start()
        if sampler:
            sampler.start()
        load = asyncio.run(generate_load(spec, lambda: progress.advance(sent_task)))
        accepted = load.accepted
        if watcher:
            watcher.wait_for(len(accepted), min(give_up, time.monotonic() + args.drain_timeout), DRAIN_IDLE)
            watcher.stop()
            if not args.keep:
                watcher.remove_delivered()
    cpu_after = tree.cpu_seconds() if tree else math.nan
    calls = strace.stop() if strace else {}
    client_cpu = _own_cpu_seconds() - client_before
    if sampler:
        sampler.stop()
    result.sent, result.accepted, result.errors = len(load.records), len(accepted), load.errors
    result.seconds = time.time() - load.started
    if accepted:
        result.accepted_per_s = rate(len(accepted), load.started, max(r.accepted or 0.0 for r in accepted))
    result.accept_latency = summarize([(r.accepted or 0.0) - r.started for r in accepted])
    if watcher:
        started = {r.bench_id: r.started_coarse for r in load.records}
        delivered = {i: t for i, t in watcher.delivered.items() if i in started}
        result.delivered, result.duplicates = len(delivered), watcher.duplicates
        if delivered:
            result.delivered_per_s = rate(len(delivered), load.started, max(delivered.values()))
        result.delivery_latency = summarize([t - started[i] for i, t in delivered.items()])
    done = result.completed
    if strace:
        result.syscalls_per_message = bench_syscalls.per_message(calls, done)
    if tree and done:
        result.cpu_ms_per_message = (cpu_after - cpu_before) / done * 1000
    if done:
        result.client_cpu_ms_per_message = client_cpu / done * 1000
    if sampler and done:
        result.cpu_by_process = {
            name: {"ms_per_message": seconds / done * 1000, "processes": count}
            for name, (seconds, count) in sampler.cpu_by_name().items()
        }
        result.processes_per_message = sum(v["processes"] for v in result.cpu_by_process.values()) / done
    if sampler:
        result.timeline = [
            (round(t - load.started, 2), round(mem / 2**20, 1), fds, procs)
            for t, mem, fds, procs in sampler.timeline
        ]
    if sampler and sampler.peak:
        result.peak_memory_mb = sampler.peak / 2**20


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


# --- report --------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 0) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def _lat(lat: Latency | None) -> str:
    if lat is None or not lat.n:
        return "-"
    return "/".join(_ms(v) for v in (lat.p50, lat.p95, lat.p99))


def _ms(seconds: float) -> str:
    """Milliseconds, with a decimal only where it means something (the clock tick is 4 ms)."""
    ms = seconds * 1000
    return f"{ms:.1f}" if ms < 10 else f"{ms:.0f}"


def _one_line(r: RunResult) -> str:
    errors = sum(r.errors.values())
    parts = [f"{r.label} round {r.round}: {r.accepted}/{r.messages} accepted ({_f(r.accepted_per_s)}/s)"]
    if r.delivered is not None:
        parts.append(f"{r.delivered} delivered ({_f(r.delivered_per_s)}/s)")
    parts.append(
        f"server CPU {_f(r.cpu_ms_per_message, 2)} ms/msg (bench's own {_f(r.client_cpu_ms_per_message, 2)})"
    )
    if len(r.timeline) >= 10:
        early, last = r.timeline[len(r.timeline) // 10], r.timeline[-1]
        parts.append(
            f"\n  server tree at {early[0]:.0f} s / at the end: "
            f"{early[1]:.0f} / {last[1]:.0f} MiB, "
            f"{early[2]} / {last[2]} open files, {early[3]} / {last[3]} processes"
        )
    if not math.isnan(r.processes_per_message):
        parts.append(f"\n  server processes seen per message: {r.processes_per_message:.2f}")
    if r.cpu_by_process:
        parts.append(
            "\n  server CPU ms/msg by process: "
            + " ".join(
                f"{name}[{int(v['processes'])}] {v['ms_per_message']:.2f}"
                for name, v in r.cpu_by_process.items()
                if v["ms_per_message"] >= 0.01
            )
        )
    if r.events_seen is not None:
        parts.append(
            f"subscriber read {r.events_seen} events ({_f(r.subscriber_cpu_ms_per_message, 2)} ms CPU/msg)"
        )
    if r.cold_start_s is not None:
        parts.append(f"cold start {r.cold_start_s:.2f} s")
    if result_busy(r):
        parts.append(f"[yellow]machine busy: load average {r.load_average:.1f} at the start[/]")
    if errors:
        parts.append(f"[red]{errors} errors {r.errors}[/]")
    return ", ".join(parts)


def result_busy(r: RunResult) -> bool:
    """Other work on the machine when the run began (the figures are then pessimistic)."""
    return r.load_average > (os.cpu_count() or 1)


def report(console: Console, runs: list[RunResult], configs: list[Configuration]) -> None:
    table = Table(
        title="simmta bench: each run (250 = accepted, e2e = delivered into the Maildir)",
        title_justify="left",
        caption="latencies in ms as p50/p95/p99; CPU is the server's process tree; "
        "load: the 1-minute load average when the run began",
        caption_justify="left",
    )
    for name in (
        "configuration",
        "rd",
        "accepted",
        "delivered",
        "acc/s",
        "dlv/s",
        "250 ms",
        "e2e ms",
        "CPU ms/msg",
        "peak MiB",
        "cold s",
        "load",
        "err",
    ):
        justify = "left" if name == "configuration" else "right"
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for r in runs:
        table.add_row(
            r.label,
            str(r.round),
            str(r.accepted),
            "-" if r.delivered is None else str(r.delivered),
            _f(r.accepted_per_s),
            _f(r.delivered_per_s),
            _lat(r.accept_latency),
            _lat(r.delivery_latency),
            _f(r.cpu_ms_per_message, 2),
            _f(r.peak_memory_mb, 1),
            _f(r.cold_start_s, 2),
            _f(r.load_average, 1),
            str(sum(r.errors.values())),
        )
    console.print(table)
    summary = medians(runs, [label for label, _ in configs])
    if len(runs) > 1:
        med = Table(title="medians per configuration", title_justify="left")
        for name in (
            "configuration",
            "accepted/s",
            "delivered/s",
            "250 p50 ms",
            "e2e p50 ms",
            "e2e p99 ms",
            "CPU ms/msg",
            "peak MiB",
            "cold start s",
            *SYSCALL_COLUMNS,
        ):
            med.add_column(name, justify="left" if name == "configuration" else "right", no_wrap=True)
        for label, m in summary.items():
            med.add_row(
                label,
                _f(m["accepted_per_s"]),
                _f(m["delivered_per_s"]),
                _f(m["accept_p50_ms"], 1),
                _f(m["delivery_p50_ms"], 1),
                _f(m["delivery_p99_ms"], 1),
                _f(m["cpu_ms_per_message"], 2),
                _f(m["peak_memory_mb"], 1),
                _f(m["cold_start_s"], 2),
                *(_f(m.get(key, math.nan), 2) for key in SYSCALL_COLUMNS.values()),
            )
        med.caption = (
            "CPU: the server's process tree and the event subscriber, if any; "
            "fsync, rename, link and all system calls: per message, in the untimed run under strace -c -f"
        )
        med.caption_justify = "left"
        console.print(med)
    pairs = ratios(runs, [label for label, _ in configs])
    if pairs:
        tab = Table(
            title="ratios, round by round (end-to-end rate if measured, else accepted)",
            title_justify="left",
        )
        tab.add_column("pair")
        rounds = sorted({r.round for r in runs})
        for n in rounds:
            tab.add_column(f"round {n}", justify="right")
        tab.add_column("median", justify="right")
        tab.add_column("spread", justify="right")
        for pair in pairs:
            for what, key in (("delivered/s", "by_round"), ("CPU/msg", "cpu_by_round")):
                tab.add_row(
                    f"{pair['pair']} {what}",
                    *(_f(x, 2) for x in pair[key]),
                    _f(median(pair[key]), 2),
                    _spread(pair[key]),
                )
        console.print(tab)


SYSCALL_COLUMNS = {"fsync": "fsync", "rename": "rename", "link": "link", "calls": "syscalls"}


def widest_spread(runs: list[RunResult], labels: list[str]) -> float:
    """The largest highest/lowest of any pair's ratios over the rounds (1.0: all rounds agree)."""
    widest = 1.0
    for pair in ratios(runs, labels):
        for key in ("by_round", "cpu_by_round"):
            finite = [v for v in pair[key] if not math.isnan(v) and v > 0]
            if finite:
                widest = max(widest, max(finite) / min(finite))
    return widest


def _spread(values: list[float]) -> str:
    """Lowest and highest of the rounds."""
    finite = [v for v in values if not math.isnan(v)]
    return f"{min(finite):.2f}-{max(finite):.2f}" if finite else "-"


def medians(runs: list[RunResult], labels: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    for label in labels:
        mine = [r for r in runs if r.label == label]

        def lat(r: RunResult, which: str, p: str) -> float:
            value = getattr(r, which)
            return getattr(value, p) * 1000 if value and value.n else math.nan

        out[label] = {
            "accepted_per_s": median([r.accepted_per_s for r in mine]),
            "delivered_per_s": median([r.delivered_per_s for r in mine]),
            "accept_p50_ms": median([lat(r, "accept_latency", "p50") for r in mine]),
            "delivery_p50_ms": median([lat(r, "delivery_latency", "p50") for r in mine]),
            "delivery_p99_ms": median([lat(r, "delivery_latency", "p99") for r in mine]),
            "cpu_ms_per_message": median([r.cpu_ms_per_message for r in mine]),
            "peak_memory_mb": median([r.peak_memory_mb for r in mine]),
            "cold_start_s": median(
                [r.cold_start_s if r.cold_start_s is not None else math.nan for r in mine]
            ),
            **(mine[0].syscalls_per_message if mine else {}),
        }
    return out


def ratios(runs: list[RunResult], labels: list[str]) -> list[dict[str, Any]]:
    """The first configuration against each other one, and simmta without events against
    the target: round by round, then the median of the rounds; the same for CPU per message
    (server tree and subscriber)."""
    pairs = [(labels[0], other) for other in labels[1:]]
    if len(labels) > 2:
        pairs.append((labels[1], labels[2]))
    out = []
    for a, b in pairs:
        by_round, cpu_by_round = [], []
        for n in sorted({r.round for r in runs}):
            ra = next((r for r in runs if r.label == a and r.round == n), None)
            rb = next((r for r in runs if r.label == b and r.round == n), None)
            by_round.append(ratio(ra.headline, rb.headline) if ra and rb else math.nan)
            cpu = ratio(ra.cpu_with_subscriber, rb.cpu_with_subscriber) if ra and rb else math.nan
            cpu_by_round.append(cpu)
        out.append(
            {
                "pair": f"{a} / {b}",
                "by_round": by_round,
                "median": median(by_round),
                "cpu_by_round": cpu_by_round,
                "cpu_median": median(cpu_by_round),
            }
        )
    return out


def as_json(args: argparse.Namespace, runs: list[RunResult], configs: list[Configuration]) -> dict[str, Any]:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    labels = [label for label, _ in configs]
    return {
        "schema": "simmta-bench/1",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "argv": sys.argv,
        "machine": machine(),
        "settings": {
            "messages": args.messages,
            "size": args.size,
            "concurrency": args.concurrency,
            "per_connection": args.per_connection,
            "target": f"{args.target[0]}:{args.target[1]}" if args.target else None,
        },
        "runs": clean([r.as_json() for r in runs]),
        "medians": clean(medians(runs, labels)),
        "ratios": clean(ratios(runs, labels)),
    }


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
