"""Names defined once: services, queues, record types, IPC requests, statuses.

The equivalent of Postfix's mail_proto.h / mail_queue.h. Everything else
imports these constants instead of retyping the strings.
"""

from typing import Final, Literal, get_args

# Queue directories, in the order a message normally meets them.
MAILDROP: Final = "maildrop"
INCOMING: Final = "incoming"
ACTIVE: Final = "active"
DEFERRED: Final = "deferred"
HOLD: Final = "hold"
CORRUPT: Final = "corrupt"
MESSAGE_QUEUES: Final = (INCOMING, ACTIVE, DEFERRED, HOLD, CORRUPT)
ALL_QUEUES: Final = (MAILDROP, *MESSAGE_QUEUES)
# Per-message status logs (Postfix's defer/ and bounce/ logs).
DEFER_LOG: Final = "defer"
BOUNCE_LOG: Final = "bounce"
STATUS_LOGS: Final = (DEFER_LOG, BOUNCE_LOG)
# Socket directories inside the queue directory.
PRIVATE: Final = "private"
PUBLIC: Final = "public"
ANVIL: Final = "anvil"  # smtpd's per-client connection slots (simmta.core.anvil)

# Services (the names in the services table).
MASTER: Final = "master"
SPAWNER: Final = "spawner"  # the zygote that forks every daemon (simmta.master.zygote)
SMTPD: Final = "smtpd"
CLEANUP: Final = "cleanup"
QMGR: Final = "qmgr"
LOCAL: Final = "local"
SMTP: Final = "smtp"
BOUNCE: Final = "bounce"
PICKUP: Final = "pickup"
PEER: Final = "peer"
SENDMAIL: Final = "sendmail"  # smtpd + cleanup in one process (the sendmail profile)

# Stores outside the queue that services write (the services table's ``writes``).
MAILBOXES: Final = "mailboxes"
PEER_MAILBOX: Final = "peer-mailbox"
STORES: Final = (MAILBOXES, PEER_MAILBOX)

# One-byte wake-up triggers understood by qmgr and pickup (as in Postfix).
TRIGGER_INCOMING: Final = b"I"
TRIGGER_DEFERRED: Final = b"D"
TRIGGER_FLUSH: Final = b"A"  # ignore time stamps: retry deferred mail now
TRIGGER_WAKEUP: Final = b"W"

# Peer (the simulated Internet) faults.
PEER_FAULTS: Final = ("none", "down", "tempfail", "permfail", "slow")

# The daemons master can start (``python -m simmta.daemons.NAME``).
DAEMONS: Final = (SMTPD, CLEANUP, QMGR, LOCAL, SMTP, BOUNCE, PICKUP, PEER, SENDMAIL)

# Queue file record types (see simmta.core.queue).
REC_VERSION: Final = b"V"
REC_TIME: Final = b"T"
REC_ATTR: Final = b"A"
REC_SENDER: Final = b"S"
REC_RCPT: Final = b"R"
REC_DONE: Final = b"D"  # a recipient already delivered (flipped in place from R)
REC_CONTENT: Final = b"M"
REC_END: Final = b"E"

# IPC request names (the "request" field of a request).
REQ_QUEUE: Final = "queue"  # to cleanup: queue this message
REQ_DELIVER: Final = "deliver"  # qmgr to a delivery agent
REQ_BOUNCE: Final = "bounce"  # qmgr to bounce

# Reply statuses of every IPC request, and per-recipient delivery outcomes.
Status = Literal["ok", "defer", "fail"]
OK: Final[Status] = "ok"
DEFER: Final[Status] = "defer"  # temporary: try again later
FAIL: Final[Status] = "fail"  # permanent
STATUSES: Final[tuple[Status, ...]] = get_args(Status)

# Crash points a presenter can arm, per daemon (Context.crash_point).
STARTUP: Final = "startup"
CRASH_POINTS: Final[dict[str, tuple[str, ...]]] = {
    CLEANUP: ("half-written", "before-fsync", STARTUP),
    QMGR: ("after-move", STARTUP),
    LOCAL: ("before-link", STARTUP),
    SMTP: ("after-data", STARTUP),
    SMTPD: ("before-reply", STARTUP),
}
