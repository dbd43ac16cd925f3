"""One browser session's app: the simmta TUI on Textual's web driver.

``simmta serve`` starts one of these per websocket with
``TEXTUAL_DRIVER=textual.drivers.web_driver:WebDriver``: the screen goes out
on stdout as packets, keys and window sizes come in on stdin. Events come
from the server's one bus subscription over an inherited socket (``--fd``),
never from a bus connection of its own.

Trust: runs as the user who runs ``simmta serve``; a viewer's app
(``--role viewer``) refuses every action on the MTA and every file write, so
what a viewer's browser sends (keys, mouse, sizes) cannot change anything.
"""

import argparse
import socket
from pathlib import Path

from simmta.core.instance import Instance
from simmta.tui.app import SimmtaApp
from simmta.tui.feed import LiveFeed

ROLES = ("presenter", "viewer")


def main() -> None:
    p = argparse.ArgumentParser(prog="simmta-serve-session")
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--role", choices=ROLES, required=True)
    p.add_argument("--instance", required=True)
    p.add_argument("--theme", default="dark")
    p.add_argument("--screenshots", default=None)
    args = p.parse_args()
    instance = Instance(args.instance)
    sock = socket.socket(fileno=args.fd)
    feed = LiveFeed(instance.bus_socket, sock=sock).start()
    shots = Path(args.screenshots) if args.screenshots else None
    app = SimmtaApp(
        feed, instance=instance.path, theme=args.theme, screenshot_dir=shots, watch_only=args.role == "viewer"
    )
    app.run()


if __name__ == "__main__":
    main()
