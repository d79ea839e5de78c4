"""The servers of the haproxy role's backends. Tested by tests/unit/test_haproxy_plan.py."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence


def haproxy_servers(hosts: Sequence[str], inventory_hostname: str, hostvars: Mapping,
                    port_variable: str, default_port: int) -> list[dict]:
    """One server per host of a service's group, in the inventory's order: its name, the
    address HAProxy on `inventory_hostname` reaches it at (loopback for this host itself,
    else its ansible_host, else its name) and its port (the host's own `port_variable`,
    else `default_port`)."""
    servers = []
    for host in hosts:
        host_vars = hostvars.get(host, {})
        address = "127.0.0.1" if host == inventory_hostname else host_vars.get("ansible_host", host)
        servers.append({"name": host, "address": address, "port": int(host_vars.get(port_variable, default_port))})
    return servers


def haproxy_server_states(stats_csv: str) -> dict[str, dict[str, str]]:
    """backend -> server -> status (UP, DOWN, ...) from HAProxy's statistics as CSV."""
    lines = stats_csv.splitlines()
    if not lines or not lines[0].startswith("# "):
        return {}
    header = lines[0][2:].split(",")
    states: dict[str, dict[str, str]] = {}
    for row in csv.reader(lines[1:]):
        entry = dict(zip(header, row))
        if entry.get("svname") not in ("FRONTEND", "BACKEND", None):
            states.setdefault(entry["pxname"], {})[entry["svname"]] = entry.get("status", "")
    return states


class FilterModule:
    def filters(self):
        return {"haproxy_servers": haproxy_servers, "haproxy_server_states": haproxy_server_states}
