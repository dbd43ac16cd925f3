"""The instance directory: everything of one MTA lives below it, nothing outside.

    DIR/main.toml        optional main parameters (see simmta.core.config)
    DIR/services.toml    optional services table (default: the shipped one)
    DIR/queue/           queue_directory, the chroot jail: maildrop incoming
                         active deferred hold corrupt defer bounce private public
    DIR/mail/<user>/Maildir   local users' mailboxes
    DIR/peer/Maildir     what "the Internet" (the peer) received
    DIR/run/             0700: master.pid, status.json, bus.sock, control.sock
    DIR/log/             master.log
    DIR/lab/secret       a root-only file the lab tries to read (with --lab)

Trust: paths only; creating and securing the tree is master's job (it knows
the privilege mode).
"""

import json
import os
from pathlib import Path
from typing import Any

from simmta.core import config as config_mod
from simmta.core import names
from simmta.core import services as services_mod
from simmta.core.errors import SimmtaError


def default_dir() -> Path:
    """Per-user default: $SIMMTA_INSTANCE, else $XDG_STATE_HOME/simmta/default."""
    if env := os.environ.get("SIMMTA_INSTANCE"):
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "simmta" / "default"


class Instance:
    def __init__(self, path: Path | str | None = None):
        self.path = Path(path).absolute() if path else default_dir().absolute()

    # Layout -------------------------------------------------------------
    @property
    def main_cf(self) -> Path:
        return self.path / "main.toml"

    @property
    def master_cf(self) -> Path:
        return self.path / "services.toml"

    @property
    def queue(self) -> Path:
        return self.path / "queue"

    @property
    def mail(self) -> Path:
        return self.path / "mail"

    def maildir(self, user: str) -> Path:
        return self.mail / user / "Maildir"

    @property
    def peer_maildir(self) -> Path:
        return self.path / "peer" / "Maildir"

    def mailboxes(self) -> list[tuple[str, Path]]:
        """(name, Maildir) of every mailbox: each local user's (by name), then the peer's."""
        # (names from mail/ itself: each user's directory is 0700, its own, and may not be searchable)
        users = sorted(d.name for d in self.mail.iterdir() if d.is_dir()) if self.mail.is_dir() else []
        return [*((u, self.maildir(u)) for u in users), (names.PEER, self.peer_maildir)]

    @property
    def run(self) -> Path:
        return self.path / "run"

    @property
    def log(self) -> Path:
        return self.path / "log"

    @property
    def lab(self) -> Path:
        return self.path / "lab"

    @property
    def pid_file(self) -> Path:
        return self.run / "master.pid"

    @property
    def status_file(self) -> Path:
        return self.run / "status.json"

    @property
    def bus_socket(self) -> Path:
        return self.run / "bus.sock"

    @property
    def control_socket(self) -> Path:
        return self.run / "control.sock"

    def queue_dir(self, name: str) -> Path:
        return self.queue / name

    # Configuration --------------------------------------------------------
    def config(self) -> config_mod.Config:
        return config_mod.load(self.main_cf)

    def services(self, profile: str | None = None) -> services_mod.ServiceTable:
        """DIR/services.toml if there is one, else the shipped ``profile``'s table
        (by default the profile the instance's master runs, else postfix)."""
        return services_mod.load(self.master_cf, profile or self.profile())

    def profile(self) -> str:
        """The profile the running (or last) master of this instance used."""
        try:
            name = json.loads(self.status_file.read_text()).get("profile")
        except (OSError, ValueError, AttributeError):
            name = None
        return name if isinstance(name, str) else services_mod.DEFAULT_PROFILE

    # Running master -------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """master's status.json, if master is running; SimmtaError otherwise."""
        try:
            status = json.loads(self.status_file.read_text())
            pid = int(status["master_pid"])
            os.kill(pid, 0)
        except (OSError, ValueError, KeyError, TypeError):
            raise SimmtaError(
                f"no simmta running for instance {self.path} (start one with 'simmta run')"
            ) from None
        return status


QUEUE_SUBDIRS = (*names.ALL_QUEUES, *names.STATUS_LOGS, names.PRIVATE, names.PUBLIC, names.ANVIL)
