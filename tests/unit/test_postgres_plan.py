"""Forming a PostgreSQL cluster (plugins/filter/postgres_plan.py): whose data the cluster keeps
and which hosts' empty clusters are replaced by a copy of the leader."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "postgres_plan.py"
_spec = importlib.util.spec_from_file_location("postgres_plan", _PLUGIN)
plan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plan)

HOSTS = ["db1", "db2", "db3"]
DATA = "/var/lib/postgresql/15/main"


def report(system_id: str, databases: int = 3) -> dict:
    return {"system_id": system_id, "databases": databases}


def test_three_fresh_hosts_start_from_the_first_and_the_others_copy_it():
    reports = {"db1": report("101"), "db2": report("102"), "db3": report("103")}
    assert plan.postgres_cluster_plan(reports, HOSTS, "", DATA) == {
        "first": "db1", "replace": ["db2", "db3"], "problems": []}


def test_the_host_that_holds_data_leads_wherever_the_inventory_lists_it():
    reports = {"db1": report("101"), "db2": report("102", databases=4), "db3": report("103")}
    assert plan.postgres_cluster_plan(reports, HOSTS, "", DATA) == {
        "first": "db2", "replace": ["db1", "db3"], "problems": []}


def test_a_formed_cluster_keeps_its_members_and_replaces_only_an_empty_newcomer():
    reports = {"db1": report("101", 4), "db2": report("101", 4), "db3": report("103")}
    assert plan.postgres_cluster_plan(reports, HOSTS, "101", DATA) == {
        "first": "", "replace": ["db3"], "problems": []}


def test_a_host_without_a_data_directory_needs_nothing_removed():
    reports = {"db1": report("101", 4), "db2": report(""), "db3": report("101", 4)}
    assert plan.postgres_cluster_plan(reports, HOSTS, "101", DATA)["replace"] == []


def test_a_second_host_holding_data_is_a_problem_never_removed():
    reports = {"db1": report("101", 5), "db2": report("102", 4), "db3": report("103")}
    result = plan.postgres_cluster_plan(reports, HOSTS, "", DATA)
    assert (result["first"], result["replace"]) == ("db1", ["db3"])
    assert result["problems"] == [
        "db2 holds a database cluster of its own (/var/lib/postgresql/15/main, system 102, 1 databases besides "
        "PostgreSQL's own), and the cluster keeps db1's (system 101). The role never removes data: copy what db2 "
        "holds to the cluster's leader (pg_dump), then remove /var/lib/postgresql/15/main there, or take db2 out "
        "of group postgres."]


def test_a_new_cluster_is_not_formed_without_every_hosts_report():
    reports = {"db2": report("102")}
    result = plan.postgres_cluster_plan(reports, HOSTS, "", DATA)
    assert result["problems"] == [
        "db1, db3 did not report what they hold: a new cluster is formed only with every host of group postgres in "
        "the run, since the one holding the data may be among them. Run the installer again with every host "
        "reachable."]


def test_a_formed_cluster_goes_on_without_a_lost_hosts_report():
    reports = {"db1": report("101", 4), "db2": report("101", 4)}
    assert plan.postgres_cluster_plan(reports, HOSTS, "101", DATA) == {"first": "", "replace": [], "problems": []}
    assert plan.postgres_cluster_reports({"db1": {"other": 1}, "db2": {"postgresql_member_report": report("1")}},
                                         HOSTS) == {"db2": report("1")}


def test_the_system_identifier_is_read_from_pg_controldata():
    output = "pg_control version number:            1300\nDatabase system identifier:           7301\n"
    assert plan.postgres_system_id(output) == "7301"
    assert plan.postgres_system_id("pg_controldata: error: could not open file") == ""


def test_patroni_settings_are_patched_only_where_they_differ():
    current = {"ttl": 20, "loop_wait": 5, "synchronous_mode": False,
               "postgresql": {"parameters": {"max_connections": 200, "wal_level": "replica"}}}
    desired = {"ttl": "20", "loop_wait": 5, "synchronous_mode": True,
               "postgresql": {"use_pg_rewind": False, "parameters": {"max_connections": "200", "wal_level": "replica",
                                                                    "hot_standby": True}}}
    assert plan.patroni_config_patch(current, desired) == {
        "synchronous_mode": True, "postgresql": {"use_pg_rewind": False, "parameters": {"hot_standby": True}}}
    current["synchronous_mode"] = True
    current["postgresql"].update(use_pg_rewind=False, parameters={"max_connections": 200, "wal_level": "replica",
                                                                   "hot_standby": "on"})
    assert plan.patroni_config_patch(current, desired) == {}


def test_reports_are_read_from_the_hosts_that_made_one():
    hostvars = {"db1": {"other": 1}, "db2": {"postgresql_member_report": report("1")}}
    assert plan.postgres_cluster_reports(hostvars, HOSTS) == {"db2": report("1")}
