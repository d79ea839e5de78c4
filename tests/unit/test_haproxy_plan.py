"""The haproxy role's backends (plugins/filter/haproxy_plan.py): their servers from the
inventory, and the servers' states from HAProxy's statistics."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "haproxy_plan.py"
_spec = importlib.util.spec_from_file_location("haproxy_plan", _PLUGIN)
plan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plan)


def test_servers_are_the_groups_hosts_at_their_addresses_and_ports():
    hostvars = {"r1": {"ansible_host": "10.0.0.1"}, "r2": {"ansible_host": "10.0.0.2", "redis_tls_port": 7380},
                "r3": {}}
    assert plan.haproxy_servers(["r1", "r2", "r3"], "r1", hostvars, "redis_tls_port", 6380) == [
        {"name": "r1", "address": "127.0.0.1", "port": 6380},
        {"name": "r2", "address": "10.0.0.2", "port": 7380},
        {"name": "r3", "address": "r3", "port": 6380}]


def test_server_states_come_from_the_statistics_csv():
    csv = ("# pxname,svname,qcur,status,weight\n"
           "redis,FRONTEND,,OPEN,\nredis,r1,0,UP,1\nredis,r2,0,DOWN,1\nredis,BACKEND,0,UP,1\n"
           "ollama,o1,0,UP,1\n")
    assert plan.haproxy_server_states(csv) == {"redis": {"r1": "UP", "r2": "DOWN"}, "ollama": {"o1": "UP"}}
    assert plan.haproxy_server_states("") == {}
