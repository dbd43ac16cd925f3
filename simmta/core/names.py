"""Names defined once: services, queues, record types, IPC requests.

The equivalent of Postfix's mail_proto.h / mail_queue.h. Everything else
imports these constants instead of retyping the strings.
"""

from typing import Final

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
SMTPD: Final = "smtpd"
CLEANUP: Final = "cleanup"
QMGR: Final = "qmgr"
LOCAL: Final = "local"
SMTP: Final = "smtp"
BOUNCE: Final = "bounce"
PICKUP: Final = "pickup"
PEER: Final = "peer"
SENDMAIL: Final = "sendmail"  # smtpd + cleanup in one process (the sendmail profile)

# One-byte wake-up triggers understood by qmgr and pickup (as in Postfix).
TRIGGER_INCOMING: Final = b"I"
TRIGGER_DEFERRED: Final = b"D"
TRIGGER_FLUSH: Final = b"A"  # ignore time stamps: retry deferred mail now
TRIGGER_WAKEUP: Final = b"W"

# Peer (the simulated Internet) faults.
PEER_FAULTS: Final = ("none", "down", "tempfail", "permfail", "slow")
