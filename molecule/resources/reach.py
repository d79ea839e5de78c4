"""How the scenarios' tests reach a test host from outside it: the container's address on its
Docker network, and whether a new TCP connection gets through, from this process or from
inside another test container (or an app container within it)."""

from __future__ import annotations

import socket
import subprocess

TIMEOUT = 3


def address_of(container: str) -> str:
    """The test container's first address, as other containers and this process reach it."""
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", container],
        capture_output=True, text=True, check=True, timeout=30).stdout.split()
    assert out, f"no address for {container}"
    return out[0]


def connects(address: str, port: int, timeout: float = TIMEOUT) -> bool:
    """Whether a new TCP connection from this process gets through."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def connects_from(container: str, address: str, port: int, *, inner: str = "", timeout: float = TIMEOUT) -> bool:
    """Whether a new TCP connection from inside `container` (or from its app container `inner`)
    gets through."""
    probe = f"import socket; socket.create_connection(('{address}', {port}), timeout={timeout})"
    inner_exec = ["docker", "exec", inner] if inner else []
    return subprocess.run(["docker", "exec", container, *inner_exec, "python3", "-c", probe],
                          capture_output=True, timeout=60, check=False).returncode == 0
