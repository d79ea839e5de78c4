"""Every download the role manifests declare for this host's roles, with each URL as the host's
settings make it (role defaults, then the inventory, then role vars, as in the role itself).
Downloads whose `when` is false (a local source set, another install path chosen) are left out,
and all of them on a run from an offline bundle (platform_bundle_dir): the bundle carries what
they would fetch, and preflight checks the bundle instead (platformctl.bundle_plan.missing)."""

from __future__ import annotations

import sys
from collections import ChainMap
from pathlib import Path

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible.template import trust_as_template

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from platformctl import manifests
from platformctl.bundle_plan import trusted

DOCUMENTATION = """
name: platform_downloads
short_description: the downloads of this host's roles
description:
  - Returns [{role, name, what, url, local_source}] for the roles the manifests give this host.
"""


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        variables = variables or {}
        if variables.get("platform_bundle_dir"):
            return []
        groups = {name: list(hosts) for name, hosts in variables.get("groups", {}).items()}
        roles_dir = manifests.ansible_roles_dir()
        try:
            loaded = manifests.load_all(roles_dir)
        except manifests.ManifestError as err:
            raise AnsibleLookupError(str(err)) from None
        found = []
        for manifest in loaded:
            if not manifest.downloads or not manifest.applies(variables.get("group_names", []), groups):
                continue
            role_dir = roles_dir / manifest.role
            context = ChainMap(self._role_file(role_dir / "vars"), variables, self._role_file(role_dir / "defaults"))
            templar = self._templar.copy_with_new_env(available_variables=context)
            for download in manifest.downloads:
                if download.when and not templar.evaluate_conditional(trust_as_template(download.when)):
                    continue
                found.append({"role": manifest.role, "name": download.name, "what": download.what,
                              "url": templar.template(trust_as_template(download.url)),
                              "local_source": download.local_source})
        return found

    def _role_file(self, folder: Path) -> dict:
        """A role's defaults or vars, their templates trusted as the role's own would be."""
        file = folder / "main.yml"
        return trusted(self._loader.load_from_file(str(file)) or {}) if file.is_file() else {}

