"""Which of a role's apt packages a host lacks, from the package list site.yml reads once per
run (dpkg_packages): a role calls apt only for those, so a rerun with every package in place
costs no apt run per role. Without that list (a role run on its own) every package counts as
missing and apt decides, as before."""

from __future__ import annotations


def packages_missing(wanted: list[str], installed: dict | None) -> list[str]:
    """The entries of `wanted` ("name" or "name=version", apt's own pin) that `installed`
    (dpkg_packages, or ansible_facts.packages: name -> list of {"version": ...}) does not hold; a pinned entry
    counts as present only in that version (apt's `=` also matches a version prefix)."""
    if installed is None:
        return list(wanted)
    missing = []
    for entry in wanted:
        name, _, version = entry.partition("=")
        versions = [package.get("version", "") for package in installed.get(name, [])]
        if not versions or (version and not any(found.startswith(version) for found in versions)):
            missing.append(entry)
    return missing


def dpkg_packages(listing: str) -> dict[str, list[dict[str, str]]]:
    """The installed packages in `dpkg-query --show --showformat='${db:Status-Abbrev} ${Package}
    ${Version}\\n'` output, shaped as ansible_facts.packages (name -> list of {"version": ...}):
    one command instead of package_facts' module, which costs a rerun about a second. Only
    packages whose status is installed count (not those removed with their settings kept)."""
    installed: dict[str, list[dict[str, str]]] = {}
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) == 3 and len(fields[0]) >= 2 and fields[0][1] == "i":
            installed.setdefault(fields[1], []).append({"version": fields[2]})
    return installed


class FilterModule:
    def filters(self):
        return {"packages_missing": packages_missing, "dpkg_packages": dpkg_packages}
