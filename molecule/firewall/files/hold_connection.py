"""Holds one TCP connection open, as an administrator's session would, until the peer closes
it or the time limit passes: python3 hold_connection.py HOST PORT SECONDS

No keepalive probes: a probe is the first packet the container's conntrack sees of this
connection once ufw starts tracking, and conntrack takes it for invalid (ufw drops it)."""

import contextlib
import socket
import sys

host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
connection = socket.create_connection((host, port), timeout=5)
connection.settimeout(seconds)
with contextlib.suppress(OSError):
    connection.recv(1)
