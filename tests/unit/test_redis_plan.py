"""The replicated Redis set's plan (plugins/filter/redis_plan.py): which host is the master and
what each host's Redis and Sentinel are told, from the reports of files/redis-cluster state."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

_PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "redis_plan.py"
_spec = importlib.util.spec_from_file_location("redis_plan", _PLUGIN)
plan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plan)

HOSTS = ["r1", "r2", "r3"]
ADDRESSES = {"r1": "10.0.0.1", "r2": "10.0.0.2", "r3": "10.0.0.3"}
SETTINGS = {"quorum": 2, "down-after-milliseconds": 5000, "failover-timeout": 60000, "parallel-syncs": 1}


def fresh(keys: int = 0) -> dict:
    """A host whose Redis runs alone and whose Sentinel monitors nothing (a first install)."""
    return {"redis": {"up": True, "role": "master", "connected_replicas": 0, "keys": keys},
            "sentinel": {"up": True, "monitoring": False}}


def joined(role: str, master: str = "10.0.0.1", replicas: int = 0, settings: dict | None = None) -> dict:
    return {"redis": {"up": True, "role": role, "connected_replicas": replicas, "keys": 5},
            "sentinel": {"up": True, "monitoring": True, "master": master,
                         "settings": dict(SETTINGS if settings is None else settings)}}


def plan_of(host: str, states: dict, **options) -> dict:
    return plan.redis_cluster_plan(host, states, HOSTS, ADDRESSES, 6380, sentinel_settings=SETTINGS, **options)


def test_a_fresh_set_makes_the_first_host_master_and_the_others_its_replicas():
    states = dict.fromkeys(HOSTS, fresh())
    assert plan.redis_master(states, HOSTS, ADDRESSES) == "r1"
    assert plan_of("r1", states) == {"monitor": {"host": "10.0.0.1", "port": 6380, "quorum": 2}, "auth": True,
                                     "set": {k: v for k, v in SETTINGS.items() if k != "quorum"}}
    assert plan_of("r2", states)["replicaof"] == ["10.0.0.1", 6380]


def test_a_single_host_grown_into_a_set_stays_master_wherever_it_is_listed():
    states = {"r1": fresh(), "r2": fresh(keys=1200), "r3": fresh()}
    assert plan.redis_master(states, HOSTS, ADDRESSES) == "r2"
    assert plan_of("r1", states)["replicaof"] == ["10.0.0.2", 6380]
    assert "replicaof" not in plan_of("r2", states)


def test_the_sentinels_master_wins_over_the_inventorys_order():
    states = {"r1": joined("slave", master="10.0.0.3"), "r2": joined("slave", master="10.0.0.3"),
              "r3": joined("master", master="10.0.0.3", replicas=2)}
    assert plan.redis_master(states, HOSTS, ADDRESSES) == "r3"
    assert all(plan_of(host, states) == {} for host in HOSTS)


def test_a_host_that_came_back_as_master_of_its_own_is_made_a_replica():
    states = {"r1": {"redis": {"up": True, "role": "master", "connected_replicas": 0, "keys": 9},
                     "sentinel": {"up": True, "monitoring": True, "master": "10.0.0.2", "settings": SETTINGS}},
              "r2": joined("master", master="10.0.0.2", replicas=1), "r3": joined("slave", master="10.0.0.2")}
    assert plan_of("r1", states) == {"replicaof": ["10.0.0.2", 6380]}


def test_the_sentinels_majority_decides_and_unknown_addresses_are_ignored():
    states = {"r1": joined("slave", master="10.0.0.2"), "r2": joined("master", master="10.0.0.2", replicas=1),
              "r3": joined("slave", master="192.0.2.9")}
    assert plan.redis_master(states, HOSTS, ADDRESSES) == "r2"


def test_without_sentinels_a_master_followed_by_replicas_is_kept():
    states = {"r1": fresh(keys=50), "r2": {"redis": {"up": True, "role": "master", "connected_replicas": 1, "keys": 3},
                                          "sentinel": {"up": True, "monitoring": False}},
              "r3": {"redis": {"up": True, "role": "slave", "keys": 3}, "sentinel": {"up": True, "monitoring": False}}}
    assert plan.redis_master(states, HOSTS, ADDRESSES) == "r2"


def test_only_the_settings_that_differ_are_set_and_credentials_when_they_changed():
    states = {"r1": joined("master", replicas=2, settings={**SETTINGS, "down-after-milliseconds": 30000}),
              "r2": joined("slave"), "r3": joined("slave")}
    assert plan_of("r1", states) == {"set": {"down-after-milliseconds": 5000}}
    assert plan_of("r2", states, credentials_changed=True) == {"auth": True}


def test_a_host_that_reported_nothing_is_told_nothing():
    states = {"r2": joined("master", master="10.0.0.2", replicas=1)}
    assert plan_of("r1", states) == {}
    assert plan.redis_master(states, HOSTS, ADDRESSES) == "r2"


def test_states_are_read_from_each_hosts_result_and_failed_ones_left_out():
    report = fresh()
    hostvars = {"r1": {"redis_cluster_state": {"rc": 0, "stdout": json.dumps(report)}},
                "r2": {"redis_cluster_state": {"rc": 1, "stdout": ""}}, "r3": {}}
    assert plan.redis_cluster_states(hostvars, HOSTS) == {"r1": report}


def test_major_versions_are_those_of_the_hosts_whose_redis_answered():
    states = {"r1": {"redis": {"up": True, "version": "7.0.15"}}, "r2": {"redis": {"up": True, "version": "8.0.2"}},
              "r3": {"redis": {"up": False}}}
    assert plan.redis_major_versions(states) == {"r1": "7", "r2": "8"}
