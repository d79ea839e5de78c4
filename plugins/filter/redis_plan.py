"""Planning of the replicated Redis set (roles/redis, tasks/cluster.yml): which host is the
master and what each host's Redis and Sentinel must be told, from what every host reported
(files/redis-cluster state). Tested by tests/unit/test_redis_plan.py."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence


def redis_master(states: Mapping[str, Mapping], hosts: Sequence[str], addresses: Mapping[str, str]) -> str:
    """The host that is (or becomes) the master:
    1. the one most Sentinels name (they keep it across failovers and restarts);
    2. else a master that replicas follow (a set whose Sentinels were all lost);
    3. else the master holding the most keys, so that a single host grown into a set keeps
       its data wherever the inventory lists it;
    4. else the first host of the group (a fresh set)."""
    by_address = {addresses[host]: host for host in hosts}
    named = Counter(states[host]["sentinel"]["master"] for host in hosts
                    if states.get(host, {}).get("sentinel", {}).get("monitoring")
                    and states[host]["sentinel"].get("master") in by_address)
    if named:
        most = max(named.values())
        return next(by_address[address] for address in (addresses[host] for host in hosts)
                    if named.get(address) == most)
    masters = [host for host in hosts if states.get(host, {}).get("redis", {}).get("up")
               and states[host]["redis"].get("role") == "master"]
    followed = [host for host in masters if states[host]["redis"].get("connected_replicas", 0) > 0]
    if followed:
        return max(followed, key=lambda host: states[host]["redis"]["connected_replicas"])
    if masters:
        return max(masters, key=lambda host: states[host]["redis"].get("keys", 0))
    return hosts[0]


def redis_cluster_plan(host: str, states: Mapping[str, Mapping], hosts: Sequence[str],
                       addresses: Mapping[str, str], port: int, *, sentinel_settings: Mapping[str, int],
                       credentials_changed: bool = False) -> dict:
    """What `host` must do (files/redis-cluster apply): replicate the master when its Redis
    still runs as a master of its own; have its Sentinel monitor the master when it monitors
    nothing; give Sentinel the cluster user's credentials when it starts monitoring or they
    changed; and set each Sentinel setting that differs. Empty where nothing is to be done."""
    own = states.get(host) or {}
    redis, sentinel = own.get("redis", {}), own.get("sentinel", {})
    master = redis_master(states, hosts, addresses)
    plan: dict = {}
    if host != master and redis.get("up") and redis.get("role") == "master":
        plan["replicaof"] = [addresses[master], port]
    if sentinel.get("up") and not sentinel.get("monitoring"):
        plan["monitor"] = {"host": addresses[master], "port": port, "quorum": sentinel_settings["quorum"]}
    if "monitor" in plan or (sentinel.get("monitoring") and credentials_changed):
        plan["auth"] = True
    current = sentinel.get("settings", {}) if sentinel.get("monitoring") else {}
    differing = {key: value for key, value in sentinel_settings.items()
                 if sentinel.get("up") and current.get(key) != int(value)
                 and not ("monitor" in plan and key == "quorum")}
    if differing:
        plan["set"] = differing
    return plan


def redis_major_versions(states: Mapping[str, Mapping]) -> dict[str, str]:
    """host -> the major Redis version it runs, for the hosts whose Redis answered. A replica
    cannot load the data of a newer major version (its RDB format), so a set runs one."""
    return {host: state["redis"]["version"].split(".")[0] for host, state in states.items()
            if state.get("redis", {}).get("version")}


def redis_cluster_states(hostvars: Mapping, hosts: Sequence[str], variable: str = "redis_cluster_state") -> dict:
    """host -> its report (files/redis-cluster state), for the hosts that gave one."""
    states = {}
    for host in hosts:
        result = hostvars.get(host, {}).get(variable) or {}
        if result.get("rc") == 0 and result.get("stdout"):
            states[host] = json.loads(result["stdout"])
    return states


class FilterModule:
    def filters(self):
        return {"redis_cluster_plan": redis_cluster_plan, "redis_cluster_states": redis_cluster_states,
                "redis_major_versions": redis_major_versions}
