"""master: the supervisor. It holds the sockets, starts every daemon on demand,
replaces and throttles them, hosts the event bus and the control socket.

SECURITY: runs as root in real mode (dropping privilege takes privilege);
it never parses mail. Children and subscribers are both untrusted.
"""
