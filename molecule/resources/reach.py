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


PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("open")
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("timed out")
except OSError as error:
    print(type(error).__name__)
"""


def outcome(address: str, port: int, timeout: float = TIMEOUT) -> str:
    """What a new TCP connection from this process meets: open, refused, timed out, or the error."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timed out"
    except OSError as error:
        return type(error).__name__


def outcome_from(container: str, address: str, port: int, *, inner: str = "", timeout: float = TIMEOUT) -> str:
    """The same, for a connection from inside `container` (or from its app container `inner`)."""
    inner_exec = ["docker", "exec", inner] if inner else []
    return subprocess.run(
        ["docker", "exec", container, *inner_exec, "python3", "-c", PROBE, address, str(port), str(timeout)],
        capture_output=True, text=True, timeout=60, check=False).stdout.strip() or "no probe"


def connects(address: str, port: int, timeout: float = TIMEOUT) -> bool:
    """Whether a new TCP connection from this process gets through."""
    return outcome(address, port, timeout) == "open"


def connects_from(container: str, address: str, port: int, *, inner: str = "", timeout: float = TIMEOUT) -> bool:
    """Whether a new TCP connection from inside `container` (or from its app container `inner`)
    gets through."""
    return outcome_from(container, address, port, inner=inner, timeout=timeout) == "open"


def _judged(probe, target: tuple[str, int], control: tuple[str, int]) -> bool:
    """A firewall drops without answering, so a blocked port times out, as any port does on a
    machine too slow to answer in time. The control, a port the same source may reach,
    must connect within the same timeout just before and just after: then the timeout is
    the firewall's."""
    controls = [probe(*control)]
    result = probe(*target)
    controls.append(probe(*control))
    assert controls == ["open", "open"], (
        f"the positive control {control[0]}:{control[1]} did not connect ({', '.join(controls)}), so "
        f"{target[0]}:{target[1]} ({result}) cannot be judged")
    return result != "open"


def blocked(address: str, port: int, *, control: tuple[str, int], timeout: float = TIMEOUT) -> bool:
    """Whether a new connection from this process to address:port is refused or dropped, while
    `control` (address, port) connects from here."""
    return _judged(lambda a, p: outcome(a, p, timeout), (address, port), control)


def blocked_from(container: str, address: str, port: int, *, control: tuple[str, int], inner: str = "",
                 timeout: float = TIMEOUT) -> bool:
    """The same, from inside `container` (or from its app container `inner`)."""
    return _judged(lambda a, p: outcome_from(container, a, p, inner=inner, timeout=timeout), (address, port), control)
