"""Test kit: let uid 65534 run this interpreter for a test session, then put the modes back.

Run as root, several suites start simmta as uid 65534, which must execute
this Python (pyenv keeps it under root's 0700 home) and import simmta (an
editable install points into the checkout, which may sit in a 0700 temp
dir). Only the search bit (o+x) is added, only on the directories in the
way, and each directory's mode is restored when the last test session that
needed it ends: sessions running at the same time on one machine share one
record in a root-only directory (``/run/simmta-tests``), so one session
finishing does not take the path away from another still running.
"""

import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

STATE_DIR = Path("/run/simmta-tests")


def in_the_way() -> set[Path]:
    """The directories above this interpreter and the simmta package being tested."""
    import simmta

    starts = {
        Path(sys.executable),
        Path(sys.executable).resolve(),
        Path(sys.base_prefix) / "x",
        Path(simmta.__file__).resolve(),
    }
    return {p for start in starts for p in start.parents}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _record(state_dir: Path) -> Iterator[dict[str, object]]:
    """The shared record, locked while the caller changes it."""
    state_dir.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(state_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = state_dir / "modes.json"
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            state = {"modes": {}, "sessions": []}
        yield state
        if state["sessions"]:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, path)
        else:
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)


@contextlib.contextmanager
def python_reachable(dirs: Iterable[Path] | None = None, state_dir: Path = STATE_DIR) -> Iterator[None]:
    """o+x on ``dirs`` (default: ``in_the_way()``) for the duration; root only, else nothing."""
    if os.geteuid() != 0:
        yield
        return
    me = os.getpid()
    with _record(state_dir) as state:
        modes: dict[str, int] = state["modes"]  # type: ignore[assignment]
        state["sessions"] = [p for p in state["sessions"] if _alive(p)] + [me]  # type: ignore[attr-defined]
        for d in sorted(dirs if dirs is not None else in_the_way()):
            mode = d.stat().st_mode & 0o7777
            if not mode & 0o001:
                modes.setdefault(str(d), mode)
                os.chmod(d, mode | 0o001)
    try:
        yield
    finally:
        with _record(state_dir) as state:
            state["sessions"] = [p for p in state["sessions"] if p != me and _alive(p)]  # type: ignore[attr-defined]
            if not state["sessions"]:
                for d, mode in state["modes"].items():  # type: ignore[attr-defined]
                    with contextlib.suppress(FileNotFoundError):
                        if os.stat(d).st_mode & 0o7777 == mode | 0o001:  # nobody changed it since
                            os.chmod(d, mode)
                state["modes"] = {}
