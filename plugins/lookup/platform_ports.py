"""The ports the role manifests declare, as the firewall role's group ports: each at the port
the host's settings give it (postgresql_port and the like), open to whom the manifest says."""

from __future__ import annotations

import sys
from pathlib import Path

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible.template import trust_as_template

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from platformctl import manifests

DOCUMENTATION = """
name: platform_ports
short_description: the manifests' ports as firewall group ports
description:
  - Returns the rule entries of each inventory group, in the form of firewall_group_ports.
options:
  app_containers_from:
    description: The network the app containers of the platform network come from.
    type: str
    required: true
"""


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables or {}
        try:
            loaded = manifests.load_all(manifests.ansible_roles_dir())
        except manifests.ManifestError as err:
            raise AnsibleLookupError(str(err)) from None
        settings = {}
        for port in (p for m in loaded for p in m.ports if p.setting in variables):
            settings[port.setting] = self._templar.template(variables[port.setting])
        return [manifests.firewall_group_ports(
            loaded, settings, self.get_option("app_containers_from"),
            holds=lambda condition: self._templar.evaluate_conditional(trust_as_template(condition)))]
