"""Maildir delivery on its own: a message is in new/ whole, or not at all, and tmp/ is left clean."""

import os
from pathlib import Path

import pytest

from simmta.core import maildir


def test_delivered_message_is_in_new_and_tmp_is_empty(tmp_path: Path) -> None:
    box = tmp_path / "Maildir"
    maildir.create(box)
    seen_before_link: list[list[str]] = []

    def look() -> None:
        seen_before_link.append(sorted(p.name for p in (box / "new").iterdir()))

    path = maildir.deliver(box, [b"Subject: x\n", b"\nbody\n"], before_link=look)
    assert path.parent == box / "new" and path.read_bytes() == b"Subject: x\n\nbody\n"
    assert seen_before_link == [[]]  # nothing visible to a reader until the link
    assert list((box / "tmp").iterdir()) == [] and maildir.count(box) == 1


def test_a_failed_link_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = tmp_path / "Maildir"
    maildir.create(box)
    monkeypatch.setattr(maildir, "unique_name", lambda: "taken")
    (box / "new" / "taken").write_bytes(b"an earlier message")
    with pytest.raises(FileExistsError):
        maildir.deliver(box, [b"Subject: y\n\nbody\n"])
    assert list((box / "tmp").iterdir()) == []
    assert (box / "new" / "taken").read_bytes() == b"an earlier message"


def test_read_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("not a letter")
    (tmp_path / "link").symlink_to(tmp_path / "secret")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError):  # ELOOP: never through a symlink
        maildir.read(tmp_path / "link")
    with pytest.raises(OSError):  # not a regular file (and no hang on a FIFO)
        maildir.read(tmp_path / "fifo")
    assert maildir.read(tmp_path / "secret") == (b"not a letter", 12)
