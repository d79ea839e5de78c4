"""Forming a PostgreSQL cluster (roles/postgresql, tasks/cluster.yml): whose data the cluster
keeps, and which hosts' own empty clusters make way for a copy of it, from what every host
reported. Tested by tests/unit/test_postgres_plan.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# The databases a cluster holds when initdb (Debian's package) has just made it: postgres,
# template0 and template1.
EMPTY_DATABASES = 3


def postgres_cluster_plan(reports: Mapping[str, Mapping], hosts: Sequence[str], initialized: str,
                          data_directory: str) -> dict:
    """`reports`: each host's data directory, {"system_id": "" when it has none, "databases": n}.
    `initialized`: the system identifier the cluster's store (etcd) names, "" before the cluster
    is formed. Before that, the host whose data holds the most databases (the first of the
    group on a tie) starts first and leads: a single database host grown into a cluster keeps
    its data wherever the inventory lists it. A host whose system differs from the kept one is
    replaced by a copy of the leader when its cluster is empty, and is a problem otherwise: the
    role never removes a database that holds data. Before the cluster is formed, every host must
    have reported.
    Returns {"first": that host ("" once formed), "replace": [hosts], "problems": [messages]}."""
    known = [host for host in hosts if host in reports]
    first = ""
    if initialized:
        kept = initialized
    else:
        holding = [host for host in known if reports[host]["system_id"]]
        first = max(holding, key=lambda host: reports[host]["databases"]) if holding else (hosts or [""])[0]
        kept = reports.get(first, {}).get("system_id", "")
    replace, problems = [], []
    missing = [host for host in hosts if host not in reports]
    if missing and not initialized:
        # The host holding the data may be among them: a cluster formed without it would be empty.
        problems.append(f"{', '.join(missing)} did not report what {'it holds' if len(missing) == 1 else 'they hold'}: "
                        "a new cluster is formed only with every host of group postgres in the run, since the "
                        "one holding the data may be among them. Run the installer again with every host reachable.")
    for host in known:
        system_id, databases = reports[host]["system_id"], reports[host]["databases"]
        if not system_id or system_id == kept:
            continue
        if databases > EMPTY_DATABASES:
            problems.append(
                f"{host} holds a database cluster of its own ({data_directory}, system {system_id}, "
                f"{databases - EMPTY_DATABASES} databases besides PostgreSQL's own), and the cluster keeps "
                f"{'its own data' if initialized else first + chr(39) + 's'} (system {kept}). The role never "
                f"removes data: copy what {host} holds to the cluster's leader (pg_dump), then remove "
                f"{data_directory} there, or take {host} out of group postgres.")
        else:
            replace.append(host)
    return {"first": first, "replace": replace, "problems": problems}


def postgres_cluster_reports(hostvars: Mapping, hosts: Sequence[str],
                             variable: str = "postgresql_member_report") -> dict:
    """Each host's report, for the hosts that made one (a host failing earlier made none)."""
    return {host: hostvars[host][variable] for host in hosts
            if isinstance(hostvars.get(host, {}).get(variable), Mapping)}


def postgres_system_id(pg_controldata: str) -> str:
    """The database system identifier in pg_controldata's output ("" when there is none)."""
    for line in pg_controldata.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "Database system identifier":
            return value.strip()
    return ""


def patroni_config_patch(current: Mapping, desired: Mapping) -> dict:
    """The part of `desired` that Patroni's dynamic settings (GET /config) lack or hold
    otherwise, nested as PATCH /config takes it; {} when they agree. Numbers and booleans
    compare by value, whatever type the template gave them."""
    def same(have, want) -> bool:
        if isinstance(want, bool) or isinstance(have, bool):
            return str(have).lower() in ("true", "on", "1") if str(want).lower() in ("true", "on", "1") \
                else str(have).lower() in ("false", "off", "0", "none")
        return str(have) == str(want)

    patch = {}
    for key, want in desired.items():
        have = current.get(key) if isinstance(current, Mapping) else None
        if isinstance(want, Mapping):
            nested = patroni_config_patch(have if isinstance(have, Mapping) else {}, want)
            if nested:
                patch[key] = nested
        elif have is None or not same(have, want):
            patch[key] = want
    return patch


class FilterModule:
    def filters(self):
        return {
            "postgres_cluster_plan": postgres_cluster_plan,
            "postgres_cluster_reports": postgres_cluster_reports,
            "postgres_system_id": postgres_system_id,
            "patroni_config_patch": patroni_config_patch,
        }
