"""Who may talk to master's bus and control sockets: SO_PEERCRED, not trust.

Only root and the instance owner may subscribe or steer. The socket's
directory is 0700 as well; this check is the second wall.
"""

import socket
import struct

_UCRED = struct.Struct("3i")


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    _pid, uid, _gid = _UCRED.unpack(creds)
    return uid


def allowed(sock: socket.socket, owner_uid: int) -> bool:
    try:
        uid = peer_uid(sock)
    except OSError:
        return False
    return uid in (0, owner_uid)
