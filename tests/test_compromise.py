"""The compromise lab: a hole in the SMTP server of each profile, and what the kernel lets it do.

Outcomes are asserted from the errnos the attacker script got. Nothing outside the
instance is touched: a sentinel tree beside it is compared (contents and metadata)
before and after, and a real queued message is byte for byte the same.
"""

import json
import os
from pathlib import Path

import pytest
from mtakit import LAB_EXPECTED, Mta, needs_root, sentinel, tree_state, wait_for

from simmta.core import compromise


@pytest.mark.parametrize("profile", list(LAB_EXPECTED))
def test_a_hole_in_the_smtp_server_reaches_what_the_design_allows(simmta_tmp: Path, profile: str) -> None:
    needs_root()
    top = sentinel(simmta_tmp)
    before = tree_state(top)
    mta = Mta(simmta_tmp / "inst", lab=True, profile=profile)
    try:
        mta.simmta("peer", "fault", "tempfail")
        qid = mta.send(to="someone@example.net")  # a real message, waiting in deferred/
        real = mta.instance / "queue" / "deferred" / qid
        wait_for(real.exists, what="the real message in deferred/")
        real_bytes = real.read_bytes()
        report = json.loads(mta.simmta("lab", "compromise", "smtpd", "--json").stdout)
        got = {r["attempt"]: r["outcome"] for r in report["results"]}
        assert list(got) == list(compromise.ATTEMPTS)
        assert report["mode"] == "real" and "predicted" not in report
        for attempt, outcome in LAB_EXPECTED[profile].items():
            assert got[attempt] == outcome, (attempt, report["results"])
        assert real.read_bytes() == real_bytes, "a real queued message is never touched"
        assert not list((mta.instance / "lab" / "outside").iterdir()), "nothing left outside"
        assert not [p for p in (mta.maildir("bob") / "tmp").iterdir()], "the lab cleans up after itself"
    finally:
        mta.stop()
    assert tree_state(top) == before, "nothing beside the instance changed"


def test_the_lab_is_refused_without_the_switch(mta: Mta) -> None:
    r = mta.simmta("lab", "compromise", "smtpd", check=False)
    assert r.returncode == 2 and "simmta run --lab" in r.stderr


def test_qmail_smtpd_is_named_by_its_program(simmta_tmp: Path) -> None:
    needs_root()
    mta = Mta(simmta_tmp / "inst", lab=True, profile="qmail")
    try:
        report = json.loads(mta.simmta("lab", "compromise", "qmail-smtpd", "--json").stdout)
        assert report["program"] == "qmail-smtpd" and report["account"] == "qmaild"
        assert report["privilege"]["uid"] == [mta.uid_of("qmaild")] * 4
    finally:
        mta.stop()


def test_predictions_match_the_kernel_where_it_enforces(simmta_tmp: Path) -> None:
    """The simulated mode's predicted errnos are the real mode's answers (checked here as root)."""
    needs_root()
    from simmta.core import services

    for profile in ("qmail", "postfix"):
        mta = Mta(simmta_tmp / profile, lab=True, profile=profile)
        try:
            report = json.loads(mta.simmta("lab", "compromise", "smtpd", "--json").stdout)
        finally:
            mta.stop()
        table = services.load(None, profile)
        ids = {k: (v[0], v[1]) for k, v in mta.status["ids"].items()}
        predicted = compromise.predict(
            table["smtpd"], table.profile, ids, table["qmgr"].account, report["ip_unprivileged_port_start"]
        )
        got = {r["attempt"]: r["outcome"] for r in report["results"]}
        assert predicted == got, profile


def test_simulated_mode_labels_its_cells_predicted(simmta_tmp: Path) -> None:
    """As an ordinary user with nothing enforced, the cells are predictions, and say so."""
    from mtakit import NOBODY, nobody_can_run_python

    needs_root()  # to become the unprivileged test user
    assert nobody_can_run_python()
    base = simmta_tmp / "nobody"
    base.mkdir()
    os.chown(base, NOBODY, NOBODY)
    mta = Mta(base / "inst", user=NOBODY, lab=True, profile="qmail", privilege="simulated")
    try:
        out = mta.simmta("lab", "compromise", "smtpd").stdout
        report = json.loads(mta.simmta("lab", "compromise", "smtpd", "--json").stdout)
    finally:
        mta.stop()
    assert report["mode"] == "simulated"
    assert report["predicted"]["read-secret"] == "EACCES" and report["predicted"]["signal-daemon"] == "EPERM"
    assert "predicted, not enforced" in out
