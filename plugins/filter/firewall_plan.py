"""The firewall role's rule planning: which ufw rules a host wants, which of the rules ufw
holds are missing, stale or someone else's, and which sshd hardening settings are not in
effect. Plain functions on plain data (roles/firewall/vars/main.yml calls them as filters),
so tests/unit/test_firewall_plan.py can check them without Ansible."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# `ss -Htln`: the local port of a listening socket ("0.0.0.0:22 0.0.0.0:*").
_LISTENING_PORT = re.compile(r":(\d+)\s+\S+\s*$")
# `ss -Htn state established`: the local port and the peer's address, IPv6 in brackets.
_CONNECTION = re.compile(r":(\d+)\s+\[?([^\]\s]+?)\]?:\d+\s*$")
# Peers on this host itself, whose connections loopback carries whatever the rules say.
_LOOPBACK_PEER = re.compile(r"127\.|::1$|::ffff:127\.")
# `sshd -T`: "name value".
_SSHD_SETTING = re.compile(r"^(\S+) (.*)$")
# ufw takes a single address as a host, without the prefix length.
_HOST_PREFIX = re.compile(r"/(32|128)$")
_RULE_COMMENT = re.compile(r" comment '.*'$")
_RULE_ACTION = re.compile(r"^(route )?(allow|deny|reject|limit) ")
# `ufw status verbose`: "Default: deny (incoming), allow (outgoing), disabled (routed)".
_DEFAULT_POLICY = re.compile(r"(\w+) \((incoming|outgoing|routed)\)")
# The heading before each command's output in the role's one read of the host.

KEPT_COMMENT = "kept open: in use when the firewall was set up"
_ACTION_VERBS = {"allow": "allows", "deny": "denies", "reject": "rejects", "limit": "allows (rate-limited)"}


def firewall_entries(
    group_names: list[str],
    group_ports: Mapping[str, list[dict]],
    allowed_ports: list[dict],
    ssh_ports: int | str | list,
) -> list[dict]:
    """The rule entries the settings ask for on a host in `group_names`: SSH on each of
    `ssh_ports` (rate limited, always first), those of its groups in `group_ports` (`all`
    first) and `allowed_ports`, less those whose `if_member_of` names a group the host is not in."""
    ports = ssh_ports if isinstance(ssh_ports, list) else [ssh_ports]
    entries = [{"rule": "limit", "port": port, "proto": "tcp", "comment": "ssh"} for port in ports]
    for group in ["all", *group_names]:
        if group in group_ports:
            entries.extend(group_ports[group])
    return [
        entry for entry in [*entries, *allowed_ports]
        if "if_member_of" not in entry or entry["if_member_of"] in group_names
    ]


def firewall_source_hosts(entries: list[dict], groups: Mapping[str, list[str]], inventory_hostname: str) -> list[str]:
    """The hosts the `from_group` entries let in, once each, in group order: the members of
    those groups but this host, which reaches itself over loopback (ufw always allows it)."""
    hosts: list[str] = []
    for entry in entries:
        if "from_group" in entry and entry["from_group"] in groups:
            hosts.extend(h for h in groups[entry["from_group"]] if h != inventory_hostname and h not in hosts)
    return hosts


def firewall_source_addresses(hosts: list[str], hostvars: Mapping[str, Mapping]) -> dict[str, str]:
    """The address each of `hosts` connects from: its firewall_host_address, else its default
    route's IPv4 address from its facts, else "" (its facts are not gathered yet)."""
    addresses = {}
    for host in hosts:
        host_vars = hostvars[host]
        address = host_vars.get("firewall_host_address") or ""
        if not address:
            default_route = (host_vars.get("ansible_facts") or {}).get("default_ipv4") or {}
            address = default_route.get("address", "")
        addresses[host] = address
    return addresses


def firewall_rules(entries: list[dict], groups: Mapping[str, list[str]], addresses: Mapping[str, str]) -> list[dict]:
    """The rules of `entries`, one per source, each as {rule, port, proto, from, comment}
    with the port as a string: a `from_group` entry gives one per member of the group in
    `addresses` (none when it has no other member), else `from` (default any)."""
    rules = []
    for entry in entries:
        if "from_group" in entry:
            members = groups.get(entry["from_group"], [])
            sources = [addresses[member] for member in members if member in addresses]
        else:
            sources = [_HOST_PREFIX.sub("", str(entry.get("from", "any")))]
        rules.extend(
            {
                "rule": entry.get("rule", "allow"),
                "port": str(entry["port"]),
                "proto": entry.get("proto", "tcp"),
                "from": source,
                "comment": entry["comment"],
            }
            for source in sources
        )
    return rules


def firewall_inbound(listening_lines: list[str], established_lines: list[str]) -> list[dict]:
    """The established TCP connections from other hosts, as {port, peer} (both strings), from
    the lines of `ss -Htln` and `ss -Htn state established`: a connection is inbound when its
    local port is a listening one. Connections from this host itself are left out."""
    listening = [m.group(1) for m in map(_LISTENING_PORT.search, listening_lines) if m]
    found = []
    for line in established_lines:
        match = _CONNECTION.search(line)
        if match and match.group(1) in listening and not _LOOPBACK_PEER.match(match.group(2)):
            found.append({"port": match.group(1), "peer": match.group(2)})
    return found


def firewall_kept(connections: list[dict], requested_rules: list[dict], enabled: bool = True) -> list[dict]:
    """Rules that keep the ports of inbound `connections` open to their peers, for ports no
    requested TCP (or any-protocol) rule opens, whatever its source; none unless `enabled`."""
    if not enabled:
        return []
    requested_ports = [rule["port"] for rule in requested_rules if rule["proto"] != "udp"]
    kept = []
    seen: list[dict] = []
    for connection in connections:
        if connection in seen:
            continue
        seen.append(connection)
        if connection["port"] not in requested_ports:
            kept.append({
                "rule": "allow",
                "port": connection["port"],
                "proto": "tcp",
                "from": re.sub(r"^::ffff:", "", connection["peer"]),
                "comment": KEPT_COMMENT,
            })
    return kept


def firewall_target(rule: Mapping) -> str:
    """What ufw tells a rule by (`ufw show added` without action and comment): "22/tcp",
    or "from 10.0.0.5 to any port 22 proto tcp"; proto any is left out."""
    proto = "" if rule["proto"] == "any" else rule["proto"]
    if rule["from"] == "any":
        return f"{rule['port']}/{proto}" if proto else f"{rule['port']}"
    return f"from {rule['from']} to any port {rule['port']}" + (f" proto {proto}" if proto else "")


def firewall_wanted(rules: list[dict], tag: str) -> dict[str, str]:
    """Each rule as `ufw show added` prints it (without the leading "ufw "), keyed by its
    target; of rules with the same target the first wins, since ufw holds only one."""
    wanted: dict[str, str] = {}
    for rule in rules:
        target = firewall_target(rule)
        wanted.setdefault(target, f"{rule['rule']} {target} comment '{tag}: {rule['comment']}'")
    return wanted


def firewall_present(show_added_lines: list[str]) -> list[str]:
    """The rules in the lines of `ufw show added`, without the leading "ufw "."""
    return [line[len("ufw "):] for line in show_added_lines if line.startswith("ufw ")]


def firewall_diff(present: list[str], wanted: Mapping[str, str], tag: str) -> dict[str, list[str]]:
    """How the `present` rules differ from the `wanted` ones: the wanted rules ufw lacks
    (missing; a present rule with another comment or action counts as lacking), and the
    present rules whose target is not wanted, split into the ones tagged as this role's
    (stale), the ones it kept open for a connection in use (kept: never removed on its own,
    since that session may still need them) and the others (unmanaged, once each)."""
    unwanted = [
        line for line in present
        if _RULE_ACTION.sub(r"\1", _RULE_COMMENT.sub("", line)) not in wanted
    ]
    kept = [line for line in unwanted if line.endswith(f" comment '{tag}: {KEPT_COMMENT}'")]
    stale = [line for line in unwanted if f" comment '{tag}: " in line and line not in kept]
    unmanaged: list[str] = []
    for line in unwanted:
        if line not in stale and line not in kept and line not in unmanaged:
            unmanaged.append(line)
    return {
        "missing": [rule for rule in wanted.values() if rule not in present],
        "stale": stale,
        "kept": kept,
        "unmanaged": unmanaged,
    }


def firewall_rule_opening(line: str) -> str:
    """What a rule of `ufw show added` lets through, in words: "allows 5432/tcp from anywhere",
    "rejects port 80/tcp from 10.9.9.9"; a rule of another form is named as it is."""
    words = _RULE_COMMENT.sub("", line).split()
    if words[:1] == ["route"] or not words or words[0] not in _ACTION_VERBS:
        return f"{' '.join(words)} (a rule of its own form)"
    fields = dict(zip(words[1::2], words[2::2], strict=False))
    if len(words) == 2:  # "allow 5432/tcp": every source
        return f"{_ACTION_VERBS[words[0]]} {words[1]} from anywhere"
    port = fields.get("port", "every port")
    proto = f"/{fields['proto']}" if "proto" in fields else ""
    source = fields.get("from", "any")
    return f"{_ACTION_VERBS[words[0]]} {port}{proto} from {'anywhere' if source == 'any' else source}"


def firewall_defaults_to_set(status_lines: Iterable[str], wanted: Mapping[str, str]) -> list[dict]:
    """The default policies ({direction, policy}, in `wanted`'s order) that the lines of
    `ufw status verbose` show otherwise; all of them while ufw is off, since it shows none."""
    in_effect: dict[str, str] = {}
    for line in status_lines:
        if line.startswith("Default:"):
            in_effect = {direction: policy for policy, direction in _DEFAULT_POLICY.findall(line)}
    return [{"direction": direction, "policy": policy} for direction, policy in wanted.items()
            if in_effect.get(direction) != policy]


def firewall_sshd_ports(effective_lines: Iterable[str]) -> list[str]:
    """The ports sshd listens on, from the lines of `sshd -T` ("port 22"); 22 when it names none."""
    ports = [line.split()[1] for line in effective_lines if line.startswith("port ") and len(line.split()) == 2]
    return list(dict.fromkeys(ports)) or ["22"]


def firewall_sshd_not_hardened(effective_lines: Iterable[str], expected: Mapping[str, str]) -> list[str]:
    """The `expected` sshd settings that the lines of `sshd -T` show otherwise, each as
    "name: in effect (wanted expected)", "unset" when sshd does not print it."""
    effective = {}
    for line in effective_lines:
        match = _SSHD_SETTING.search(line)
        if match:
            effective[match.group(1)] = match.group(2)
    return [
        f"{name}: {effective.get(name, 'unset')} (wanted {wanted})"
        for name, wanted in expected.items()
        if effective.get(name, "") != str(wanted)
    ]


class FilterModule:
    """The firewall planning filters."""

    def filters(self):
        return {
            "firewall_entries": firewall_entries,
            "firewall_source_hosts": firewall_source_hosts,
            "firewall_source_addresses": firewall_source_addresses,
            "firewall_rules": firewall_rules,
            "firewall_inbound": firewall_inbound,
            "firewall_kept": firewall_kept,
            "firewall_wanted": firewall_wanted,
            "firewall_present": firewall_present,
            "firewall_diff": firewall_diff,
            "firewall_sshd_not_hardened": firewall_sshd_not_hardened,
            "firewall_rule_opening": firewall_rule_opening,
            "firewall_sshd_ports": firewall_sshd_ports,
            "firewall_defaults_to_set": firewall_defaults_to_set,
        }
