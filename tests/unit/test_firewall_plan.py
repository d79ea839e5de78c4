"""The firewall role's rule planning (plugins/filter/firewall_plan.py), on the data the role
hands it: its settings, the inventory's groups and hostvars, and the output of ufw, ss and sshd."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "firewall_plan.py"
_spec = importlib.util.spec_from_file_location("firewall_plan", _PLUGIN)
plan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plan)
_sections_spec = importlib.util.spec_from_file_location("sections", _PLUGIN.parent / "sections.py")
_sections = importlib.util.module_from_spec(_sections_spec)
_sections_spec.loader.exec_module(_sections)
command_sections = _sections.command_sections

TAG = "platform-managed"
SSH = {"rule": "limit", "port": 22, "proto": "tcp", "comment": "ssh"}
SUBNET = "172.31.0.0/24"
GROUP_PORTS = {
    "all": [{"port": 9100, "from_group": "monitoring", "comment": "node exporter to monitoring"}],
    "edge": [
        {"port": 80, "proto": "tcp", "comment": "http"},
        {"port": 443, "proto": "tcp", "comment": "https"},
    ],
    "postgres": [
        {"port": 5432, "from_group": "app", "comment": "postgresql from the app hosts"},
        {"port": 5432, "from": SUBNET, "if_member_of": "app", "comment": "postgresql from the app containers"},
    ],
}


def rule(port, source="any", proto="tcp", action="allow", comment="c") -> dict:
    return {"rule": action, "port": port, "proto": proto, "from": source, "comment": comment}


# firewall_entries


def test_ssh_comes_first_rate_limited_even_with_nothing_else():
    assert plan.firewall_entries([], {}, [], 22) == [SSH]


def test_a_host_gets_the_ports_of_all_and_of_its_own_groups_only():
    entries = plan.firewall_entries(["edge"], GROUP_PORTS, [], 2222)
    assert entries == [{**SSH, "port": 2222}, *GROUP_PORTS["all"], *GROUP_PORTS["edge"]]


def test_allowed_ports_come_after_the_group_ports():
    extra = {"port": 8080, "comment": "extra"}
    assert plan.firewall_entries(["edge"], GROUP_PORTS, [extra], 22)[-1] == extra


def test_if_member_of_keeps_an_entry_only_on_members_of_that_group():
    containers = GROUP_PORTS["postgres"][1]
    assert containers not in plan.firewall_entries(["postgres"], GROUP_PORTS, [], 22)
    assert containers in plan.firewall_entries(["postgres", "app"], GROUP_PORTS, [], 22)
    own = {"port": 1, "if_member_of": "gpu", "comment": "x"}
    assert own not in plan.firewall_entries([], {}, [own], 22)
    assert own in plan.firewall_entries(["gpu"], {}, [own], 22)


# firewall_source_hosts, firewall_source_addresses, firewall_rules

GROUPS = {"all": ["db1", "app1", "app2", "mon1"], "app": ["app1", "app2"], "monitoring": ["mon1"],
          "postgres": ["db1"], "empty": []}


def test_source_hosts_are_the_other_members_once_each_in_group_order():
    entries = [{"port": 1, "from_group": "app", "comment": "a"}, {"port": 2, "from_group": "all", "comment": "b"},
               {"port": 3, "from_group": "nosuchgroup", "comment": "c"}, {"port": 4, "comment": "d"}]
    assert plan.firewall_source_hosts(entries, GROUPS, "db1") == ["app1", "app2", "mon1"]


def test_a_host_is_not_its_own_source():
    entries = [{"port": 1, "from_group": "app", "comment": "a"}]
    assert plan.firewall_source_hosts(entries, GROUPS, "app1") == ["app2"]


def test_an_address_is_the_host_address_else_the_default_route_else_empty():
    hostvars = {
        "set": {"firewall_host_address": "10.1.0.1", "ansible_facts": {"default_ipv4": {"address": "192.0.2.1"}}},
        "set_empty": {"firewall_host_address": "", "ansible_facts": {"default_ipv4": {"address": "192.0.2.2"}}},
        "facts_only": {"ansible_facts": {"default_ipv4": {"address": "192.0.2.3"}}},
        "no_default_route": {"ansible_facts": {"default_ipv4": {}}},
        "no_facts_yet": {"ansible_facts": {}},
        "nothing": {},
    }
    assert plan.firewall_source_addresses(list(hostvars), hostvars) == {
        "set": "10.1.0.1", "set_empty": "192.0.2.2", "facts_only": "192.0.2.3",
        "no_default_route": "", "no_facts_yet": "", "nothing": "",
    }


def test_from_group_gives_a_rule_per_member_with_an_address_entry():
    entries = [{"port": 5432, "from_group": "app", "comment": "pg"}]
    assert plan.firewall_rules(entries, GROUPS, {"app1": "10.0.0.1", "app2": "10.0.0.2"}) == [
        rule("5432", "10.0.0.1", comment="pg"), rule("5432", "10.0.0.2", comment="pg"),
    ]


def test_from_group_without_other_members_gives_no_rule():
    entries = [
        {"port": 9100, "from_group": "monitoring", "comment": "m"},
        {"port": 1, "from_group": "empty", "comment": "e"},
        {"port": 2, "from_group": "nosuchgroup", "comment": "n"},
    ]
    # On mon1 itself: firewall_source_hosts left it out of the addresses.
    assert plan.firewall_rules(entries, GROUPS, {}) == []


def test_a_member_without_an_address_gives_a_rule_from_an_empty_source():
    # The role stops before using it: read_rules.yml asserts that every source host has an address.
    entries = [{"port": 5432, "from_group": "app", "comment": "pg"}]
    assert plan.firewall_rules(entries, GROUPS, {"app2": ""}) == [rule("5432", "", comment="pg")]


@pytest.mark.parametrize(("source", "expected"), [
    ("10.0.0.5/32", "10.0.0.5"),
    ("2001:db8::5/128", "2001:db8::5"),
    ("10.0.0.0/24", "10.0.0.0/24"),
    ("10.0.0.0/320", "10.0.0.0/320"),
])
def test_from_drops_a_single_host_prefix(source, expected):
    assert plan.firewall_rules([{"port": 1, "from": source, "comment": "c"}], {}, {})[0]["from"] == expected


def test_rule_defaults_and_ports_as_strings():
    entries = [
        SSH,
        {"port": "8000:8010", "proto": "udp", "comment": "r"},
        {"port": 53, "proto": "any", "rule": "deny", "comment": "d"},
    ]
    assert plan.firewall_rules(entries, {}, {}) == [
        rule("22", action="limit", comment="ssh"), rule("8000:8010", proto="udp", comment="r"),
        rule("53", proto="any", action="deny", comment="d"),
    ]


# firewall_inbound, firewall_kept

LISTENING = [
    "LISTEN 0      4096         0.0.0.0:22         0.0.0.0:*",
    "LISTEN 0      4096            [::]:22            [::]:*",
    "LISTEN 0      511          0.0.0.0:8443       0.0.0.0:*",
    "LISTEN 0      4096   127.0.0.53%lo:53         0.0.0.0:*",
]


def test_inbound_connections_are_those_to_a_listening_port_from_another_host():
    established = [
        "0      0          10.0.0.5:22        10.0.0.9:51234",
        "0      36         10.0.0.5:8443      198.51.100.7:40000 ",
        "0      0          10.0.0.5:45678     10.0.0.9:443",  # outbound: 45678 does not listen
        "0      0         127.0.0.1:22       127.0.0.1:50000",
        "0      0             [::1]:22           [::1]:50002",
        "0      0   [::ffff:127.0.0.1]:22 [::ffff:127.0.0.1]:50004",
        "0      0   [::ffff:10.0.0.5]:22  [::ffff:10.0.0.8]:50006",
        "0      0   [2001:db8::5]:22      [2001:db8::9]:50008",
        "garbage",
    ]
    assert plan.firewall_inbound(LISTENING, established) == [
        {"port": "22", "peer": "10.0.0.9"},
        {"port": "8443", "peer": "198.51.100.7"},
        {"port": "22", "peer": "::ffff:10.0.0.8"},
        {"port": "22", "peer": "2001:db8::9"},
    ]


def test_kept_rules_open_ports_in_use_that_no_rule_requests():
    connections = [{"port": "2222", "peer": "10.0.0.9"}, {"port": "2222", "peer": "10.0.0.9"},
                   {"port": "8443", "peer": "::ffff:10.0.0.8"}, {"port": "22", "peer": "10.0.0.9"}]
    requested = [rule("22", action="limit")]
    kept = [rule(port, peer, comment="kept open: in use when the firewall was set up")
            for port, peer in [("2222", "10.0.0.9"), ("8443", "10.0.0.8")]]
    assert plan.firewall_kept(connections, requested, True) == kept


def test_a_port_requested_for_other_sources_or_any_protocol_is_not_kept():
    connections = [{"port": "5432", "peer": "10.0.0.9"}, {"port": "53", "peer": "10.0.0.9"}]
    requested = [rule("5432", "10.0.0.1"), rule("53", proto="any")]
    assert plan.firewall_kept(connections, requested, True) == []


def test_a_port_requested_only_for_udp_is_still_kept():
    connections = [{"port": "8443", "peer": "10.0.0.9"}]
    assert [k["port"] for k in plan.firewall_kept(connections, [rule("8443", proto="udp")], True)] == ["8443"]


def test_the_same_peer_with_and_without_the_ipv4_mapped_prefix_is_kept_twice():
    # As the Jinja did: duplicates are dropped before the prefix is; ufw holds one rule for both.
    connections = [{"port": "8443", "peer": "::ffff:10.0.0.9"}, {"port": "8443", "peer": "10.0.0.9"}]
    assert [k["from"] for k in plan.firewall_kept(connections, [], True)] == ["10.0.0.9", "10.0.0.9"]


def test_nothing_is_kept_when_keep_active_ports_is_off():
    assert plan.firewall_kept([{"port": "2222", "peer": "10.0.0.9"}], [], False) == []


# firewall_wanted


def test_wanted_rules_by_target_as_ufw_show_added_prints_them():
    rules = [rule("22", action="limit", comment="ssh"), rule("53", proto="any", comment="dns"),
             rule("5432", "10.0.0.1", comment="pg"), rule("53", "10.0.0.1", proto="any", comment="dns"),
             rule("8000:8010", proto="udp", comment="r")]
    assert plan.firewall_wanted(rules, TAG) == {
        "22/tcp": "limit 22/tcp comment 'platform-managed: ssh'",
        "53": "allow 53 comment 'platform-managed: dns'",
        "from 10.0.0.1 to any port 5432 proto tcp":
            "allow from 10.0.0.1 to any port 5432 proto tcp comment 'platform-managed: pg'",
        "from 10.0.0.1 to any port 53": "allow from 10.0.0.1 to any port 53 comment 'platform-managed: dns'",
        "8000:8010/udp": "allow 8000:8010/udp comment 'platform-managed: r'",
    }


def test_the_first_rule_for_a_target_wins():
    wanted = plan.firewall_wanted([rule("80", comment="first"), rule("80", action="deny", comment="second")], TAG)
    assert wanted == {"80/tcp": "allow 80/tcp comment 'platform-managed: first'"}


# firewall_present, firewall_diff

WANTED = plan.firewall_wanted([rule("22", action="limit", comment="ssh"), rule("5432", "10.0.0.1", comment="pg")], TAG)


def test_present_rules_are_the_ufw_lines_without_ufw():
    lines = [
        "Added user rules (see 'ufw status' for running firewall):",
        "ufw limit 22/tcp comment 'platform-managed: ssh'",
        "ufw route allow in on eth0",
        "",
        "(None)",
    ]
    assert plan.firewall_present(lines) == ["limit 22/tcp comment 'platform-managed: ssh'", "route allow in on eth0"]


def test_nothing_differs_when_ufw_holds_the_wanted_rules():
    assert plan.firewall_diff(list(WANTED.values()), WANTED, TAG) == {
        "missing": [], "stale": [], "kept": [], "unmanaged": []}


def test_a_wanted_rule_missing_or_with_another_comment_or_action_is_missing():
    present = ["allow 22/tcp comment 'platform-managed: old name'", "allow from 10.0.0.1 to any port 5432 proto tcp"]
    diff = plan.firewall_diff(present, WANTED, TAG)
    # Same targets: ufw updates those rules in place, so they are neither stale nor unmanaged.
    assert diff == {"missing": list(WANTED.values()), "stale": [], "kept": [], "unmanaged": []}


def test_unwanted_rules_are_stale_when_tagged_else_unmanaged():
    present = [
        "limit 22/tcp comment 'platform-managed: ssh'",
        "allow 2222/tcp comment 'platform-managed: kept open: in use when the firewall was set up'",
        "deny 25/tcp",
        "reject from 10.9.9.9 to any port 80 proto tcp comment 'someone else'",
        "route allow in on eth0 out on eth1",
        "deny 25/tcp",
    ]
    diff = plan.firewall_diff(present, WANTED, TAG)
    assert diff["stale"] == []
    # Kept open for a session in use when the firewall was set up: never removed on its own.
    assert diff["kept"] == [present[1]]
    assert diff["unmanaged"] == [present[2], present[3], present[4]]  # deny 25/tcp once
    assert diff["missing"] == [WANTED["from 10.0.0.1 to any port 5432 proto tcp"]]


@pytest.mark.parametrize("line", [
    "allow 22/tcp", "deny 22/tcp comment 'x'", "reject 22/tcp", "limit 22/tcp comment 'platform-managed: y'",
])
def test_the_target_leaves_out_the_action_and_the_comment(line):
    diff = plan.firewall_diff([line], {"22/tcp": "limit 22/tcp comment 'platform-managed: ssh'"}, TAG)
    assert diff["stale"] == diff["unmanaged"] == []


def test_a_route_rule_keeps_route_in_its_target():
    assert plan.firewall_diff(["route allow 80/tcp"], {"route 80/tcp": "x"}, TAG)["unmanaged"] == []
    assert plan.firewall_diff(["route allow 80/tcp"], {"80/tcp": "x"}, TAG)["unmanaged"] == ["route allow 80/tcp"]


def test_only_the_role_tag_makes_a_rule_stale():
    present = ["allow 81/tcp comment 'platform-managed-not: x'", "allow 82/tcp comment 'other: platform-managed: x'"]
    assert plan.firewall_diff(present, {}, TAG) == {"missing": [], "stale": [], "kept": [], "unmanaged": present}


# firewall_sshd_not_hardened

EXPECTED = {"passwordauthentication": "no", "permitrootlogin": "without-password", "maxauthtries": "3"}


def test_hardened_sshd_reports_nothing():
    lines = ["port 22", "passwordauthentication no", "permitrootlogin without-password", "maxauthtries 3"]
    assert plan.firewall_sshd_not_hardened(lines, EXPECTED) == []


def test_differing_and_missing_settings_are_reported_in_expected_order():
    lines = ["maxauthtries 6", "passwordauthentication yes", "passwordauthentication no"]
    assert plan.firewall_sshd_not_hardened(lines, EXPECTED) == [
        "permitrootlogin: unset (wanted without-password)", "maxauthtries: 6 (wanted 3)",
    ]


def test_a_setting_without_a_value_is_reported_empty():
    assert plan.firewall_sshd_not_hardened(["maxauthtries "], {"maxauthtries": 3}) == ["maxauthtries:  (wanted 3)"]


READ = """## status
Status: active
Logging: on (low)
Default: deny (incoming), allow (outgoing), deny (routed)
New profiles: skip

## added
Added user rules (see 'ufw status' for running firewall):
ufw limit 22/tcp comment 'platform-managed: ssh'
## listening
## established
ESTAB 0 0 172.31.0.2:22 172.31.0.1:50000
"""
WANTED_DEFAULTS = {"incoming": "deny", "outgoing": "allow", "routed": "deny"}


def test_the_read_is_split_into_its_commands_lines():
    sections = command_sections(READ)
    assert list(sections) == ["status", "added", "listening", "established"]
    assert sections["status"][0] == "Status: active"
    assert plan.firewall_present(sections["added"]) == ["limit 22/tcp comment 'platform-managed: ssh'"]
    assert sections["listening"] == []
    assert sections["established"] == ["ESTAB 0 0 172.31.0.2:22 172.31.0.1:50000"]


def test_defaults_in_effect_need_no_change():
    assert plan.firewall_defaults_to_set(command_sections(READ)["status"], WANTED_DEFAULTS) == []


def test_a_differing_default_is_set_alone():
    status = ["Status: active", "Default: deny (incoming), allow (outgoing), disabled (routed)"]
    assert plan.firewall_defaults_to_set(status, WANTED_DEFAULTS) == [{"direction": "routed", "policy": "deny"}]


def test_every_default_is_set_while_ufw_is_off():
    assert plan.firewall_defaults_to_set(["Status: inactive"], WANTED_DEFAULTS) == [
        {"direction": "incoming", "policy": "deny"},
        {"direction": "outgoing", "policy": "allow"},
        {"direction": "routed", "policy": "deny"},
    ]


def test_the_plugin_exposes_every_filter():
    assert set(plan.FilterModule().filters()) == {
        "firewall_entries", "firewall_source_hosts", "firewall_source_addresses", "firewall_rules", "firewall_inbound",
        "firewall_kept", "firewall_wanted", "firewall_present", "firewall_diff", "firewall_sshd_not_hardened",
        "firewall_defaults_to_set", "firewall_rule_opening", "firewall_sshd_ports",
    }


@pytest.mark.parametrize(("rule", "opening"), [
    ("allow 5432/tcp", "allows 5432/tcp from anywhere"),
    ("allow 6379", "allows 6379 from anywhere"),
    ("limit 2222/tcp comment 'by hand'", "allows (rate-limited) 2222/tcp from anywhere"),
    ("allow from 10.0.0.7 to any port 11434 proto tcp", "allows 11434/tcp from 10.0.0.7"),
    ("reject from 10.9.9.9 to any port 80 proto tcp comment 'someone else'", "rejects 80/tcp from 10.9.9.9"),
    ("allow from 10.0.0.0/8", "allows every port from 10.0.0.0/8"),
    ("route allow in on eth0 out on eth1", "route allow in on eth0 out on eth1 (a rule of its own form)"),
])
def test_a_rule_made_by_hand_is_described_by_what_it_lets_through(rule, opening):
    assert plan.firewall_rule_opening(rule) == opening


def test_a_retired_rule_of_the_role_is_stale():
    present = ["allow 7777/tcp comment 'platform-managed: retired'"]
    assert plan.firewall_diff(present, WANTED, TAG)["stale"] == present


def test_ssh_is_allowed_on_every_port_sshd_listens_on():
    assert plan.firewall_sshd_ports(["port 2222", "port 22", "addressfamily any", "port 2222"]) == ["2222", "22"]
    assert plan.firewall_sshd_ports(["maxauthtries 6"]) == ["22"]
    entries = plan.firewall_entries([], {}, [], ["2222", "22"])
    assert [(e["rule"], e["port"]) for e in entries] == [("limit", "2222"), ("limit", "22")]
