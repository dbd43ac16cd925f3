"""A lesson's MTA: a fresh instance with the lesson's setup, and the actions done on it.

``LessonMTA`` writes the lesson's config overrides to ``DIR/main.toml``, starts
``simmta run`` as a child process (``--lab`` if the lesson asks), waits for its
status, applies starting faults and pacing through the control socket, and
stops it again (SIGTERM, then SIGKILL after a deadline). ``perform()`` carries
out one ``SolutionAction``: a ``python -m simmta ...`` subprocess with the
instance chosen by the runner, exactly the command the panel shows (inputs no
ordinary client sends go through ``simmta send --raw``). Both the interactive
lesson ("do it for me") and ``simmta lesson check --autoplay`` use this.

Trust: runs only simmta's own tools, with arguments validated when the
lesson was loaded; nothing from the event stream becomes a command, except a
queue ID (``${last_qid}``), which is checked to be a plain token first.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simmta.core import control, privilege
from simmta.core.errors import SimmtaError
from simmta.core.instance import Instance
from simmta.core.pyexec import python_module
from simmta.lessons.format import Lesson, SolutionAction

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_QID = re.compile(r"[A-Za-z0-9]{1,40}")


@dataclass(frozen=True)
class ActionResult:
    action: SolutionAction
    ok: bool
    output: str

    def summary(self, lines: int = 6) -> str:
        """The command, FAILED if it did, and the last ``lines`` lines it printed."""
        tail = self.output.strip().splitlines()[-lines:]
        return (
            self.action.describe()
            + ("" if self.ok else " FAILED")
            + ("\n    " + "\n    ".join(tail) if tail else "")
        )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def write_main_toml(path: Path, overrides: Mapping[str, Any]) -> None:
    lines = ["# written by 'simmta lesson': this lesson's setup"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in overrides.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def simmta_argv(args: tuple[str, ...] | list[str], instance: Instance) -> list[str]:
    """``python -P -m simmta CMD --instance DIR ARGS...`` (the instance after the command)."""
    return python_module("simmta", args[0], "--instance", str(instance.path), *args[1:])


class LessonMTA:
    """One MTA for one lesson run, in its own instance directory."""

    def __init__(self, lesson: Lesson, instance_dir: Path, log: Callable[[str], None] | None = None):
        self.lesson = lesson
        self.instance = Instance(instance_dir)
        self.log = log or (lambda _text: None)
        self.process: subprocess.Popen[bytes] | None = None
        self.background: list[subprocess.Popen[bytes]] = []

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SIMMTA_INSTANCE": str(self.instance.path)}

    # -- life cycle
    def start(self, fresh: bool = True) -> dict[str, Any]:
        """Start ``simmta run`` with the lesson's setup; master's status once it is up."""
        path = self.instance.path
        if fresh:
            privilege.remove_instance(path)
        path.mkdir(parents=True, exist_ok=True)
        write_main_toml(self.instance.main_cf, self.lesson.setup.config)
        self.instance.log.mkdir(parents=True, exist_ok=True)
        args = ["run", "--smtp-port", "0", "--profile", self.lesson.setup.profile] + (
            ["--lab"] if self.lesson.setup.lab else []
        )
        with open(path / "lesson-run.log", "ab") as out:
            self.process = subprocess.Popen(
                simmta_argv(args, self.instance),
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        status = self._wait_for_status()
        setup = self.lesson.setup
        if setup.peer_fault != "none":
            control.request(self.instance.control_socket, "fault", target="peer", value=setup.peer_fault)
        if setup.pace != "live":
            control.request(self.instance.control_socket, "pace", mode=setup.pace)
        return status

    def _wait_for_status(self) -> dict[str, Any]:
        deadline = time.monotonic() + START_TIMEOUT
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise SimmtaError("simmta run exited at start:\n" + self.run_log_tail())
            with contextlib.suppress(SimmtaError):
                status = self.instance.status()
                if self.instance.bus_socket.exists() and self.instance.control_socket.exists():
                    return status
            if time.monotonic() >= deadline:
                raise SimmtaError(
                    f"simmta run did not come up within {START_TIMEOUT:.0f} s:\n" + self.run_log_tail()
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.1)  # bounded poll: returns at once if it exits

    def run_log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.instance.path / "lesson-run.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        for proc in self.background:
            _end(proc, 3.0)
        self.background.clear()
        if self.process is not None:
            _end(self.process, STOP_TIMEOUT)
            self.process = None

    # -- actions
    def perform(self, action: SolutionAction, context: Mapping[str, Any], timeout: float) -> ActionResult:
        args = [self._fill(a, context) for a in action.argv]
        argv = simmta_argv(args, self.instance)
        stdin = subprocess.PIPE if action.stdin is not None else subprocess.DEVNULL
        if action.background:
            proc = subprocess.Popen(
                argv,
                env=self.env,
                stdin=stdin,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            if action.stdin is not None and proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.write(action.stdin.encode())
                    proc.stdin.close()
            self.background.append(proc)
            return ActionResult(action, True, "(started in the background)")
        try:
            done = subprocess.run(
                argv,
                env=self.env,
                input=action.stdin.encode() if action.stdin is not None else None,
                stdin=None if action.stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return ActionResult(action, action.may_fail, f"timed out after {timeout:.0f} s")
        output = (done.stdout + done.stderr).decode(errors="replace")
        return ActionResult(action, done.returncode == 0 or action.may_fail, output)

    def _fill(self, arg: str, context: Mapping[str, Any]) -> str:
        def value(m: re.Match[str]) -> str:
            name = m.group(1)
            v = context.get(name)
            if name == "last_qid" and (not isinstance(v, str) or not _QID.fullmatch(v)):
                raise SimmtaError("no queue ID seen yet for ${last_qid}")
            return str(v)

        return re.sub(r"\$\{(\w+)\}", value, arg)


def _end(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the process (master stops its children), SIGKILL its group after ``timeout``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
