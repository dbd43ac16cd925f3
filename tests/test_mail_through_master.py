"""Delivered mail read through master (``mail``, ``letter``) for a viewer who may not read the
Maildirs, and master's refusal to read anything but a letter of the instance's mailboxes
(the rootless student reading them so: tests/test_rootless.py)."""

import base64
from pathlib import Path

import pytest
from mtakit import Mta, maildir_files, wait_for

from simmta.core import control, mailboxes
from simmta.core.errors import SimmtaError
from simmta.core.instance import Instance


def test_master_lists_and_reads_the_letters_and_nothing_else(mta: Mta) -> None:
    mta.send(to="bob@simmta.test", subject="through master")
    wait_for(lambda: maildir_files(mta.maildir("bob")), what="bob's letter")
    sock = Instance(mta.instance).control_socket
    listed = {m["name"]: m for m in control.request(sock, "mail")["mailboxes"]}
    (letter,) = listed["bob"]["letters"]
    assert ["Subject", "through master"] in letter["headers"] and letter["qid"]
    reply = control.request(sock, "letter", file=letter["path"])
    assert b"Subject: through master" in base64.b64decode(reply["data"])
    new = Path(letter["path"]).parent
    (new / "evil").symlink_to(mta.instance / "etc" / "simmta.toml")
    for path in (
        mta.instance / "etc" / "simmta.toml",  # not in a mailbox
        new / ".." / "new" / ".." / "tmp",
        new / "evil",  # a symlink in new/: refused by O_NOFOLLOW
        "relative/new/x",
    ):
        with pytest.raises(SimmtaError):
            control.request(sock, "letter", file=str(path))


def test_direct_reading_needs_no_master(tmp_path: Path) -> None:
    inst = Instance(tmp_path)
    (tmp_path / "mail" / "carol" / "Maildir" / "new").mkdir(parents=True)
    (tmp_path / "mail" / "carol" / "Maildir" / "new" / "1.x").write_bytes(b"Subject: hi\n\nbody\n")
    found = dict(mailboxes.letters(inst, {}))
    assert [x.header("Subject") for x in found["carol"]] == ["hi"]  # no control socket was needed
