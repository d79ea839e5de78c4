"""Which systemd units a role still has to start or enable, from one read of every loaded unit's
state per run (site.yml): a rerun with every service up runs no systemd module per unit. Without
that read (a role run on its own) every unit goes to the systemd module, as before."""

from __future__ import annotations

UNIT_TYPES = {"service", "socket", "timer", "path", "target", "mount", "automount", "swap", "slice", "scope", "device"}


def systemd_unit_states(show: str) -> dict[str, dict[str, str]]:
    """Parse `systemctl show --property=Id,ActiveState,UnitFileState PATTERN...` (blocks of
    KEY=VALUE lines, one block per unit) into unit -> {"active", "enabled"}."""
    states: dict[str, dict[str, str]] = {}
    for block in show.split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if fields.get("Id"):
            states[fields["Id"]] = {"active": fields.get("ActiveState", ""), "enabled": fields.get("UnitFileState", "")}
    return states


def units_to_start(units: list[str], states: dict | None, unit_files_changed: bool = False) -> list[str]:
    """The units (`nginx` or `nginx.service`, as the systemd module takes them) that are not
    both active and enabled (units the read does not name included). All of them when there is
    no read or when their unit files changed in this run: the systemd module then reloads
    systemd's view of them."""
    if states is None or unit_files_changed:
        return list(units)
    return [unit for unit in units if states.get(_full_name(unit)) != {"active": "active", "enabled": "enabled"}]


def _full_name(unit: str) -> str:
    """systemctl's own name of a unit: `nginx` is nginx.service."""
    return unit if unit.rpartition(".")[2] in UNIT_TYPES else f"{unit}.service"


class FilterModule:
    def filters(self):
        return {"systemd_unit_states": systemd_unit_states, "units_to_start": units_to_start}
