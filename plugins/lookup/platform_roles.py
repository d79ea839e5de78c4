"""The site playbook's dispatch plan: each role that carries out an action, in the run's order,
with the hosts that get it (from the role manifests and the inventory's groups)."""

from __future__ import annotations

import sys
from pathlib import Path

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from platformctl import manifests

DOCUMENTATION = """
name: platform_roles
short_description: the roles of an action, in order, with their hosts
description:
  - Reads every roles/<role>/meta/platform.yml and returns, for the action, each role that has
    it as {name, tasks, hosts, tags}.
options:
  action:
    description: install, verify, backup or restore.
    type: str
    default: install
"""


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        groups = {name: list(hosts) for name, hosts in (variables or {}).get("groups", {}).items()}
        try:
            loaded = manifests.load_all(manifests.ansible_roles_dir())
            return manifests.dispatch(loaded, groups, self.get_option("action"))
        except (manifests.ManifestError, ValueError) as err:
            raise AnsibleLookupError(str(err)) from None
