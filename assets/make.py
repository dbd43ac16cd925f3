"""Regenerate assets/: demo recordings made on a real MTA, and PNG screenshots of the TUI.

    python3 assets/make.py                 # the demos, then the screenshots
    python3 assets/make.py --demos         # only the recordings (assets/demos/*.jsonl)
    python3 assets/make.py --screenshots   # only the PNGs, drawn from the shipped recordings

The demos are short ``simmta record`` files of a fresh ``simmta run --lab``
(run as root they show real privilege separation): a normal delivery, a
bounce, a kill and its recovery, lab attempts; and the same delivery on
the qmail and Sendmail profiles (``--profile``), for the trilogy. ``simmta tui --replay
assets/demos/NAME.jsonl`` plays one offline. Regenerate them whenever the
event schema changes (tests/test_assets.py checks that the shipped ones
still replay).

The screenshots are simmta's own TUI (``SimmtaApp``, projector theme)
replaying those demos at chosen moments (and the trilogy view, on three live
MTAs), saved as SVG by Textual and turned
into PNG by headless Chromium (``apt-get install chromium fonts-symbola``:
the second draws the few symbols the usual monospace fonts lack).

Trust: starts only its own MTA in a temporary directory and stops it by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parent
DEMOS = ASSETS / "demos"
SIZE = (120, 36)  # cells: readable on a projector and in a README
# A deferred message waits in deferred/ until the demo requeues it.
CONFIG = 'queue_run_delay = "60s"\nminimal_backoff_time = "60s"\n'
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def simmta(*args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "simmta", *args]


def wait(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit(f"make.py: timed out waiting for {what}")
        time.sleep(0.05)
    return value


class Lab:
    """A fresh ``simmta run --lab`` in a temporary directory."""

    def __init__(self, profile: str = "postfix") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="simmta-assets-"))
        self.dir.chmod(0o711)  # run as root, mail_owner must reach the queue directory
        self.instance = self.dir / "instance"
        self.instance.mkdir()
        (self.instance / "main.toml").write_text(CONFIG)
        self.proc = subprocess.Popen(
            simmta(
                "run", "--lab", "--smtp-port", "0", "--profile", profile, "--instance", str(self.instance)
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        status = wait(self._status, "the MTA to start")
        self.port = int(status["smtp"]["port"])

    def _status(self) -> dict[str, Any] | None:
        with contextlib.suppress(OSError, ValueError):
            return dict(json.loads((self.instance / "run" / "status.json").read_text()))
        return None

    def run(self, *args: str) -> str:
        done = subprocess.run(
            simmta(*args, "--instance", str(self.instance)),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    def queued(self, qid: str) -> dict[str, Any]:
        """``simmta queue --json``'s entry for one message (empty if it is not queued)."""
        entries = [json.loads(line) for line in self.run("queue", "--json").splitlines()]
        return next((e for e in entries if e["queue_id"] == qid), {})

    def send(self, rcpt: str, subject: str) -> str:
        """One message over SMTP; its queue ID from the 250 reply."""
        body = f"From: alice@simmta.test\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\nA simmta demo.\r\n"
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as s:
            s.ehlo("demo.example")
            s.mail("alice@simmta.test")
            s.rcpt(rcpt)
            _, text = s.data(body.encode())
        return text.decode().rsplit(" ", 1)[-1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


class Recording:
    """``simmta record`` into a file while a demo runs."""

    def __init__(self, lab: Lab, path: Path) -> None:
        self.path = path
        path.unlink(missing_ok=True)  # never mistake the last run's file for this one
        self.proc = subprocess.Popen(
            simmta("record", "-o", str(path), "--instance", str(lab.instance)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.until(lambda e: e["kind"] == "bus" and e["type"] == "subscriber", "the recorder to join")

    def events(self) -> list[dict[str, Any]]:
        with contextlib.suppress(OSError):
            return [json.loads(line) for line in self.path.read_text().splitlines() if line.endswith("}")]
        return []

    def until(self, match: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        return wait(lambda: next((e for e in self.events() if match(e)), None), what)

    def stop(self) -> None:
        time.sleep(1.0)  # the processes' exits and idle states after the last step, for the replay
        # SIGTERM, not SIGINT: started from a background job the recorder ignores SIGINT
        # (inherited); it writes each line as it comes, so a signal's stop loses none.
        self.proc.terminate()
        self.proc.wait(30)


def is_delivered(rcpt: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["kind"] == "delivery" and e["type"] == "delivered" and e["data"].get("rcpt") == rcpt


def demo_delivery(lab: Lab, rec: Recording) -> None:
    lab.send("bob@simmta.test", "A normal delivery")
    rec.until(is_delivered("bob@simmta.test"), "the delivery to bob")


def demo_bounce(lab: Lab, rec: Recording) -> None:
    lab.run("peer", "fault", "tempfail")
    qid = lab.send("someone@example.net", "Deferred, then bounced")
    rec.until(lambda e: e["kind"] == "queue" and e["type"] == "deferred" and e["qid"] == qid, "the deferral")
    wait(lambda: {"queue_id": qid, "queue_name": "deferred"}.items() <= lab.queued(qid).items(), "deferred/")
    lab.run("peer", "fault", "permfail")
    lab.run("requeue", qid)
    rec.until(lambda e: e["kind"] == "delivery" and e["type"] == "bounce", "the bounce")
    rec.until(is_delivered("alice@simmta.test"), "the DSN in alice's mailbox")
    lab.run("peer", "fault", "none")


def demo_kill(lab: Lab, rec: Recording) -> None:
    lab.run("ctl", "kill", "qmgr")
    rec.until(lambda e: e["kind"] == "process" and e["type"] == "replaced", "qmgr to come back")
    lab.send("carol@simmta.test", "After the kill")
    rec.until(is_delivered("carol@simmta.test"), "the delivery after the kill")


def demo_lab(lab: Lab, rec: Recording) -> None:
    lab.run("ctl", "lab", "read-secret", "--service", "smtpd")
    lab.run("ctl", "lab", "regain-root", "--service", "qmgr")
    lab.run("ctl", "lab", "write-maildir", "--service", "smtp")
    wait(lambda: len([e for e in rec.events() if e["kind"] == "lab"]) >= 3, "three lab answers")


DEMO_STEPS = {
    "delivery": demo_delivery,
    "bounce": demo_bounce,
    "kill-and-recovery": demo_kill,
    "lab-attempt": demo_lab,
}


# The trilogy: the same delivery on the other architectures (simmta run --profile).
OTHER_PROFILES = ("qmail", "sendmail")


def make_demos(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    made = []
    plans = [("postfix", DEMO_STEPS)] + [(p, {f"delivery-{p}": demo_delivery}) for p in OTHER_PROFILES]
    for profile, demos in plans:
        lab = Lab(profile)
        try:
            for name, steps in demos.items():
                path = out / f"{name}.jsonl"
                rec = Recording(lab, path)
                try:
                    steps(lab, rec)
                finally:
                    rec.stop()
                made.append(path)
                print(f"make.py: {path} ({len(rec.events())} events)")
        finally:
            lab.stop()
    return made


# Screenshots ------------------------------------------------------------------
def position_of(events: list[dict[str, Any]], match: Callable[[dict[str, Any]], bool]) -> int:
    """How many events up to and including the first that matches."""
    return next(i + 1 for i, e in enumerate(events) if match(e))


def after(kind: str, type_: str, **data: str) -> Callable[[list[dict[str, Any]]], int]:
    """The moment just after the first ``kind/type_`` event whose data has these values."""
    return lambda events: position_of(
        events,
        lambda e: (
            e["kind"] == kind and e["type"] == type_ and all(e["data"].get(k) == v for k, v in data.items())
        ),
    )


def mid_flight(events: list[dict[str, Any]]) -> int:
    """Just before the delivery into bob's Maildir (whatever the architecture calls its hops)."""
    return position_of(events, lambda e: e["kind"] == "delivery" and e["type"] == "delivered") - 1


# name: (demo, view, the moment in the demo, with the lesson panel, size in cells)
SHOTS: dict[str, tuple[str, str, Callable[[list[dict[str, Any]]], int], bool, tuple[int, int]]] = {
    "map": ("delivery", "map", after("ipc", "request", to="local"), False, (200, 50)),
    "processes": ("kill-and-recovery", "procs", len, False, SIZE),
    "queue": ("bounce", "queue", after("queue", "deferred"), False, SIZE),
    "events": ("lab-attempt", "events", len, False, (180, 24)),
    "lesson": ("delivery", "map", len, True, (200, 50)),
    **{
        f"map-{p}": (f"delivery-{p}", "map", lambda ev: mid_flight(ev), False, (200, 50))
        for p in OTHER_PROFILES
    },
}


async def svg_of(demo: Path, view: str, position: int, lesson: bool, size: tuple[int, int]) -> str:
    from simmta.lessons import catalog
    from simmta.lessons.app import LessonController, lesson_tui
    from simmta.tui import themes
    from simmta.tui.app import SimmtaApp
    from simmta.tui.feed import ReplayFeed, load_recording

    events, problem = load_recording(demo)
    if problem:
        raise SystemExit(f"make.py: {demo}: {problem}")
    feed = ReplayFeed(events, playing=False)
    feed.step(position)  # the first ``position`` events applied
    stamp = float(events[position - 1]["ts"])
    app = SimmtaApp(feed, clock=lambda: stamp, theme="projector")
    if lesson:  # the lesson screen itself (``simmta lesson 2``), its MTA not started, fed the demo
        os.environ["SIMMTA_LESSON_PROGRESS"] = os.devnull  # keep no progress (never replaced)
        controller = LessonController(catalog.find("2"), Path("/srv/simmta-demo"), True)
        for event in events[:position]:
            controller.runner.feed(event)
        app = lesson_tui(controller)
        app.feed, app.clock = feed, lambda: stamp
    async with app.run_test(size=size) as pilot:
        app.theme = themes.THEMES["projector"]
        await pilot.pause()
        app.action_view(view)
        if lesson:
            await pilot.pause(1.0)  # the panel's Markdown renders in a worker
            await app.workers.wait_for_complete()
        await pilot.pause(0.3)
        return app.export_screenshot(title="simmta")


async def trilogy_svg(size: tuple[int, int]) -> str:
    """``simmta trilogy``'s view on three live MTAs (one per profile): one message sent to all
    three, the counts and the blast-radius matrix filled in."""
    from simmta.tui import themes
    from simmta.tui.trilogy import TrilogyApp, members

    labs = {profile: Lab(profile) for profile in ("sendmail", "qmail", "postfix")}
    try:
        app = TrilogyApp(members({profile: lab.instance for profile, lab in labs.items()}))
        async with app.run_test(size=size) as pilot:
            app.theme = themes.THEMES["projector"]

            async def until(done: Callable[[], bool], what: str) -> None:
                deadline = time.monotonic() + 60
                while not done():
                    if time.monotonic() > deadline:
                        raise SystemExit(f"make.py: trilogy: timed out waiting for {what}")
                    await pilot.pause(0.2)

            await until(lambda: all(m.model.smtp for m in app.members), "three snapshots")
            await pilot.press("s")
            await until(lambda: all(m.model.counts.get("delivered") for m in app.members), "three deliveries")
            await until(
                lambda: all(m.report and m.model.state.started for m in app.members),
                "the counts and the blast radius",
            )
            await pilot.pause(2.5)  # the tokens at rest (the counts follow each fold)
            svg = app.export_screenshot(title="simmta trilogy")
        for m in app.members:
            m.feed.stop()
        return svg
    finally:
        for lab in labs.values():
            lab.stop()


def png(svg: str, out: Path, chromium: str) -> None:
    """Chromium renders the SVG at its own size and saves it as PNG."""
    width, height = (int(float(v)) for v in re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg).groups())  # type: ignore[union-attr]
    with tempfile.TemporaryDirectory(prefix="simmta-assets-") as tmp:
        page = Path(tmp) / "shot.svg"
        page.write_text(svg)
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={tmp}/profile",
                f"--window-size={width},{height}",
                f"--screenshot={out}",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def make_screenshots(demos: Path, out: Path) -> list[Path]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("make.py: the PNGs need Chromium (apt-get install chromium)")
    from simmta.tui.feed import load_recording

    made = []
    for name, (demo, view, where, lesson, size) in SHOTS.items():
        path = demos / f"{demo}.jsonl"
        events, _ = load_recording(path)
        svg = asyncio.run(svg_of(path, view, where(events), lesson, size))
        target = out / f"{name}.png"
        png(svg, target, chromium)
        made.append(target)
        print(f"make.py: {target}")
    target = out / "trilogy.png"
    png(asyncio.run(trilogy_svg((200, 50))), target, chromium)
    print(f"make.py: {target}")
    return [*made, target]


def main() -> int:
    p = argparse.ArgumentParser(prog="assets/make.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--demos", action="store_true", help="only the recordings")
    p.add_argument("--screenshots", action="store_true", help="only the PNGs (from the shipped recordings)")
    p.add_argument("--out", type=Path, default=ASSETS, help="where to write (default: assets/)")
    args = p.parse_args()
    both = not (args.demos or args.screenshots)
    if args.demos or both:
        make_demos(args.out / "demos")
    if args.screenshots or both:
        make_screenshots(args.out / "demos" if (args.out / "demos").exists() else DEMOS, args.out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    raise SystemExit(main())
